"""The proxy's runtime table: xDS resources compiled once per update, looked up per request.

```
Listener ─HCM.rds─> RouteConfiguration ─> VirtualHost ─> Route ...     Cluster + ClusterLoadAssignment
    │                     │                    │             │                   │
    v                     v                    v             v                   v
RuntimeTable.from_xds: {listener: HostIndex[VirtualHostTable]}    RouteIndex     {cluster: ClusterInfo}
                                                        (routes.py, index.py)     (clusters.py)

decide(request, listener=...)  listener dict -> host index -> route index -> prebuilt Decision
explain(request, listener=...) same host lookup, then every route with the same matchers
```

`from_xds` validates everything it can before the table is used: a listener naming a missing
RouteConfiguration, an invalid regex, a route naming an unknown cluster, a duplicate domain,
routes whose order contradicts Gateway API precedence. Each failure is one `TableError` naming
the resource and field: the NACK reason. A table is immutable once built; an update builds a
new one and the proxy swaps the reference (keeping the last good table on error).

Not here: endpoint picking and health (the balancer), retries, timeouts and faults in action
(the request path), and the xDS stream itself (the client).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2

from turnout.proxy.actions import Decision, DirectResponse, Forward
from turnout.proxy.clusters import ClusterInfo, clusters_from_xds
from turnout.proxy.config import (
    CORS_FILTER,
    FAULT_FILTER,
    HCM_FILTER,
    INVALID_CLUSTER,
    METADATA_NAMESPACE,
    NO_ROUTE_STATUS,
    ROUTER_FILTER,
)
from turnout.proxy.destinations import (
    NO_DESTINATIONS,
    Destinations,
    TcpTarget,
    build_destinations,
    service_addresses,
    service_of,
    service_opaque,
)
from turnout.proxy.errors import ShadowedRouteError, TableError
from turnout.proxy.explain import Explanation, explain_routes
from turnout.proxy.families import UNKNOWN_AUTHORITY
from turnout.proxy.hosts import HostIndex
from turnout.proxy.index import RouteIndex
from turnout.proxy.listener_tls import terminator_from_listener
from turnout.proxy.matching import CompiledRoute, PathCondition
from turnout.proxy.paths import INVALID_PATH, Refusal
from turnout.proxy.policies import unpack
from turnout.proxy.request import RequestInfo, RouteRequest
from turnout.proxy.routes import route_from_xds
from turnout.proxy.transport.tls import Terminator

log = logging.getLogger(__name__)

NO_ROUTE = Decision(route=None, action=DirectResponse(status=NO_ROUTE_STATUS, cause="no route"))
"""Nothing in the virtual host matched, or no virtual host serves the Host."""
NO_LISTENER = Decision(
    route=None,
    action=DirectResponse(
        status=NO_ROUTE_STATUS,
        body="no such Service port in the table",
        cause="unknown destination",
    ),
)
"""The listener is not in the table (no such Service port)."""


def refused(refusal: Refusal) -> Decision:
    """What a refused path gets, as a decision: the handler's 400 (`paths.py`)."""
    action = DirectResponse(status=400, body=refusal.reason, cause=INVALID_PATH)
    return Decision(route=None, action=action)


_KNOWN_HTTP_FILTERS = frozenset({FAULT_FILTER, CORS_FILTER, ROUTER_FILTER})


@dataclass(frozen=True, slots=True, kw_only=True)
class VirtualHostTable:
    name: str
    domains: tuple[str, ...]
    index: RouteIndex


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerTable:
    name: str
    route_config: str
    """Name of the RouteConfiguration (RDS)."""
    http_filters: tuple[str, ...]
    """HTTP filter names in order; the router is last."""
    hosts: HostIndex[VirtualHostTable]
    tls: Terminator | None = None
    """A Gateway port's HTTPS listeners (`listener_tls.py`); None: plain HTTP."""


def _tcp_target(
    lst: Any, vhosts: tuple[VirtualHostTable, ...], clusters: Mapping[str, ClusterInfo]
) -> TcpTarget:
    """Where ``--transparent`` forwards a Service address's non-HTTP bytes: the opaque
    cluster, else the Service's own cluster, else its first route's first backend."""
    ns, svc, port = service_of(lst.name) or ("", lst.name, 0)
    opaque = service_opaque(lst)
    if opaque is not None:
        if opaque not in clusters:
            raise TableError(
                f'Listener "{lst.name}"',
                f"metadata.{METADATA_NAMESPACE}.opaque",
                f'Cluster "{opaque}" not found',
            )
        return TcpTarget(cluster=opaque, opaque=True, namespace=ns, service=svc)
    own = f"{ns}/{svc}:{port}"
    if own not in clusters:
        own = next(_first_backends(vhosts), "")
    return TcpTarget(cluster=own, opaque=False, namespace=ns, service=svc)


