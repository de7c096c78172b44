"""Where a mesh request is going: the address the client connected to, not the Host header.

```
Listener metadata turnout.addresses + port ─┐
                                            ├─► Destinations.services  (ip, port) -> listener
ClusterLoadAssignment endpoints ────────────┴─► Destinations.endpoints (ip, port) -> pass-through
Listener metadata turnout.opaque ────────────► Destinations.tcp (ip, port) -> TcpTarget:
                                               where --transparent forwards non-HTTP/1
                                               bytes (opaque: at once, no detection)
lookup(ip, port) ─► a Service listener name: that Service's routes decide (any Host)
                 ─► a pass-through Decision: forwarded to that endpoint untouched (no routes,
                    no retries, no filters: the client chose the pod, as Linkerd does)
                 ─► None: no Service and no endpoint has that address (404 unknown destination)
```

The address comes from the socket when the proxy listens on the Service's own address
(`mesh proxy --service-listeners`: one listening socket per ClusterIP:port) and from a Host
header that is an IP literal otherwise (`Host: 10.96.0.10:8080`, or with no port the
Service's port 80); a Host that is a name keeps the name lookup (`hosts.listener_for_host`).

A pass-through goes to a cluster of its own, ``passthrough/IP:PORT`` with that one endpoint,
so the balancer, the connection pool and the metrics treat it as any other backend; the
metrics' route is Linkerd's synthesized default (``route_kind="default"``).

Deliberately not here: transparent capture (`transparent.py` reads `SO_ORIGINAL_DST` and
uses `tcp`), and choosing among a Service's routes (the table's).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from turnout.proxy.actions import Backend, Decision, Forward, RouteRef
from turnout.proxy.clusters import ClusterInfo, Endpoint
from turnout.proxy.config import METADATA_NAMESPACE
from turnout.proxy.errors import TableError

log = logging.getLogger(__name__)

PASSTHROUGH_PREFIX = "passthrough/"
PASSTHROUGH_ROUTE = RouteRef(name="passthrough", rule="passthrough", source="default//passthrough")
"""The metrics' route of a pass-through (Linkerd's synthesized default route)."""

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class TcpTarget:
    """Where ``--transparent`` forwards a known destination's bytes when they are not HTTP/1
    (or at once, `opaque`): an endpoint of `cluster`, chosen by its balancer."""

    cluster: str
    """The Service's opaque or own cluster (else its first route's first backend), or an
    endpoint's ``passthrough/IP:PORT``."""
    opaque: bool
    """Marked opaque (listener metadata ``turnout.opaque``): forwarded without reading."""
    namespace: str = ""
    """The Service (metrics' ``dst_namespace``/``dst_service``); "" for an endpoint."""
    service: str = ""


@dataclass(frozen=True, slots=True)
class Destinations:
    services: Mapping[Address, str]
    """A Service's cluster IP and port -> its listener name."""
    endpoints: Mapping[Address, Decision]
    """An endpoint's address -> the decision that forwards to it untouched."""
    tcp: Mapping[Address, TcpTarget] = field(default_factory=dict)
    """Every address of `services` and `endpoints` that has somewhere to forward TCP."""

    def lookup(self, address: Address) -> str | Decision | None:
        """A Service listener, a pass-through decision, or None (see module docstring)."""
        listener = self.services.get(address)
        if listener is not None:
            return listener
        return self.endpoints.get(address)


NO_DESTINATIONS = Destinations({}, {})


