"""What a proxy process is given: where it listens (`ProxyConfig`) and where its tables come
from (`TableSource`), in forms that also cross a process boundary (`SourceSpec`).

```
mesh proxy flags ──(cli)──> ProxyConfig(outbound=Address, inbound=, app=, admin=, gateway=,
                                        workers=N, namespace/workload labels)
-f FILES  ──(cli compiles in a child)──> SourceSpec(blobs=serialized xDS) ─┐ .source()
--xds ADDR ─────────────────────────────> SourceSpec(xds=ADDR, node=)  ────┤
                                            StaticTable(table) | XdsSource(target, node)
TableSource.run(on_table) ──on_table(table, version)──> runner.Proxy.apply
```

Everything here is plain frozen data or a small coroutine: `runner.py` (one proxy in this
process) and `workers.py` (the child processes of ``--workers N``) both read it, and
neither is imported by it, so the three form no circle. `ProxyConfig` and `SourceSpec`
pickle: a spawned worker receives them as its arguments.

Not here: parsing the command line (`turnout/cli/data_plane.py`), compiling manifests (the
CLI's child process; the proxy never imports the engine).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from turnout.proxy.app_probes import AppProbe
from turnout.proxy.config import DEFAULT_UPSTREAM_READ_TIMEOUT_MS, DEFAULT_XDS_DELTA
from turnout.proxy.table import RuntimeTable

if TYPE_CHECKING:
    from turnout.proxy.inbound_policy import PolicyResources
    from turnout.proxy.xds_client import NodeInfo

log = logging.getLogger(__name__)

OnTable = Callable[[RuntimeTable, str], None]
"""`on_table(table, version)`: install a table (`runner.Proxy.apply`)."""
OnPolicy = Callable[["PolicyResources", str], None]
"""`on_policy(resources, version)`: install policy resources (`runner.Proxy.apply_policy`)."""

ListenerName = Literal["outbound", "inbound", "admin"]
"""A proxy's listening sockets, named as the ``mesh proxy`` flags that configure them."""


