"""`mesh proxy`: one process with an outbound listener, an inbound listener and an admin port.

```
TableSource (static table | ADS client) ──on_table──> Proxy.apply(table, version)
      balancers.update, budgets.update ──> ProxyState ──swap──> outbound / inbound Handler
serve_http(outbound) ─┐
serve_http(inbound) ──┼─ shared UpstreamPool, ProxyMetrics, TapHub
start_admin(admin) ───┘   /metrics /ready (a table applied) /live /tap
```

The table source is a seam: `mesh proxy -f` compiles manifests in the CLI (the proxy never
imports the engine's model) and hands over a ready table; `mesh proxy --xds` uses the ADS
client. `run_proxy` serves until cancelled and then closes listeners, the pool and tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from turnout.proxy.admin import AdminServer, start_admin
from turnout.proxy.balancer import Balancers
from turnout.proxy.budget import Budgets
from turnout.proxy.handler import Handler, ProxyState
from turnout.proxy.metrics import ProxyMetrics
from turnout.proxy.table import RuntimeTable
from turnout.proxy.tap import TapHub
from turnout.proxy.telemetry import Telemetry
from turnout.proxy.transport.client import UpstreamPool
from turnout.proxy.transport.server import serve_http
from turnout.proxy.workers import SourceSpec, Workers

if TYPE_CHECKING:
    from turnout.proxy.xds_client import NodeInfo

log = logging.getLogger(__name__)

OnTable = Callable[[RuntimeTable, str], None]


class TableSource(Protocol):
    """Where tables come from; calls `on_table` for every table to apply."""

    async def run(self, on_table: OnTable) -> None: ...


@dataclass(frozen=True, slots=True)
class StaticTable:
    """One table, applied once (``mesh proxy -f``: compiled in-process by the CLI)."""

    table: RuntimeTable
    version: str = "static"

    async def run(self, on_table: OnTable) -> None:
        on_table(self.table, self.version)
        await asyncio.Event().wait()


@dataclass(frozen=True, slots=True, kw_only=True)
class XdsSource:
    """Tables from an ADS server (``mesh proxy --xds HOST:PORT``)."""

    target: str
    node: NodeInfo

    async def run(self, on_table: OnTable) -> None:
        # grpc is imported here, not at module load: a proxy fed from manifests (-f) never
        # loads it (several MB of resident memory per proxy).
        from turnout.proxy.xds_client import XdsClient

        client = XdsClient(self.target, node=self.node, on_table=on_table)
        client.start()
        try:
            await asyncio.Event().wait()
        finally:
            await client.stop()


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"want HOST:PORT, got {text!r}")
        return cls(host=host or "127.0.0.1", port=int(port))


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
    workers: int = 1
    """Processes serving the listeners (SO_REUSEPORT when more than one; `workers.py`)."""

    def gateway_listener(self) -> str | None:
        """The runtime table's listener name for `gateway` (None: a mesh proxy)."""
        return None if self.gateway is None else f"gateway/{self.gateway}"


def parse_gateway(text: str) -> str:
    """``NS/NAME`` or ``NS/NAME:PORT`` (default port 80) -> ``NS/NAME:PORT``."""
    ref, sep, port = text.partition(":")
    ns, slash, name = ref.partition("/")
    if not (ns and slash and name) or "/" in name or (sep and not port.isdigit()):
        raise ValueError(f"want NAMESPACE/NAME[:PORT] for --gateway, got {text!r}")
    return f"{ns}/{name}:{port or 80}"


@dataclass(slots=True)
class Proxy:
    """The running pieces; `apply` installs a table atomically for new requests."""

    config: ProxyConfig
    metrics: ProxyMetrics
    tap: TapHub
    pool: UpstreamPool
    balancers: Balancers = field(default_factory=Balancers)
    budgets: Budgets = field(default_factory=Budgets)
    handlers: list[Handler] = field(default_factory=list)
    version: str | None = None
    servers: list[asyncio.Server] = field(default_factory=list)
    admin: AdminServer | None = None

    @property
    def ready(self) -> bool:
        return self.version is not None

    def apply(self, table: RuntimeTable, version: str) -> None:
        self.balancers.update(table.clusters)
        self.budgets.update(table.clusters)
        # Snapshots, not the live objects: a request keeps the table it started with, so a
        # retry after a swap that dropped its cluster must still find that cluster's balancer.
        balancers = {n: b for n in table.clusters if (b := self.balancers.get(n)) is not None}
        budgets = {n: g for n in table.clusters if (g := self.budgets.get(n)) is not None}
        # plain dicts, never changed after this: a mapping proxy's get() costs a request
        # twice as much
        state = ProxyState(table=table, balancers=balancers, budgets=budgets, version=version)
        for h in self.handlers:
            h.swap(state)
        settle_heap()
        self.version = version
        log.info(
            "table applied version=%s listeners=%d clusters=%d",
            version,
            len(table.listeners),
            len(table.clusters),
        )

    def port_of(self, server: asyncio.Server) -> int:
        return int(server.sockets[0].getsockname()[1])