def _first_backends(vhosts: tuple[VirtualHostTable, ...]) -> Iterator[str]:
    for vh in vhosts:
        for route in vh.index.routes:
            action = route.decision.action
            if isinstance(action, Forward):
                yield from (b.cluster for b in action.backends if b.invalid is None)


RouteMemo = dict[int, tuple[Any, tuple[VirtualHostTable, ...]]]
"""id(RouteConfiguration message) -> (the message, its compiled virtual hosts)."""


def _route_config(rc: Any) -> tuple[VirtualHostTable, ...]:
    where = f'RouteConfiguration "{rc.name}"'
    for name in (
        "request_headers_to_add",
        "request_headers_to_remove",
        "response_headers_to_add",
        "response_headers_to_remove",
    ):
        if len(getattr(rc, name)):
            raise TableError(where, name, "unsupported at route configuration level")
    vhosts = []
    seen: dict[str, str] = {}
    for i, vh in enumerate(rc.virtual_hosts):
        for name in (
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
            "request_mirror_policies",
            "typed_per_filter_config",
        ):
            if len(getattr(vh, name)):
                raise TableError(
                    where, f"virtual_hosts[{i}].{name}", "unsupported at virtual host level"
                )
        if vh.HasField("retry_policy") or vh.HasField("cors"):
            raise TableError(
                where, f"virtual_hosts[{i}]", "retry_policy/cors unsupported at virtual host level"
            )
        for j, domain in enumerate(vh.domains):
            other = seen.setdefault(domain.lower(), vh.name)
            if other != vh.name or list(vh.domains).count(domain) > 1:
                raise TableError(
                    where, f"virtual_hosts[{i}].domains[{j}]", f"duplicate domain {domain!r}"
                )
            try:
                HostIndex.build([(domain, None)])
            except ValueError as exc:
                raise TableError(where, f"virtual_hosts[{i}].domains[{j}]", str(exc)) from exc
        routes = [
            route_from_xds(
                r, position=j, where=f'{where} virtual_hosts[{i}].routes[{j}] "{r.name}"'
            )
            for j, r in enumerate(vh.routes)
        ]
        try:
            index = RouteIndex.build(fuse_prefix_pairs(routes))
        except ShadowedRouteError as exc:
            name = vh.routes[exc.position].name
            raise TableError(
                f'{where} virtual_hosts[{i}].routes[{exc.position}] "{name}"', "match", str(exc)
            ) from exc
        vhosts.append(VirtualHostTable(name=vh.name, domains=tuple(vh.domains), index=index))
    return tuple(vhosts)


def fuse_prefix_pairs(routes: list[CompiledRoute]) -> list[CompiledRoute]:
    """Turn the translator's ``path: P`` + ``prefix: "P/"`` pairs back into one PathPrefix.

    docs/xds.md emits a Gateway API PathPrefix as those two routes (same name, same action)
    because proxyless gRPC lacks `path_separated_prefix`. Fused, the table has one route per
    match again: one index entry, and `explain` speaks of "PathPrefix /api" as the user wrote
    it. A pair is fused only when everything but the path specifier is equal."""
    out: list[CompiledRoute] = []
    i = 0
    while i < len(routes):
        first = routes[i]
        second = routes[i + 1] if i + 1 < len(routes) else None
        if (
            second is not None
            and first.matcher.path.kind == "Exact"
            and second.matcher.path.below_only
            and second.matcher.path.value == first.matcher.path.value
            and first.decision == second.decision
            and replace(first.matcher, path=second.matcher.path) == second.matcher
        ):
            value = first.matcher.path.value
            path = PathCondition(kind="PathPrefix", value=value, with_slash=value + "/")
            out.append(replace(first, matcher=replace(first.matcher, path=path)))
            i += 2
            continue
        out.append(first)
        i += 1
    return out


def _listener(lst: Any) -> tuple[str, tuple[str, ...]]:
    """(route config name, http filter names) of a Listener's HTTP connection manager."""
    where = f'Listener "{lst.name}"'
    if lst.HasField("api_listener"):
        field = "api_listener.api_listener"
        any_hcm = lst.api_listener.api_listener
    else:
        found = [
            (f"filter_chains[{i}].filters[{j}].typed_config", f.typed_config)
            for i, chain in enumerate(lst.filter_chains)
            for j, f in enumerate(chain.filters)
            if f.name == HCM_FILTER
        ]
        if not found:
            raise TableError(where, "filter_chains", f"want a {HCM_FILTER}, got none")
        # HTTPS: one chain per Gateway listener (SNI), all with the same connection manager.
        if len({f.value for _, f in found}) != 1:
            raise TableError(where, "filter_chains", f"every chain's {HCM_FILTER} must be the same")
        field, any_hcm = found[0]
    hcm = unpack(
        any_hcm, http_connection_manager_pb2.HttpConnectionManager, where=where, field=field
    )
    if hcm.WhichOneof("route_specifier") != "rds":
        raise TableError(where, f"{field}.route_specifier", "only rds is supported (docs/xds.md)")
    filters = tuple(f.name for f in hcm.http_filters)
    if not filters or filters[-1] != ROUTER_FILTER:
        raise TableError(
            where, f"{field}.http_filters", f"{ROUTER_FILTER} must be last, got {list(filters)}"
        )
    for k, name in enumerate(filters):
        if name not in _KNOWN_HTTP_FILTERS:
            raise TableError(where, f"{field}.http_filters[{k}]", f"unsupported filter {name!r}")
    return hcm.rds.route_config_name, filters


