"""One listener's request path: from an incoming request to its `Call`, plus the mirrors.

```
IncomingRequest ─ path normalized (`paths.py`; refused: 400) ─┐
  ─ outbound: listener (the Gateway's; in a mesh the Service at the address connected to,
    or the Service the Host header names) or a pass-through to the endpoint addressed,
    and the metrics authority, cached per Host ─ over TLS, a Host not of the SNI's listener: 421
    ─ decide() ─► Decision (none: 404) ─┐
  ─ inbound: the local app, no routing ─────────────────────────────┴─► Call (`call.py`)
  no body, no upgrade: Call.begin() in the parser's callback (no task, no await)
  a body: Call.run_with_body() (read up to the retry cap first); an upgrade: run_upgrade()
Call ─ mirror(decision, ...) ─► copies to the mirror clusters: fire and forget, bounded
```

`ProxyState` (table, balancers, budgets) is replaced as a whole on every table update
(`swap`); a request reads it once, so it finishes on the table it started with. Its
balancers and budgets are a per-table snapshot of the clusters (the `Balancer`/`Budget`
objects themselves are shared across tables), so a retry or a mirror of a request whose
cluster a later table dropped still finds the endpoints of its own table. Everything that
can be built per table update is (decisions, matchers, cumulative weights).

Inbound (in front of the local app) forwards every request to the app: routing is the
client side's job, as in Linkerd; the inbound side counts what the app answers (the metrics
Flagger reads) and is where authorization will plug in. Not here: the request's flow after
its decision (`call.py`), binding sockets (`runner.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from turnout.proxy import outbound_tls
from turnout.proxy.actions import Decision
from turnout.proxy.answers import MISDIRECTED, UNKNOWN_ADDRESS, UNKNOWN_HOST, Answer
from turnout.proxy.call import NO_DECISION, Call
from turnout.proxy.context import Direction, ProxyState
from turnout.proxy.destinations import address_of
from turnout.proxy.errors import UpstreamError
from turnout.proxy.families import UNKNOWN_AUTHORITY
from turnout.proxy.h2_call import Replay, for_grpc, is_grpc
from turnout.proxy.hosts import listener_for_host
from turnout.proxy.inbound_guard import InboundGuard
from turnout.proxy.index import RouteIndex
from turnout.proxy.paths import Refusal, normalize_path, normalize_request
from turnout.proxy.plain_call import PlainCall
from turnout.proxy.retries import MAX_RETRY_BODY_BYTES
from turnout.proxy.table import NO_ROUTE
from turnout.proxy.telemetry import Exchange, Telemetry
from turnout.proxy.transport.client import UpstreamPool
from turnout.proxy.transport.heads import h2_request_headers, raw_pairs
from turnout.proxy.transport.messages import Headers, IncomingRequest, ResponseWriter
from turnout.proxy.upgrades import UpgradeCall

log = logging.getLogger(__name__)

__all__ = ["Handler", "ProxyState"]

MAX_MIRRORS_IN_FLIGHT = 64
"""Mirrored copies beyond this many at once are dropped: a mirror never slows the request."""

MIRROR_TIMEOUT_MS = 10_000
"""A mirrored copy gives up after this long."""

LOCAL_APP_HOST = "127.0.0.1"
"""``--transparent`` inbound: where the app listens (on the port the client connected to)."""

MAX_REMEMBERED_HOSTS = 4096
"""Host headers whose listener and label a handler remembers (then it starts over)."""


class Drain:
    """The receiver of a mirrored HTTP/2 exchange: reads it all, keeps nothing."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_head(self, conn: object, status: int, headers: object, length: int | None) -> None:
        pass

    def on_body(self, chunk: bytes) -> None:
        pass

    def on_end(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def on_error(self, error: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(error)


@dataclass(slots=True)
class Handler:
    """One listener's request path (outbound: routes; inbound: the local app)."""

    state: ProxyState
    pool: UpstreamPool
    telemetry: Telemetry
    direction: Direction = "outbound"
    namespace: str = "default"
    app: tuple[str, int] | None = None
    """Inbound only: where the local app listens."""
    listener: str | None = None
    """Outbound: the one listener every request is decided on (a Gateway's); None: the
    Service listener the Host header names, as a mesh proxy does."""
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic
    guard: InboundGuard | None = None
    """Inbound: the port's authorization (`inbound_guard.py`); None: none."""
    address: tuple[str, int] | None = None
    """Outbound, mesh: this listener is bound to a Service's address (`--service-listeners`):
    that Service is every request's destination, whatever the Host (`destinations.py`)."""
    require_mtls: bool = False
    """Outbound: ``--require-mtls`` (`outbound_tls.py`): nothing is sent to an endpoint
    without an identity, requests (502) and mirrored copies (dropped) alike; a request's
    ``l5d-require-id`` is honoured whatever this says."""
    transparent: bool = False
    """``--transparent``: outbound, a redirected connection's original destination is the
    request's destination address (`destinations.py`), whatever the Host."""
    guards: Callable[[int], InboundGuard] | None = None
    """Inbound, ``--transparent``: the guard of an app port (`runner.Proxy.guard_for`); the
    app is 127.0.0.1 at the connection's original port (`app`: when not redirected)."""
    _hosts: dict[str, tuple[RouteIndex | str | Decision | None, str]] = field(default_factory=dict)
    """Host header -> (where its requests are decided, metrics authority); see `_host`."""
    _addresses: dict[tuple[str, int], tuple[str | Decision | None, str]] = field(
        default_factory=dict
    )
    """``--transparent``: original destination -> the same; see `_address`."""
    _mirrors: set[asyncio.Task[None]] = field(default_factory=set)

    def swap(self, state: ProxyState) -> None:
        """Atomic: requests already running keep the state they read."""
        self.state = state
        self._hosts.clear()  # the metrics labels of hosts depend on the table
        self._addresses.clear()

    def __call__(self, req: IncomingRequest, writer: ResponseWriter) -> Awaitable[None] | None:
        """Callback mode (returns None) for a request without a body; a coroutine that reads
        the body, or sets up the tunnel, first otherwise (`serve_http`'s two modes)."""
        start = self.clock()
        state = self.state
        path = req.path  # normalized before anything reads it (`paths.normalize_request`)
        normal = normalize_path(path)
        refusal = None if normal is path else normalize_request(req)
        decision: Decision | None
        if self.direction == "inbound":
            app, guard = self.app, self.guard
            if self.guards is not None:
                app, guard = self._inbound_target(req)
            assert app is not None
            ex = self.telemetry.exchange(self.telemetry, "inbound", req, None, start, app, req.host)
            if refusal is not None:
                self._refuse(ex, writer, refusal)
                return None
            if guard is not None:
                if guard.authn is not None:
                    return self._authenticated(guard, req, writer, ex, state)
                if (denied := guard.admit(req)) is not None:
                    self._answer(ex, writer, denied, req)
                    return None
            decision = NO_DECISION
        else:
            seen: tuple[RouteIndex | str | Decision | None, str] | None
            dst = None
            if self.transparent and (conn := req.conn) is not None:
                dst = conn.original_dst
            if dst is not None:
                seen = self._addresses.get(dst)
                if seen is None:
                    seen = self._address(dst, state)
            else:
                seen = self._hosts.get(req.host)
                if seen is None:
                    seen = self._host(req.host, state)
            target, authority = seen
            if refusal is not None:
                ex = self.telemetry.exchange(
                    self.telemetry, "outbound", req, None, start, None, authority
                )
                self._refuse(ex, writer, refusal)
                return None
            tls = req.tls
            if tls is not None and not tls.allows(req.host):
                ex = self.telemetry.exchange(
                    self.telemetry, "outbound", req, None, start, None, authority
                )
                self._answer(ex, writer, MISDIRECTED, req)
                return None
            if isinstance(target, RouteIndex):  # the Host's virtual host (`_host`)
                route = target.lookup(req)
                decision = NO_ROUTE if route is None else route.decision
            elif target is None:
                decision = None
            elif isinstance(target, str):  # an address's listener: decided by the Host
                decision = state.table.decide(req, listener=target)
            else:
                decision = target  # a pass-through, or no listener or virtual host to look in
            ex = self.telemetry.exchange(
                self.telemetry, "outbound", req, decision, start, None, authority
            )
            if decision is None:
                by_address = (
                    dst is not None or self.address is not None or address_of(req.host) is not None
                )
                self._answer(ex, writer, UNKNOWN_ADDRESS if by_address else UNKNOWN_HOST, req)
                return None
        if req.upgrade is not None:
            return UpgradeCall(self, req, writer, ex, decision, state, None).run()
        if req.body.exhausted:
            action = decision.action
            if (
                decision.plain  # (inbound: NO_DECISION, never plain)
                and not self.require_mtls
                and req.require_id is None
                and not (state.http2 and not state.http2.isdisjoint(action.clusters))  # type: ignore[union-attr]  # plain: a Forward
            ):
                PlainCall(self, req, writer, ex, decision, state).begin_plain()
                return None
        call = Call(self, req, writer, ex, decision, state, None)
        if not req.body.exhausted:
            # an HTTP/2 stream whose body came whole with its HEADERS (a gRPC unary call):
            # taken now, no task to read it; otherwise read (or relayed) by a task
            body = req.body.take(MAX_RETRY_BODY_BYTES) if req.version == "2" else None
            if body is None:
                return call.run_with_body()
            call.grpc = is_grpc(req.raw_headers)
            call.body = body
            writer.on_cancel = call.cancel
            call.finish = writer.complete
            call.begin()  # a body (and maybe gRPC: HTTP/2 upstream) is never the plain path
            return None
        call.body = b""  # not plain: mesh TLS asked, an HTTP/2 backend, a fault, a filter...
        writer.on_cancel = call.cancel
        call.finish = writer.complete
        call.begin()
        return None

    async def _authenticated(
        self,
        guard: InboundGuard,
        req: IncomingRequest,
        writer: ResponseWriter,
        ex: Exchange,
        state: ProxyState,
    ) -> None:
        """Inbound with JWT rules: authenticate (the key set may be fetched), authorize,
        then on to the app as any request."""
        denied = await guard.admit_authenticated(req)
        if denied is not None:
            self._answer(ex, writer, denied, req)
            return
        if req.upgrade is not None:
            await UpgradeCall(self, req, writer, ex, NO_DECISION, state, None).run()
            return
        await Call(self, req, writer, ex, NO_DECISION, state, None).run_with_body()

    # ----------------------------------------------------------------------- helpers

    @staticmethod
    def _answer(
        ex: Exchange, writer: ResponseWriter, answer: Answer, req: IncomingRequest | None = None
    ) -> None:
        if req is not None and req.version == "2" and is_grpc(req.raw_headers):
            answer = for_grpc(answer)  # counted with its gRPC status, as sent
        ex.finish(answer.status, grpc_status=answer.grpc_status)
        writer.send(answer.status, answer.headers, answer.body)
        writer.complete()

    def _inbound_target(
        self, req: IncomingRequest
    ) -> tuple[tuple[str, int] | None, InboundGuard | None]:
        """``--transparent`` inbound: the app (127.0.0.1 at the port the client connected
        to; `app` when the connection was not redirected) and that port's guard."""
        conn = req.conn
        dst = None if conn is None else conn.original_dst
        app = self.app if dst is None else (LOCAL_APP_HOST, dst[1])
        if app is None or self.guards is None:
            return app, None
        return app, self.guards(app[1])

    def _address(
        self, address: tuple[str, int], state: ProxyState
    ) -> tuple[str | Decision | None, str]:
        """`_host` for a transparent connection's original destination."""
        dest, label = self._by_address(address, state)
        if len(self._addresses) >= MAX_REMEMBERED_HOSTS:
            self._addresses.clear()
        seen = self._addresses[address] = (dest, label)
        return seen

    @staticmethod
    def _by_address(
        address: tuple[str, int], state: ProxyState
    ) -> tuple[str | Decision | None, str]:
        dest = state.table.destinations.lookup(address)
        if dest is None:
            return None, UNKNOWN_AUTHORITY
        return dest, dest if isinstance(dest, str) else f"{address[0]}:{address[1]}"

    def _host(self, host: str, state: ProxyState) -> tuple[RouteIndex | str | Decision | None, str]:
        """Where the requests for a Host header are decided, and their metrics authority,
        remembered until the table changes: the virtual host's route index (or the decision
        when the listener or the virtual host is missing: `RuntimeTable.router`), a
        pass-through, or None (no listener); the authority is the table's domain the Host matched, the
        destination's name when the address chose it, or "unknown"."""
        table = state.table
        dest: RouteIndex | str | Decision | None
        address = None
        if self.listener is None:
            address = self.address or (address_of(host) if host else None)
        if address is not None:
            dest, label = self._by_address(address, state)
        else:
            if self.listener is not None:
                dest = self.listener
            else:
                dest = listener_for_host(host, namespace=self.namespace) if host else None
            label = table.authority_label(host, listener=dest)
        if isinstance(dest, str):  # decided by the Host: this one, the key
            dest = table.router(host, listener=dest)
        if len(self._hosts) >= MAX_REMEMBERED_HOSTS:
            self._hosts.clear()
        seen = self._hosts[host] = (dest, label)
        return seen

    def _refuse(self, ex: Exchange, writer: ResponseWriter, refusal: Refusal) -> None:
        """The 400 of a path that cannot be normalized (`paths.py`), before any routing."""
        answer = refusal.answer
        ex.finish(answer.status)
        writer.send(answer.status, answer.headers, answer.body)
        writer.complete()

    def draw(self, per_million: int) -> bool:
        return per_million >= 1_000_000 or self.rng.random() * 1_000_000 < per_million

    def mirror(
        self,
        decision: Decision,
        state: ProxyState,
        req: IncomingRequest,
        target: str,
        headers: Headers,
        body: bytes | Replay,
    ) -> None:
        """Fire and forget: never awaited, bounded, failures only logged. A relayed body
        (`Replay`) is mirrored as it is relayed, each copy bounded (`h2_call.MirrorCopy`)."""
        for mirror in decision.mirrors:
            if not self.draw(mirror.per_million) or len(self._mirrors) >= MAX_MIRRORS_IN_FLIGHT:
                continue
            balancer = state.balancers.get(mirror.cluster)
            ep = balancer.pick() if balancer is not None else None
            if ep is None:
                continue
            if (self.require_mtls or req.require_id is not None) and outbound_tls.refusal(
                meshed=self.pool.mesh is not None,
                identity=ep.identity,
                require_mtls=self.require_mtls,
                require_id=req.require_id,
            ):
                continue  # mTLS required and not possible: the copy is not sent
            addr = (ep.address, ep.port)
            copy = body if isinstance(body, bytes) else body.tap()
            if copy is None:
                continue
            if mirror.cluster in state.http2 or is_grpc(req.raw_headers):  # as Call._prepare
                sent = self._send_mirror_h2(addr, req.method, target, headers, copy, ep.identity)
            else:
                sent = self._send_mirror(addr, req.method, target, headers, copy, ep.identity)
            task = asyncio.get_running_loop().create_task(sent, name=f"mirror {mirror.cluster}")
            self._mirrors.add(task)
            task.add_done_callback(self._mirrors.discard)

    async def _send_mirror(
        self,
        ep: tuple[str, int],
        method: str,
        target: str,
        headers: Headers,
        body: bytes | AsyncIterator[bytes],
        identity: str | None = None,
    ) -> None:
        try:
            resp = await self.pool.request(
                ep,
                method=method,
                target=target,
                headers=headers,
                body=body,
                timeout_ms=MIRROR_TIMEOUT_MS,
                identity=identity,
            )
            await resp.read()
        except (UpstreamError, ConnectionResetError) as exc:  # (a dropped MirrorCopy)
            log.debug("mirror failed endpoint=%s:%d error=%s", ep[0], ep[1], exc)

    async def _send_mirror_h2(
        self,
        ep: tuple[str, int],
        method: str,
        target: str,
        headers: Headers,
        body: bytes | AsyncIterator[bytes],
        identity: str | None = None,
    ) -> None:
        """A copy to an HTTP/2 mirror (its cluster speaks HTTP/2, or the request is gRPC)
        on the `H2Pool`; its response is read and dropped."""
        host = headers[0][1] if headers and headers[0][0] == "host" else ""
        try:
            pairs = h2_request_headers(
                method,
                target,
                host,
                raw_pairs(headers[1:] if host else headers),
                content_length=_sized(method, body),
            )
        except ValueError as exc:
            log.debug("mirror not sendable over http/2 error=%s", exc)
            return
        drain = Drain()
        stream = self.pool.h2.send(
            ep,
            method=method,
            headers=pairs,
            body=body,
            timeout_ms=MIRROR_TIMEOUT_MS,
            receiver=drain,
            identity=identity,
        )
        try:
            await drain.done
        except UpstreamError as exc:
            log.debug("mirror failed endpoint=%s:%d error=%s", ep[0], ep[1], exc)
        except asyncio.CancelledError:
            stream.cancel(drain)
            raise

    async def aclose(self) -> None:
        for task in list(self._mirrors):
            task.cancel()
        for task in list(self._mirrors):
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _sized(method: str, body: bytes | AsyncIterator[bytes]) -> int | None:
    """A mirror's content-length over HTTP/2: a whole body's length (none for an empty
    GET/HEAD); None for a relayed body (its length is not known yet)."""
    if not isinstance(body, bytes) or (not body and method in ("GET", "HEAD")):
        return None
    return len(body)
