"""One proxy in this process: an outbound listener, an inbound listener and an admin port.

```
TableSource (static table | ADS client) ──on_table──> Proxy.apply(table, version)
      balancers.update, budgets.update ──> ProxyState ──swap──> outbound / inbound Handler
serve_http(outbound) ─┐  --gateway on an HTTPS port: TLS (SNI chains from each table)
serve_http(inbound) ──┼─ shared UpstreamPool, ProxyMetrics, TapHub
ServiceListeners ─────┤  --service-listeners: a socket per Service address of each table
serve_transparent ────┤  --transparent: outbound and inbound by original destination
start_admin(admin) ───┘   /metrics /ready (a table applied) /live /tap
start_proxy(config, source) -> (Proxy, source task)   every port bound, or ListenError
proxy.listening() -> Listening: the addresses actually bound (what port 0 became)
stop_proxy(proxy, task)           listeners, HTTP/2 drain (GOAWAY), handlers, admin, pool
```

The table source is a seam (`process.TableSource`): `mesh proxy -f` compiles manifests in
the CLI (the proxy never imports the engine's model) and hands over a ready table; `mesh
proxy --xds` uses the ADS client. A port that cannot be bound is a `ListenError` naming the
listener and the address, and whatever was already bound is closed again. Serving until a
signal, and the ``--workers`` child processes, are `workers.py`'s (which imports this).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from turnout.proxy.admin import AdminServer, bound_port, start_admin
from turnout.proxy.balancer import Balancers
from turnout.proxy.budget import Budgets
from turnout.proxy.errors import ListenError, TableError
from turnout.proxy.handler import Handler, ProxyState
from turnout.proxy.inbound_guard import InboundGuard
from turnout.proxy.inbound_policy import PolicyResources, Workload
from turnout.proxy.metrics import ProxyMetrics
from turnout.proxy.process import (
    Address,
    ListenerName,
    ProxyConfig,
    TableSource,
    reporting_admin,
)
from turnout.proxy.service_listeners import ServiceListeners
from turnout.proxy.table import RuntimeTable
from turnout.proxy.tap import TapHub
from turnout.proxy.telemetry import TcpHooks, Telemetry
from turnout.proxy.transparent import new_guard, serve_transparent
from turnout.proxy.transport.client import UpstreamPool
from turnout.proxy.transport.detect import DETECT_TIMEOUT_MS, DetectingServer, serve_detecting
from turnout.proxy.transport.h2_drain import H2Connections
from turnout.proxy.transport.server import serve_http
from turnout.proxy.transport.tls import TlsSlot

if TYPE_CHECKING:
    from turnout.proxy.identity.client import IdentityClient
    from turnout.proxy.identity.state import IdentityState
    from turnout.proxy.tracing import Tracer

log = logging.getLogger(__name__)

SETTLE_AFTER_S = 0.5
"""How long the tables must stay put before the heap is settled (`Proxy._settle_later`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Listening:
    """Where a started proxy listens: the configured hosts with the ports actually bound
    (a port given as 0 is the one the kernel chose). None: that listener is off."""

    outbound: Address | None = None
    inbound: Address | None = None
    admin: Address | None = None


def policy_workload(config: ProxyConfig) -> Workload:
    """What policy selects of this proxy's pod: ``--label``, ``--port-name``, ``--probe``."""
    probes: dict[int, set[str]] = {}
    for port, path in config.probes:
        probes.setdefault(port, set()).add(path)
    return Workload(
        namespace=config.namespace,
        labels=dict(config.labels),
        port_names=dict(config.port_names),
        probes={port: frozenset(paths) for port, paths in probes.items()},
    )


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
    servers: list[asyncio.Server | DetectingServer] = field(default_factory=list)
    """The outbound listener first (when on), then the inbound one."""
    admin: AdminServer | None = None
    gateway_missing: bool = False
    """`--gateway` names a listener the last applied table lacks (said once, not per table)."""
    tls: TlsSlot = field(default_factory=TlsSlot)
    """The `--gateway` port's certificates, replaced per table (`transport/tls.py`)."""
    tls_on: bool = False
    """The outbound socket terminates TLS now (`tls_wanted`: the last table says it should)."""
    tls_wanted: bool = False
    _rebinder: asyncio.Task[None] | None = None
    h2: H2Connections = field(default_factory=H2Connections)
    """The HTTP/2 client connections of every listener, drained on stop (GOAWAY)."""
    services: ServiceListeners | None = None
    """`--service-listeners`: a socket per Service address of the table."""
    identity: IdentityState | None = None
    """`--identity`: the key, the current leaf and the TLS contexts made from it."""
    identity_client: IdentityClient | None = None
    _identity_task: asyncio.Task[None] | None = None
    _settle: asyncio.TimerHandle | None = None
    """The pending `settle_heap` after the last table swap (a burst of swaps settles once)."""
    guard: InboundGuard | None = None
    """The inbound port's policy (`inbound_guard.py`); None without `--inbound`."""
    guards: dict[int, InboundGuard] = field(default_factory=dict)
    """``--transparent``: one guard per app port, made at the port's first connection."""
    policy_version: str | None = None
    _policy: PolicyResources | None = None
    """The last policy resources (a guard made later resolves them at once)."""
    tracer: Tracer | None = None
    """``--trace-otlp``: the spans' exporter (`tracing.py`); None: tracing off."""

    @property
    def ready(self) -> bool:
        """A table is applied and the sockets serve it as it says (TLS or not, every
        Service address tried)."""
        return (
            self.version is not None
            and self.tls_on == self.tls_wanted
            and (self.services is None or self.services.synced)
            and (self.identity_client is None or self.identity_client.ready.is_set())
        )

    def apply(self, table: RuntimeTable, version: str) -> None:
        self.balancers.update(table.clusters)
        self.budgets.update(table.clusters)
        # Snapshots, not the live objects: a request keeps the table it started with, so a
        # retry after a swap that dropped its cluster must still find that cluster's balancer.
        balancers = {n: b for n in table.clusters if (b := self.balancers.get(n)) is not None}
        budgets = {n: g for n in table.clusters if (g := self.budgets.get(n)) is not None}
        # plain dicts, never changed after this: a mapping proxy's get() costs a request
        # twice as much
        http2 = frozenset(n for n, c in table.clusters.items() if c.http2)
        state = ProxyState(
            table=table, balancers=balancers, budgets=budgets, version=version, http2=http2
        )
        for h in self.handlers:
            h.swap(state)
        if self.services is not None:
            self.services.update(state)
        self._settle_later()
        self.version = version
        log.info(
            "table applied version=%s listeners=%d clusters=%d",
            version,
            len(table.listeners),
            len(table.clusters),
        )
        self._check_gateway(table)
        self._check_tls(table)

    def _settle_later(self) -> None:
        """`settle_heap` once the swaps stop for `SETTLE_AFTER_S`: a full collection walks
        the whole heap, so a rollout's burst of tables pays for it once, not per table."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # applied outside a loop (tests, tools): settle now
            settle_heap()
            return
        if self._settle is not None:
            self._settle.cancel()
        self._settle = loop.call_later(SETTLE_AFTER_S, settle_heap)

    def apply_policy(self, resources: PolicyResources, version: str) -> None:
        """New policy resources: resolved for this workload's app port (each one seen, with
        ``--transparent``), swapped in for the next request and connection. A policy that
        cannot be resolved keeps the last one."""
        self._policy = resources
        config = self.config
        if config.transparent:
            ports = list(self.guards.items())
        elif self.guard is not None and config.app is not None:
            ports = [(config.app.port, self.guard)]
        else:
            return
        if all([self._resolve(guard, port, resources, version) for port, guard in ports]):
            self.policy_version = version

    def guard_for(self, port: int) -> InboundGuard:
        """``--transparent``: the guard of app port `port` (made, and given the last policy,
        at the port's first connection)."""
        guard = self.guards.get(port)
        if guard is None:
            guard = self.guards[port] = new_guard(self.config, self.metrics, port)
            if self._policy is not None:
                self._resolve(guard, port, self._policy, self.policy_version or "")
        return guard

    def _resolve(
        self, guard: InboundGuard, port: int, resources: PolicyResources, version: str
    ) -> bool:
        config = self.config
        workload = policy_workload(config)
        try:
            policy = resources.resolve(workload, port)
        except TableError as exc:
            log.warning(
                "policy rejected, keeping the last one version=%s port=%d error=%s",
                version,
                port,
                exc,
            )
            return False
        inbound = self.servers[-1] if self.servers else None
        if policy.opaque and not guard.opaque and not isinstance(inbound, DetectingServer):
            log.warning(
                "port %d is opaque by policy but the inbound listener cannot forward TCP"
                " (start the proxy with --identity or --opaque-ports)",
                port,
            )
        guard.update(policy)
        log.info(
            "policy applied version=%s port=%d server=%s mode=%s opaque=%s routes=%d probes=%d",
            version,
            port,
            policy.server_name,
            policy.mode,
            policy.opaque,
            len(policy.routes),
            len(policy.probes),
        )
        return True

    def _check_tls(self, table: RuntimeTable) -> None:
        """A Gateway port's HTTPS chains take effect for the next handshake; when the port
        turns from plain HTTP to HTTPS or back, the socket is served again (`_rebind`).
        A table without the listener keeps the port as it is."""
        name = self.config.gateway_listener()
        lt = None if name is None else table.listeners.get(name)
        if lt is None or self.config.outbound is None:
            return
        if lt.tls is not None:
            self.tls.terminator = lt.tls
        self.tls_wanted = lt.tls is not None
        if self.tls_wanted != self.tls_on and (self._rebinder is None or self._rebinder.done()):
            self._rebinder = asyncio.get_running_loop().create_task(
                _guard(self._rebind(), "tls rebind"), name="tls rebind"
            )

    async def _rebind(self) -> None:
        """Serve the outbound socket again, with or without TLS, without closing it: a new
        server on a duplicate of the listening descriptor, then the old server closes (its
        connections live on). Until then /ready says no."""
        while self.tls_on != self.tls_wanted:
            on = self.tls_wanted
            old = self.servers[0]
            assert not isinstance(old, DetectingServer)  # the outbound socket never detects
            listening = old.sockets[0]
            dup = socket.fromfd(listening.fileno(), listening.family, listening.type)
            assert self.config.outbound is not None
            try:
                new = await serve_http(
                    self.handlers[0],
                    host=self.config.outbound.host,
                    port=0,
                    sock=dup,
                    tls=self.tls if on else None,
                    http2=self.h2.take_over,
                )
            except BaseException:
                dup.close()
                raise
            self.servers[0] = new
            old.close()
            self.tls_on = on
            log.info("gateway port served again tls=%s", "on" if on else "off")

    def _check_gateway(self, table: RuntimeTable) -> None:
        """With `--gateway`, say once when the table has no such Gateway listener (every
        request then answers 404 unknown destination) and once when it comes back. With
        `-f` the CLI refuses such a Gateway up front; over xDS only a table can tell."""
        listener = self.config.gateway_listener()
        if listener is None:
            return
        missing = listener not in table.listeners
        if missing and not self.gateway_missing:
            known = sorted(n for n in table.listeners if n.startswith("gateway/")) or ["none"]
            log.warning(
                "gateway listener not in the table gateway=%s gateways=%s",
                self.config.gateway,
                ",".join(known),
            )
        elif not missing and self.gateway_missing:
            log.info("gateway listener in the table gateway=%s", self.config.gateway)
        self.gateway_missing = missing

    def port_of(self, server: asyncio.Server | DetectingServer) -> int:
        return int(server.sockets[0].getsockname()[1])

    def listening(self) -> Listening:
        """The addresses bound (`start_proxy` has returned)."""
        config, servers = self.config, iter(self.servers)
        out = inb = adm = None
        if config.outbound is not None:
            out = Address(host=config.outbound.host, port=self.port_of(next(servers)))
        if config.inbound is not None:
            inb = Address(host=config.inbound.host, port=self.port_of(next(servers)))
        if config.admin is not None and self.admin is not None:
            adm = Address(host=config.admin.host, port=bound_port(self.admin))
        return Listening(outbound=out, inbound=inb, admin=adm)


def build_proxy(config: ProxyConfig) -> Proxy:
    metrics = ProxyMetrics(
        namespace=config.namespace,
        workload_kind=config.workload_kind,
        workload_name=config.workload_name,
        pod=config.pod,
    )
    pool = UpstreamPool(read_timeout_ms=config.upstream_read_timeout_ms)
    proxy = Proxy(config=config, metrics=metrics, tap=TapHub(), pool=pool)
    if config.trace is not None:
        # imported here: the OpenTelemetry SDK loads only in a proxy with --trace-otlp
        from turnout.proxy.tracing import Tracer

        proxy.tracer = Tracer(config)
    if config.inbound is not None and config.app is not None and not config.transparent:
        proxy.guard = new_guard(config, metrics, config.app.port, host=config.app.host)
    if config.identity is not None:
        # imported here: cryptography loads only in a proxy with an identity
        from turnout.proxy.identity.material import Material
        from turnout.proxy.identity.state import IdentityState

        proxy.identity = pool.mesh = IdentityState(Material.generate(config.identity.name))
    return proxy


def _start_identity(proxy: Proxy) -> None:
    """`--identity`: the Certify client, renewing in the background (grpc is imported only
    here, so a proxy without an identity never loads it)."""
    from turnout.proxy.identity.client import IdentityClient

    ident = proxy.config.identity
    assert ident is not None and proxy.identity is not None
    proxy.identity_client = client = IdentityClient(
        proxy.identity,
        target=ident.addr,
        token_file=Path(ident.token_file),
        on_issued=lambda issued: proxy.metrics.identity_issued(issued.valid_until),
    )
    proxy._identity_task = asyncio.get_running_loop().create_task(
        _guard(client.run(), "identity client"), name="identity client"
    )


async def start_proxy(
    config: ProxyConfig,
    source: TableSource,
    *,
    peers: Callable[[], Awaitable[list[str]]] | None = None,
    peers_ready: Callable[[], bool] | None = None,
) -> tuple[Proxy, asyncio.Task[None]]:
    """Bind the listeners and start the table source; returns once every port is bound.
    A port that cannot be bound raises `ListenError` (the ports bound before it are closed
    again). `peers` gives the other workers' metrics texts for /metrics, `peers_ready` their
    readiness."""
    if config.inbound is not None and config.app is None and not config.transparent:
        raise ValueError("--inbound needs --app HOST:PORT")
    proxy = build_proxy(config)
    if proxy.identity is not None:
        _start_identity(proxy)
    bound = False
    try:
        await _bind(proxy, peers=peers, peers_ready=peers_ready)
        bound = True
    finally:
        if not bound:  # a ListenError, or cancelled half way: close what was opened
            await _close_listeners(proxy)
    source = reporting_admin(source, proxy.listening().admin)
    task = asyncio.get_running_loop().create_task(
        _guard(
            source.run(
                proxy.apply,
                proxy.apply_policy
                if proxy.guard or (config.transparent and config.inbound)
                else None,
            ),
            "table source",
        ),
        name="table source",
    )
    return proxy, task


async def _bind(
    proxy: Proxy,
    *,
    peers: Callable[[], Awaitable[list[str]]] | None,
    peers_ready: Callable[[], bool] | None,
) -> None:
    """Open the outbound, inbound and admin sockets, in that order, into `proxy`."""
    config = proxy.config
    if config.service_listeners:
        telemetry = Telemetry(proxy.metrics, proxy.tap, tracer=proxy.tracer)
        empty = _empty_state(proxy)

        def service_handler(address: tuple[str, int]) -> Handler:
            return Handler(
                state=empty,
                pool=proxy.pool,
                telemetry=telemetry,
                namespace=config.namespace,
                address=address,
                require_mtls=config.require_mtls,
            )

        proxy.services = ServiceListeners(
            service_handler, reuse_port=config.workers > 1, http2=proxy.h2.take_over
        )
    for name, addr, handler in _handlers(proxy):
        server: asyncio.Server | DetectingServer
        with _listen_errors(name, addr):
            if config.transparent:
                server = await serve_transparent(
                    name,
                    addr,
                    handler,
                    config=config,
                    guard_for=proxy.guard_for,
                    hooks=TcpHooks(proxy.metrics, name if name == "inbound" else "outbound"),
                    mesh=proxy.identity,
                    http2=proxy.h2.take_over,
                )
            elif name == "inbound" and (proxy.identity is not None or config.opaque_ports):
                assert config.app is not None
                server = await serve_detecting(
                    handler,
                    host=addr.host,
                    port=addr.port,
                    mesh=proxy.identity,
                    reuse_port=config.workers > 1,
                    detect_timeout_ms=(
                        config.identity.detect_timeout_ms
                        if config.identity is not None
                        else DETECT_TIMEOUT_MS
                    ),
                    gate=proxy.guard,
                    app=(config.app.host, config.app.port),
                    hooks=TcpHooks(proxy.metrics, "inbound"),
                    http2=proxy.h2.take_over,
                )
            else:
                server = await serve_http(
                    handler,
                    host=addr.host,
                    port=addr.port,
                    reuse_port=config.workers > 1,
                    hooks=TcpHooks(proxy.metrics, name if name == "inbound" else "outbound"),
                    http2=proxy.h2.take_over,
                )
        proxy.handlers.append(handler)
        proxy.servers.append(server)
    if config.admin is not None:
        with _listen_errors("admin", config.admin):
            proxy.admin = await start_admin(
                config.admin.host,
                config.admin.port,
                metrics=proxy.metrics,
                tap=proxy.tap,
                ready=lambda: proxy.ready and (peers_ready is None or peers_ready()),
                peers=peers,
                app_probes=dict(config.app_probes),
            )


def _handlers(proxy: Proxy) -> list[tuple[ListenerName, Address, Handler]]:
    """The outbound and inbound listeners to open, each with its handler (on an empty
    table until the source's first one)."""
    config = proxy.config
    empty = _empty_state(proxy)
    telemetry = Telemetry(proxy.metrics, proxy.tap, tracer=proxy.tracer)
    listeners: list[tuple[ListenerName, Address, Handler]] = []
    if config.outbound is not None:
        handler = Handler(
            state=empty,
            pool=proxy.pool,
            telemetry=telemetry,
            direction="outbound",
            namespace=config.namespace,
            listener=config.gateway_listener(),
            require_mtls=config.require_mtls,
            transparent=config.transparent,
        )
        listeners.append(("outbound", config.outbound, handler))
    if config.inbound is not None:
        handler = Handler(
            state=empty,
            pool=proxy.pool,
            telemetry=telemetry,
            direction="inbound",
            namespace=config.namespace,
            app=None if config.app is None else (config.app.host, config.app.port),
            guard=proxy.guard,
            guards=proxy.guard_for if config.transparent else None,
        )
        listeners.append(("inbound", config.inbound, handler))
    return listeners


def _empty_state(proxy: Proxy) -> ProxyState:
    """What handlers serve until the source's first table."""
    return ProxyState(
        table=RuntimeTable.from_xds((), ()), balancers=proxy.balancers, budgets=proxy.budgets
    )


@contextlib.contextmanager
def _listen_errors(listener: ListenerName, addr: Address) -> Iterator[None]:
    """The one place a failed bind (an `OSError` from the loop) becomes a `ListenError`."""
    try:
        yield
    except OSError as exc:
        raise ListenError(listener, addr.host, addr.port, _reason(exc)) from exc


def _reason(exc: OSError) -> str:
    """``address already in use``: the errno's text, lowercase, without the loop's prefix."""
    if exc.errno is not None and exc.errno > 0:
        text = os.strerror(exc.errno)
    else:  # a resolver error (socket.gaierror) carries a negative code and its own text
        text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


SHUTDOWN_GRACE_S = 5.0
"""How long HTTP/2 streams in flight get to finish after the GOAWAY of a stop (within the
`--workers` parent's `workers.STOP_TIMEOUT_S`)."""


async def stop_proxy(proxy: Proxy, task: asyncio.Task[None]) -> None:
    if proxy._settle is not None:
        proxy._settle.cancel()
    for t in (task, proxy._rebinder, proxy._identity_task):
        if t is None:
            continue
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await t
    await _close_listeners(proxy)
    if proxy.services is not None:
        await proxy.services.close()
    # no new connection now; HTTP/2 ones get a GOAWAY, their streams finish (the pool is open)
    await proxy.h2.drain(SHUTDOWN_GRACE_S)
    for h in proxy.handlers:
        await h.aclose()
    proxy.tap.close()
    if proxy.guard is not None:
        await proxy.guard.close()
    await proxy.pool.close()
    if proxy.tracer is not None:
        await asyncio.to_thread(proxy.tracer.shutdown)  # flushes: not on the event loop


async def _close_listeners(proxy: Proxy) -> None:
    for server in proxy.servers:
        server.close()
    for server in proxy.servers:
        await server.wait_closed()
    if proxy.admin is not None:
        await proxy.admin.cleanup()


FULL_SETTLE_GROWTH = 2
"""`settle_heap` runs a full collection only when the heap (`sys.getallocatedblocks`) has
grown this many times over since the last one: something dropped is not being freed (a
cycle), or the tables have grown that much."""

_blocks_after_full = [0]
"""`sys.getallocatedblocks()` right after the last full collection (0: none yet)."""


def settle_heap() -> None:
    """After a table swap: freeze the new table, so the collector never walks it again.

    A table is tens of thousands of long-lived objects; left in the collector's generations,
    every full collection walks them all and pauses the request path for 40-100 ms (2,000
    routes: `bench.tail`). Frozen, they are skipped. A table holds no reference cycle, so
    the old one is freed by reference counting when the last request on it ends, frozen or
    not: a swap needs only a young collection (the garbage of building the new table, which
    may have cycles) and a freeze, well under a millisecond, not a full pass on the event
    loop during traffic. The full pass (unfreeze, collect, freeze) runs at the first settle
    and then only when the heap has grown `FULL_SETTLE_GROWTH` times over since the last
    one. (The heap is measured by its allocated blocks, a walk of the allocator's arenas in
    microseconds; `gc.get_freeze_count()` walks every frozen object, milliseconds.)"""
    blocks = sys.getallocatedblocks()
    if not _blocks_after_full[0] or blocks > FULL_SETTLE_GROWTH * _blocks_after_full[0]:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        _blocks_after_full[0] = sys.getallocatedblocks()
        return
    gc.collect(1)
    gc.freeze()


async def _guard(coro: Awaitable[None], name: str) -> None:
    """Log a crash of a background task instead of losing it (kopf's `guard`)."""
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background task crashed task=%s", name)
        raise