class TableSource(Protocol):
    """Where tables come from; calls `on_table` for every table to apply."""

    async def run(self, on_table: OnTable, on_policy: OnPolicy | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class StaticTable:
    """One table, applied once (``mesh proxy -f``: compiled in-process by the CLI)."""

    table: RuntimeTable
    version: str = "static"
    policy: PolicyResources | None = None
    """The same manifests' authorization policy (what the control plane would serve)."""

    async def run(self, on_table: OnTable, on_policy: OnPolicy | None = None) -> None:
        on_table(self.table, self.version)
        if on_policy is not None and self.policy is not None:
            on_policy(self.policy, self.version)
        await asyncio.Event().wait()


@dataclass(frozen=True, slots=True, kw_only=True)
class XdsSource:
    """Tables from an ADS server (``mesh proxy --xds HOST:PORT``)."""

    target: str
    node: NodeInfo
    delta: bool = DEFAULT_XDS_DELTA
    """Incremental xDS first (``--xds-protocol delta``); False: state of the world only."""

    async def run(self, on_table: OnTable, on_policy: OnPolicy | None = None) -> None:
        # grpc is imported here, not at module load: a proxy fed from manifests (-f) never
        # loads it (several MB of resident memory per proxy).
        from turnout.proxy.xds_client import XdsClient, XdsSettings

        client = XdsClient(
            self.target,
            node=self.node,
            on_table=on_table,
            on_policy=on_policy,
            settings=XdsSettings(delta=self.delta),
        )
        client.start()
        try:
            await asyncio.Event().wait()
        finally:
            await client.stop()


def reporting_admin(source: TableSource, admin: Address | None) -> TableSource:
    """`source`, with `admin` (the admin port as bound) in its xDS node's `metadata.admin`
    when it is an `XdsSource` whose node reports none yet: the control plane learns where
    this proxy's /metrics is. A node that already names an admin (a ``--workers`` child,
    whose metrics the parent's admin port serves) keeps it; other sources are unchanged."""
    if not isinstance(source, XdsSource) or admin is None or source.node.admin is not None:
        return source
    return replace(source, node=replace(source.node, admin=str(admin)))


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSpec:
    """How a worker gets its tables, in a form that crosses a process boundary."""

    blobs: tuple[bytes, ...] = ()
    """Serialized xDS resources (`RuntimeTable.from_serialized`), for ``-f``."""
    policy: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    """The policy resources as (name, type URL, value), for ``-f``."""
    xds: str | None = None
    """ADS target, for ``--xds``."""
    node: NodeInfo | None = None
    """This proxy's xDS node, for ``--xds``; each worker gets its own id from it."""
    xds_delta: bool = DEFAULT_XDS_DELTA
    """Delta xDS first, for ``--xds`` (``--xds-protocol``)."""

    def source(self) -> TableSource:
        if self.xds is not None:
            assert self.node is not None
            return XdsSource(target=self.xds, node=self.node, delta=self.xds_delta)
        policy = None
        if self.policy:
            from turnout.proxy.inbound_policy import PolicyResources

            policy = PolicyResources.of({n: (t, v) for n, t, v in self.policy})
        return StaticTable(RuntimeTable.from_serialized(list(self.blobs)), policy=policy)


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    host: str
    port: int
    """0: any free port (the bound one is in `runner.Listening`)."""

    @classmethod
    def parse(cls, text: str) -> Address:
        """``HOST:PORT`` or ``:PORT`` (host 127.0.0.1); ValueError otherwise."""
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"want HOST:PORT, got {text!r}")
        return cls(host=host or "127.0.0.1", port=int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityConfig:
    """``--identity``: this proxy's workload identity and where it gets its certificate."""

    name: str
    """``<sa>.<ns>.serviceaccount.identity.<domain>``: the leaf's DNS SAN."""
    token_file: str
    """A join token or service account token, read again on every Certify call."""
    addr: str
    """The identity service, ``HOST:PORT`` (`mesh serve --identity-dir`'s xDS port)."""
    detect_timeout_ms: int = 10_000
    """Inbound: how long a connection may stay silent before it is taken as plaintext."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceConfig:
    """``--trace-otlp``: where this proxy exports its spans and how many traces it starts.

    Present only when tracing is on; with None in `ProxyConfig.trace` the proxy imports no
    OpenTelemetry module and the request path does no trace work (docs/tracing.md)."""

    otlp: str
    """The collector's OTLP/HTTP ``HOST:PORT`` (plaintext; a collector's port 4318): the
    spans go there as JSON, ``POST /v1/traces``."""
    sample_per_million: int = 1_000_000
    """``--trace-sample``: the share of new traces recorded, per million (an int, as every
    ratio in the proxy). Parent-based: an incoming trace context's sampled flag wins."""
    service_name: str = ""
    """The ``service.name`` resource attribute: the workload's name (``--workload``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyConfig:
    namespace: str = "default"
    workload_kind: str = "deployment"
    workload_name: str = ""
    pod: str = ""
    outbound: Address | None = None
    inbound: Address | None = None
    app: Address | None = None
    admin: Address | None = None
    gateway: str | None = None
    """``NS/NAME:PORT``: the outbound port serves that Gateway listener (a north-south
    gateway's data plane) instead of routing by the Service the Host header names."""
    service_listeners: bool = False
    """Also listen on every Service address of the table (`service_listeners.py`): the socket
    a request arrives on names its destination Service."""
    workers: int = 1
    """Processes serving the listeners (SO_REUSEPORT when more than one; `workers.py`)."""
    identity: IdentityConfig | None = None
    """Mesh TLS (docs/mtls.md): the inbound port detects TLS, upstream endpoints with an
    expected identity are reached over mTLS. None: plaintext only, as before."""
    require_mtls: bool = False
    """``--require-mtls``: outbound, a request whose endpoint has no identity is answered
    502 and nothing is sent to it (`outbound_tls.py`); needs `identity`."""
    labels: tuple[tuple[str, str], ...] = ()
    """The workload's labels (``--label``): what policy selectors match."""
    opaque_ports: tuple[tuple[int, int], ...] = ()
    """``--opaque-ports``: (first, last) ranges of app ports proxied as TCP, no detection."""
    port_names: tuple[tuple[str, int], ...] = ()
    """The pod's named container ports (``--port-name NAME=PORT``): a Server's named port."""
    probes: tuple[tuple[int, str], ...] = ()
    """The pod's HTTP probes (``--probe PORT:PATH``): GETs any client may make while the
    port's Server has no routes (Linkerd's default probe route)."""
    app_probes: tuple[tuple[str, AppProbe], ...] = ()
    """The app containers' original httpGet probes (``--app-probes``), keyed
    ``CONTAINER/livez|readyz|startupz``: the admin port's ``/app-health/<key>`` makes them
    against the app (`app_probes.py`), so a STRICT app port never meets the kubelet."""
    transparent: bool = False
    """``--transparent`` (docs/capture.md): the listeners take connections iptables
    redirected (`mesh proxy-init`): outbound routes by each one's original destination,
    inbound forwards to 127.0.0.1 at its original port."""
    refuse_unknown: bool = False
    """With `transparent`: an outbound connection to an address the table does not know is
    refused (reset) instead of forwarded untouched."""
    upstream_read_timeout_ms: int | None = DEFAULT_UPSTREAM_READ_TIMEOUT_MS
    """The upstream pool's `read_timeout_ms` (`config.DEFAULT_UPSTREAM_READ_TIMEOUT_MS`):
    longest upstream silence on an exchange without a deadline; None: wait forever."""
    trace: TraceConfig | None = None
    """``--trace-otlp`` and ``--trace-sample`` (docs/tracing.md); None: tracing off."""

    def gateway_listener(self) -> str | None:
        """The runtime table's listener name for `gateway` (None: a mesh proxy)."""
        return None if self.gateway is None else f"gateway/{self.gateway}"


def parse_ports(text: str) -> tuple[tuple[int, int], ...]:
    """``3306,4000-4100`` (Linkerd's opaque-ports) -> ((3306, 3306), (4000, 4100))."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"want ports like 3306,4000-4100, got {part!r}")
        lo, hi = int(first), int(last or first)
        if not 0 < lo <= hi <= 65535:
            raise ValueError(f"port range out of 1..65535: {part!r}")
        out.append((lo, hi))
    return tuple(out)


def parse_gateway(text: str) -> str:
    """``NS/NAME`` or ``NS/NAME:PORT`` (default port 80) -> ``NS/NAME:PORT``."""
    ref, sep, port = text.partition(":")
    ns, slash, name = ref.partition("/")
    if not (ns and slash and name) or "/" in name or (sep and not port.isdigit()):
        raise ValueError(f"want NAMESPACE/NAME[:PORT] for --gateway, got {text!r}")
    return f"{ns}/{name}:{port or 80}"