def _check_clusters(
    rc_name: str, vhosts: tuple[VirtualHostTable, ...], clusters: dict[str, ClusterInfo]
) -> None:
    for i, vh in enumerate(vhosts):
        for route in vh.index.routes:
            d = route.decision
            names = [m.cluster for m in d.mirrors]
            if isinstance(d.action, Forward):
                names += [b.cluster for b in d.action.backends]
            for name in names:
                if name != INVALID_CLUSTER and name not in clusters:
                    assert d.route is not None
                    where = f'RouteConfiguration "{rc_name}" virtual_hosts[{i}].routes[{route.position}] "{d.route.name}"'
                    raise TableError(where, "route", f'cluster "{name}" not found')


class RuntimeTable:
    """Immutable routing state of one xDS snapshot."""

    __slots__ = ("_listeners", "clusters", "destinations", "listeners", "route_configs")

    def __init__(
        self,
        *,
        listeners: dict[str, ListenerTable],
        route_configs: dict[str, tuple[VirtualHostTable, ...]],
        clusters: dict[str, ClusterInfo],
        destinations: Destinations = NO_DESTINATIONS,
    ) -> None:
        self.listeners = listeners
        self._listeners = {name: lt.hosts for name, lt in listeners.items()}
        self.route_configs = route_configs
        self.clusters = clusters
        """The table's clusters, plus one ``passthrough/IP:PORT`` per endpoint address."""
        self.destinations = destinations
        """Service addresses and endpoint addresses (`destinations.py`)."""

    @classmethod
    def from_xds(
        cls,
        listeners: Iterable[Any],
        route_configs: Iterable[Any],
        *,
        clusters: Iterable[Any] = (),
        load_assignments: Iterable[Any] = (),
        memo: RouteMemo | None = None,
    ) -> RuntimeTable:
        """Compile protobuf resources (docs/xds.md) or raise `TableError`. With `memo`, a
        RouteConfiguration message that is the same object as in the last successful build
        with that memo keeps its compiled virtual hosts (a delta client keeps the messages
        of unchanged resources), and the memo then holds this build's."""
        cluster_infos = clusters_from_xds(clusters, load_assignments)
        rcs: dict[str, tuple[VirtualHostTable, ...]] = {}
        kept: RouteMemo = {}
        for rc in route_configs:
            if rc.name in rcs:
                raise TableError(f'RouteConfiguration "{rc.name}"', "name", "duplicate")
            memoed = None if memo is None else memo.get(id(rc))
            compiled = memoed[1] if memoed is not None and memoed[0] is rc else _route_config(rc)
            rcs[rc.name] = compiled
            kept[id(rc)] = (rc, compiled)
            _check_clusters(rc.name, rcs[rc.name], cluster_infos)
        tables: dict[str, ListenerTable] = {}
        addresses: list[tuple[str, tuple[str, int]]] = []
        tcp: dict[str, TcpTarget] = {}
        for lst in listeners:
            if lst.name in tables:
                raise TableError(f'Listener "{lst.name}"', "name", "duplicate")
            rc_name, filters = _listener(lst)
            if rc_name not in rcs:
                field = (
                    "api_listener.api_listener.rds.route_config_name"
                    if lst.HasField("api_listener")
                    else "rds.route_config_name"
                )
                raise TableError(
                    f'Listener "{lst.name}"', field, f'RouteConfiguration "{rc_name}" not found'
                )
            hosts = HostIndex.build((d, vh) for vh in rcs[rc_name] for d in vh.domains)
            if lst.HasField("api_listener"):
                tls = None
                found = service_addresses(lst)
                addresses.extend((lst.name, a) for a in found)
                if found:
                    tcp[lst.name] = _tcp_target(lst, rcs[rc_name], cluster_infos)
            else:
                tls = terminator_from_listener(lst)
            tables[lst.name] = ListenerTable(
                name=lst.name, route_config=rc_name, http_filters=filters, hosts=hosts, tls=tls
            )
        log.info(
            "runtime table built listeners=%d route_configs=%d routes=%d clusters=%d",
            len(tables),
            len(rcs),
            sum(len(vh.index.routes) for vhs in rcs.values() for vh in vhs),
            len(cluster_infos),
        )
        destinations, passthrough = build_destinations(addresses, cluster_infos, tcp)
        if memo is not None:
            memo.clear()
            memo.update(kept)
        return cls(
            listeners=tables,
            route_configs=rcs,
            clusters={**cluster_infos, **passthrough},
            destinations=destinations,
        )

    @classmethod
    def from_serialized(cls, blobs: Iterable[bytes]) -> RuntimeTable:
        """From resources serialized as ``b"<kind>\\0" + message bytes``, kind 0..3 =
        Listener, RouteConfiguration, Cluster, ClusterLoadAssignment (how `mesh proxy -f`
        hands over a table compiled in a child process)."""
        from envoy.config.cluster.v3 import cluster_pb2
        from envoy.config.endpoint.v3 import endpoint_pb2
        from envoy.config.listener.v3 import listener_pb2
        from envoy.config.route.v3 import route_pb2

        types = (
            listener_pb2.Listener,
            route_pb2.RouteConfiguration,
            cluster_pb2.Cluster,
            endpoint_pb2.ClusterLoadAssignment,
        )
        groups: list[list[Any]] = [[], [], [], []]
        for blob in blobs:
            kind, _, data = blob.partition(b"\0")
            groups[int(kind)].append(types[int(kind)].FromString(data))
        return cls.from_xds(groups[0], groups[1], clusters=groups[2], load_assignments=groups[3])

    def decide(self, request: RouteRequest, *, listener: str) -> Decision:
        """The decision for `request` on `listener`; a 404 `DirectResponse` when nothing matches.

        The path is taken as normal (`paths.py`): the handler normalizes first, and a
        `RequestInfo` with a `refusal` is its caller's to answer (`explain` does)."""
        hosts = self._listeners.get(listener)
        if hosts is None:
            return NO_LISTENER
        vh = hosts.lookup(request.authority)
        if vh is None:
            return NO_ROUTE
        route = vh.index.lookup(request)
        return NO_ROUTE if route is None else route.decision

    def router(self, authority: str, *, listener: str) -> RouteIndex | Decision:
        """What `decide` does for every request for `authority` on `listener` before the
        route look-up, done once (the handler remembers it per Host): the virtual host's
        `RouteIndex` (`decide` is then ``index.lookup(request)``, NO_ROUTE when None), or
        the decision when there is none to look in (NO_LISTENER, NO_ROUTE)."""
        hosts = self._listeners.get(listener)
        if hosts is None:
            return NO_LISTENER
        vh = hosts.lookup(authority)
        return NO_ROUTE if vh is None else vh.index

    def authority_label(self, authority: str, *, listener: str | None) -> str:
        """The metrics' ``authority`` of requests for `authority` on `listener`: the domain
        its virtual host was chosen by (`HostIndex.domain_for`), or ``unknown`` when the
        listener or the virtual host is not in this table. Per Host, not per request."""
        hosts = None if listener is None else self._listeners.get(listener)
        domain = None if hosts is None else hosts.domain_for(authority)
        return UNKNOWN_AUTHORITY if domain is None else domain

    def explain(self, request: RequestInfo, *, listener: str) -> Explanation:
        """Evaluate every route of the chosen virtual host; see `explain.py`. The request's
        path is the normalized one; a refused path is explained as its 400."""
        if request.refusal is not None:
            return Explanation(
                listener=listener,
                authority=request.authority,
                virtual_host=None,
                host_reason=f"path {request.raw_path!r} refused before routing: "
                f"{request.refusal.reason}",
                verdicts=(),
                winner=refused(request.refusal),
            )
        lt = self.listeners.get(listener)
        if lt is None:
            return Explanation(
                listener=listener,
                authority=request.authority,
                virtual_host=None,
                host_reason=f"no listener {listener!r}",
                verdicts=(),
                winner=NO_LISTENER,
            )
        vh = lt.hosts.lookup(request.authority)
        if vh is None:
            return Explanation(
                listener=listener,
                authority=request.authority,
                virtual_host=None,
                host_reason=f"no virtual host of {lt.route_config!r} serves host {request.authority!r}",
                verdicts=(),
                winner=NO_ROUTE,
            )
        verdicts, winner = explain_routes(request, vh.index.routes, not_found=NO_ROUTE)
        reason = f"host {request.authority!r} served by virtual host {vh.name!r} (domains {', '.join(vh.domains)})"
        return Explanation(
            listener=listener,
            authority=request.authority,
            virtual_host=vh.name,
            host_reason=reason,
            verdicts=verdicts,
            winner=winner,
        )