def build_proxy(config: ProxyConfig) -> Proxy:
    metrics = ProxyMetrics(
        namespace=config.namespace,
        workload_kind=config.workload_kind,
        workload_name=config.workload_name,
        pod=config.pod,
    )
    return Proxy(config=config, metrics=metrics, tap=TapHub(), pool=UpstreamPool())


async def start_proxy(
    config: ProxyConfig,
    source: TableSource,
    *,
    peers: Callable[[], Awaitable[list[str]]] | None = None,
    peers_ready: Callable[[], bool] | None = None,
) -> tuple[Proxy, asyncio.Task[None]]:
    """Start listeners and the table source; returns once every port is bound. `peers`
    gives the other workers' metrics texts for /metrics, `peers_ready` their readiness."""
    proxy = build_proxy(config)
    empty = ProxyState(
        table=RuntimeTable.from_xds((), ()), balancers=proxy.balancers, budgets=proxy.budgets
    )
    telemetry = Telemetry(proxy.metrics, proxy.tap)
    if config.outbound is not None:
        handler = Handler(
            state=empty,
            pool=proxy.pool,
            telemetry=telemetry,
            direction="outbound",
            namespace=config.namespace,
            listener=config.gateway_listener(),
        )
        proxy.handlers.append(handler)
        proxy.servers.append(
            await serve_http(
                handler,
                host=config.outbound.host,
                port=config.outbound.port,
                reuse_port=config.workers > 1,
            )
        )
    if config.inbound is not None:
        if config.app is None:
            raise ValueError("--inbound needs --app HOST:PORT")
        handler = Handler(
            state=empty,
            pool=proxy.pool,
            telemetry=telemetry,
            direction="inbound",
            namespace=config.namespace,
            app=(config.app.host, config.app.port),
        )
        proxy.handlers.append(handler)
        proxy.servers.append(
            await serve_http(
                handler,
                host=config.inbound.host,
                port=config.inbound.port,
                reuse_port=config.workers > 1,
            )
        )
    if config.admin is not None:
        proxy.admin = await start_admin(
            config.admin.host,
            config.admin.port,
            metrics=proxy.metrics,
            tap=proxy.tap,
            ready=lambda: proxy.ready and (peers_ready is None or peers_ready()),
            peers=peers,
        )
    task = asyncio.get_running_loop().create_task(
        _guard(source.run(proxy.apply), "table source"), name="table source"
    )
    return proxy, task


async def stop_proxy(proxy: Proxy, task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for server in proxy.servers:
        server.close()
    for server in proxy.servers:
        await server.wait_closed()
    for h in proxy.handlers:
        await h.aclose()
    if proxy.admin is not None:
        await proxy.admin.cleanup()
    proxy.tap.close()
    await proxy.pool.close()


def settle_heap() -> None:
    """After a table swap: collect the old table, then freeze what is left.

    A table is tens of thousands of long-lived objects; left in the collector's generations,
    every full collection walks them all and pauses the request path for 40-60 ms. Frozen,
    they are skipped. Unfreezing first lets the previous table's cycles be collected, so
    repeated swaps do not leak."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


async def run_proxy(
    config: ProxyConfig, source: TableSource, *, spec: SourceSpec | None = None
) -> None:
    """Serve until cancelled, SIGINT or SIGTERM (`mesh proxy`); then shut down cleanly.
    With `config.workers` > 1, `spec` tells the child workers where their tables come from."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    workers: Workers | None = None
    if config.workers > 1:
        if spec is None:
            raise ValueError("several workers need a SourceSpec")
        workers = Workers(config.workers, config, spec)
        await workers.start()
    try:
        proxy, task = await start_proxy(
            config,
            source,
            peers=workers.metrics if workers is not None else None,
            peers_ready=workers.ready if workers is not None else None,
        )
        started = time.monotonic()
        stopper = loop.create_task(stop.wait(), name="stop signal")
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            log.info("proxy stopping after %.0fs", time.monotonic() - started)
            await stop_proxy(proxy, task)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        if workers is not None:
            await workers.stop()


async def _guard(coro: Awaitable[None], name: str) -> None:
    """Log a crash of a background task instead of losing it (kopf's `guard`)."""
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background task crashed task=%s", name)
        raise