def service_addresses(lst: Any) -> list[Address]:
    """The addresses a Service listener's metadata names (docs/xds.md "Destinations")."""
    meta = lst.metadata.filter_metadata.get(METADATA_NAMESPACE)
    if meta is None:
        return []
    where, fields = f'Listener "{lst.name}"', meta.fields
    port = fields.get("port")
    addresses = fields.get("addresses")
    if port is None or addresses is None:
        raise TableError(where, f"metadata.{METADATA_NAMESPACE}", "want addresses and port")
    number = port.number_value
    if not (number.is_integer() and 0 < number < 65536):
        raise TableError(where, f"metadata.{METADATA_NAMESPACE}.port", f"bad port {number}")
    out = []
    for i, value in enumerate(addresses.list_value.values):
        text = value.string_value
        try:
            ipaddress.ip_address(text)
        except ValueError:
            raise TableError(
                where, f"metadata.{METADATA_NAMESPACE}.addresses[{i}]", f"not an IP: {text!r}"
            ) from None
        out.append((text, int(number)))
    return out


def service_opaque(lst: Any) -> str | None:
    """The cluster an opaque Service listener forwards to (metadata ``turnout.opaque``);
    None: not opaque (docs/xds.md "Destinations")."""
    meta = lst.metadata.filter_metadata.get(METADATA_NAMESPACE)
    value = None if meta is None else meta.fields.get("opaque")
    if value is None:
        return None
    if value.WhichOneof("kind") != "string_value" or not value.string_value:
        raise TableError(
            f'Listener "{lst.name}"', f"metadata.{METADATA_NAMESPACE}.opaque", "want a cluster name"
        )
    return str(value.string_value)


def service_of(listener: str) -> tuple[str, str, int] | None:
    """``web.shop.svc.cluster.local:80`` -> ("shop", "web", 80); None for another name."""
    host, _, port = listener.rpartition(":")
    parts = host.split(".")
    if len(parts) < 3 or parts[2] != "svc" or not port.isdigit():
        return None
    return parts[1], parts[0], int(port)


def build_destinations(
    services: Iterable[tuple[str, Address]],
    clusters: Mapping[str, ClusterInfo],
    tcp: Mapping[str, TcpTarget] | None = None,
) -> tuple[Destinations, dict[str, ClusterInfo]]:
    """The table's destinations, and the pass-through clusters they forward to; `tcp`: each
    Service listener's TCP target."""
    tcp = tcp or {}
    by_address: dict[Address, str] = {}
    for listener, address in services:
        other = by_address.setdefault(address, listener)
        if other != listener:
            log.warning(
                "two services share an address address=%s:%d kept=%s dropped=%s",
                *address,
                other,
                listener,
            )
    targets = {a: tcp[name] for a, name in by_address.items() if name in tcp}
    opaque_clusters = {t.cluster for t in tcp.values() if t.opaque}
    opaque_eps = {
        (ep.address, ep.port)
        for name in opaque_clusters
        if (c := clusters.get(name)) is not None
        for ep in c.endpoints
    }
    endpoints: dict[Address, Decision] = {}
    extra: dict[str, ClusterInfo] = {}
    for info in clusters.values():
        for ep in info.endpoints:
            key = (ep.address, ep.port)
            if key in endpoints or key in by_address:
                continue
            name = f"{PASSTHROUGH_PREFIX}{ep.address}:{ep.port}"
            backend = Backend(cluster=name, name=name, weight=1)
            endpoints[key] = Decision(route=PASSTHROUGH_ROUTE, action=Forward.of((backend,)))
            one = Endpoint(address=ep.address, port=ep.port, healthy=True, zone=ep.zone)
            extra[name] = ClusterInfo(
                name=name, http2=info.http2, endpoints=(one,), endpoints_known=True
            )
            # an opaque Service's pod, connected to directly, is opaque too
            targets[key] = TcpTarget(cluster=name, opaque=key in opaque_eps)
    return Destinations(by_address, endpoints, targets), extra


def address_of(host: str) -> Address | None:
    """A Host header that is an IP literal -> (ip, port; 80 when none); None for a name."""
    if host.startswith("["):
        ip, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        ip, sep, port = host.rpartition(":")
        if not sep or ":" in ip:
            ip, port = host, ""
    if not ip or not (ip[0].isdigit() or ":" in ip):
        return None
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return None
    if port and not port.isdigit():
        return None
    return ip, int(port) if port else 80
