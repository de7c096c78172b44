"""The per-request path: a `Decision` from the runtime table, applied to one HTTP request.

```
IncomingRequest ─ listener (Host -> Service) ─ decide() ─► _Call
   fault: delay (a timer), abort ── DirectResponse / Redirect ─► answer
   Forward: weighted backend (invalid share: its status) ── request filters ── mirrors
   ── balancer endpoint (none ready: 503) ── try: per-try timeout inside the request
   deadline (504) ── retriable status / connect error + replayable body + budget ─► backoff
   timer, try again ── response filters ─► to the client (small bodies in one write,
   others streamed with the client's flow control); metrics; tap
```

The common request (no body, no upgrade) never creates a task or awaits: `_Call` is the
`ResponseReceiver` of its upstream exchange and answers through the writer's synchronous
calls, so a request costs a handful of callbacks and objects, not a coroutine chain. A
request with a body is read first (up to `MAX_RETRY_BODY_BYTES`, else streamed and never
retried) by a small coroutine that then runs the same `_Call`; an upgrade (WebSocket) is
routed the same way and then spliced (`ResponseWriter.tunnel`).

`ProxyState` (table, balancers, budgets) is replaced as a whole on every table update; a
request reads it once, so it finishes on the table it started with. Its balancers and budgets
are a per-table snapshot of the clusters (the `Balancer`/`Budget` objects themselves are
shared across tables), so a retry or a mirror of a request whose cluster a later table
dropped still finds the endpoints of its own table. Everything that can be built per table
update is (decisions, matchers, cumulative weights).

Inbound (in front of the local app) forwards every request to the app: routing is the
client side's job, as in Linkerd; the inbound side counts what the app answers (the metrics
Flagger reads) and is where authorization will plug in.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from turnout.proxy.actions import Backend, Decision, DirectResponse, Forward, Redirect
from turnout.proxy.balancer import Balancer, Slot
from turnout.proxy.budget import Budget
from turnout.proxy.errors import (
    ClientError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from turnout.proxy.filters import apply_request_filters, apply_response_filters, redirect_location
from turnout.proxy.hosts import listener_for_host
from turnout.proxy.metrics import REQUEST_TIMEOUT, RESPONSE_HEADERS_TIMEOUT
from turnout.proxy.table import RuntimeTable
from turnout.proxy.telemetry import Exchange, Telemetry
from turnout.proxy.transport.client import UpstreamPool
from turnout.proxy.transport.heads import encode_forward_head, encode_request_head, request_framing
from turnout.proxy.transport.messages import (
    HOP_BY_HOP,
    Headers,
    IncomingRequest,
    RawHeaders,
    ResponseWriter,
    UpstreamHandle,
)

log = logging.getLogger(__name__)

Direction = Literal["inbound", "outbound"]

MAX_RETRY_BODY_BYTES = 64 * 1024
"""Only requests whose body is buffered under this size are retried (Linkerd's cap)."""

SMALL_BODY_BYTES = 64 * 1024
"""Responses up to this size (with a Content-Length) are read whole and written in one go."""

MAX_MIRRORS_IN_FLIGHT = 64
"""Mirrored copies beyond this many at once are dropped: a mirror never slows the request."""

MIRROR_TIMEOUT_MS = 10_000
"""A mirrored copy gives up after this long."""

_REASONS = {404: b"no route", 503: b"no ready endpoint", 504: b"timeout", 502: b"bad gateway"}


T_co = TypeVar("T_co", covariant=True)


class ByCluster(Protocol[T_co]):
    """Per-cluster lookup: a `Balancers`/`Budgets`, or a mapping snapshot of one."""

    def get(self, cluster: str, /) -> T_co | None: ...


@dataclass(frozen=True, slots=True)
class ProxyState:
    """Everything a request reads at its start; replaced whole on each table update."""

    table: RuntimeTable
    balancers: ByCluster[Balancer]
    """The table's clusters only, fixed for this state (not the live `Balancers`)."""
    budgets: ByCluster[Budget]
    """As `balancers`."""
    version: str = ""


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
    _listeners: dict[str, str | None] = field(default_factory=dict)
    _mirrors: set[asyncio.Task[None]] = field(default_factory=set)

    def swap(self, state: ProxyState) -> None:
        """Atomic: requests already running keep the state they read."""
        self.state = state

    def __call__(self, req: IncomingRequest, writer: ResponseWriter) -> Awaitable[None] | None:
        """Callback mode (returns None) for a request without a body; a coroutine that reads
        the body, or sets up the tunnel, first otherwise (`serve_http`'s two modes)."""
        start = self.clock()
        state = self.state
        if self.direction == "inbound":
            assert self.app is not None
            ex = Exchange(self.telemetry, "inbound", req, None, start, self.app)
            call = _Call(self, req, writer, ex, _NO_DECISION, state, None)
        else:
            listener = self.listener or self._listeners.get(req.host, "")
            if listener == "":
                listener = self._listener(req.host)
            decision = None if listener is None else state.table.decide(req, listener=listener)
            ex = Exchange(self.telemetry, "outbound", req, decision, start)
            if decision is None:
                ex.finish(404)
                writer.send(
                    404,
                    [("content-type", "text/plain")],
                    b"unknown destination: " + req.host.encode(),
                )
                writer.complete()
                return None
            call = _Call(self, req, writer, ex, decision, state, None)
        if req.upgrade is not None:
            return call.run_upgrade()
        if not req.body.complete:
            return call.run_with_body()
        call.body = b""
        writer.on_cancel = call.cancel
        call.finish = writer.complete
        call.begin()
        return None

    # ----------------------------------------------------------------------- helpers

    def _listener(self, host: str) -> str | None:
        cached = self._listeners.get(host, "")
        if cached != "":
            return cached
        if len(self._listeners) > 4096:
            self._listeners.clear()
        got = listener_for_host(host, namespace=self.namespace) if host else None
        self._listeners[host] = got
        return got

    def draw(self, per_million: int) -> bool:
        return per_million >= 1_000_000 or self.rng.random() * 1_000_000 < per_million

    def mirror(
        self,
        decision: Decision,
        state: ProxyState,
        req: IncomingRequest,
        target: str,
        headers: Headers,
        body: bytes,
    ) -> None:
        """Fire and forget: never awaited, bounded, failures only logged."""
        for mirror in decision.mirrors:
            if not self.draw(mirror.per_million) or len(self._mirrors) >= MAX_MIRRORS_IN_FLIGHT:
                continue
            balancer = state.balancers.get(mirror.cluster)
            ep = balancer.pick() if balancer is not None else None
            if ep is None:
                continue
            task = asyncio.get_running_loop().create_task(
                self._send_mirror((ep.address, ep.port), req.method, target, headers, body),
                name=f"mirror {mirror.cluster}",
            )
            self._mirrors.add(task)
            task.add_done_callback(self._mirrors.discard)

    async def _send_mirror(
        self, ep: tuple[str, int], method: str, target: str, headers: Headers, body: bytes
    ) -> None:
        try:
            resp = await self.pool.request(
                ep,
                method=method,
                target=target,
                headers=headers,
                body=body,
                timeout_ms=MIRROR_TIMEOUT_MS,
            )
            await resp.read()
        except UpstreamError as exc:
            log.debug("mirror failed endpoint=%s:%d error=%s", ep[0], ep[1], exc)

    async def aclose(self) -> None:
        for task in list(self._mirrors):
            task.cancel()
        for task in list(self._mirrors):
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _Call:
    """One request after its decision, driven by callbacks: timers (fault delay, retry
    backoff) and the upstream exchange (`ResponseReceiver`). `finish` is called once at the
    end (the writer's `complete()` in callback mode)."""

    __slots__ = (
        "attempt",
        "backend",
        "balancer",
        "body",
        "buffered",
        "cancelled",
        "deadline",
        "decision",
        "discarding",
        "ex",
        "finish",
        "h",
        "handle",
        "head",
        "headed",
        "method",
        "req",
        "resp_headers",
        "sent",
        "slot",
        "state",
        "status",
        "t0",
        "target",
        "timer",
        "writer",
    )

    def __init__(
        self,
        h: Handler,
        req: IncomingRequest,
        writer: ResponseWriter,
        ex: Exchange,
        decision: Decision,
        state: ProxyState,
        backend: Backend | None,
    ) -> None:
        self.h = h
        self.req = req
        self.writer = writer
        self.ex = ex
        self.decision = decision
        self.state = state
        self.backend = backend
        self.finish: Callable[[], None] = _nothing
        self.body: bytes | None = None
        """The buffered (replayable) request body; None when too big: the request's own
        stream carries it, once, and the request is never retried."""
        self.cancelled = False
        self.timer: asyncio.TimerHandle | None = None
        self.handle: UpstreamHandle | None = None
        self.balancer: Balancer | None = None
        self.slot: Slot | None = None
        """The balancer's endpoint of the try in flight (none inbound)."""
        self.attempt = 0
        self.t0 = 0.0
        self.deadline: float | None = None
        self.head = b""
        self.method = req.method
        self.target = req.target
        self.headed = False
        self.discarding = False
        self.status = 0
        self.resp_headers: Headers | RawHeaders = []
        self.buffered: list[bytes] | None = None
        self.sent = 0

    # -- the two async entries ------------------------------------------------------------

    async def run_with_body(self) -> None:
        """A request with a body: read it (up to the retry cap), then run as usual."""
        self.body = await self.req.body.read(MAX_RETRY_BODY_BYTES)
        await self._run_async(self.begin)

    async def run_upgrade(self) -> None:
        """An upgrade request: routed like any other, then spliced (never retried)."""
        fault = self.decision.fault
        if fault is not None and fault.delay_per_million and self.h.draw(fault.delay_per_million):
            await asyncio.sleep(fault.delay_ms / 1000)
        self.body = b""
        if not self._prepare():
            return
        target = self._target()
        if target is None:
            self._answer(503, _REASONS[503])
            return
        slot, addr = target
        balancer = self.balancer
        h, ex = self.h, self.ex
        ex.endpoint(addr)
        upgrade = self.req.upgrade
        assert upgrade is not None
        t0 = h.clock()
        failed = True
        try:
            resp, tunnel = await h.pool.upgrade(
                addr,
                method=self.method,
                target=self.target,
                headers=forward_headers(self.req.headers, self.req.host),
                upgrade=upgrade,
                timeout_ms=_try_timeout(self.decision.per_try_timeout_ms, self.deadline, t0),
            )
            failed = False
        except UpstreamError as exc:
            ex.attempt(None, error=_attempt_error(exc))
            self._answer_error(exc)
            return
        finally:
            if balancer is not None and slot is not None:
                balancer.release(slot, (h.clock() - t0) * 1000, failed=failed)
        ex.attempt(resp.status)
        ex.response_head(resp.status)
        if tunnel is None:
            body = await resp.read()
            await self.writer.respond(
                resp.status, self._response_headers(resp.status, resp.headers), body
            )
            ex.finish(resp.status, bytes_sent=len(body))
            return
        try:
            await self.writer.tunnel(tunnel)
        finally:
            ex.finish(101)

    async def _run_async(self, begin: Callable[[], None]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.finish = functools.partial(_resolve, done)
        try:
            begin()
            await done
        except asyncio.CancelledError:
            self.cancel()
            raise

    # -- the flow -------------------------------------------------------------------------

    def begin(self) -> None:
        fault = self.decision.fault
        if fault is not None and fault.delay_per_million and self.h.draw(fault.delay_per_million):
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(fault.delay_ms / 1000, self._after_delay)
            return
        self._go()

    def _after_delay(self) -> None:
        self.timer = None
        if not self.cancelled:
            self._go()

    def _go(self) -> None:
        try:
            if self._prepare():
                self._try()
        except Exception as exc:
            self._crash(exc)

    def _prepare(self) -> bool:
        """Everything up to the first try; False when the request was answered already."""
        decision, h, req = self.decision, self.h, self.req
        if self.h.direction == "inbound":
            self.deadline = None
            self.head = encode_forward_head(
                req.method,
                req.target,
                req.raw_headers,
                host=req.host,
                framing=request_framing(req.method, self.body),
            )
            return bool(self.head)
        fault = decision.fault
        if fault is not None and fault.abort_per_million and h.draw(fault.abort_per_million):
            self._abort_fault()
            return False
        action = decision.action
        if type(action) is not Forward:
            if isinstance(action, DirectResponse):
                self._answer(action.status, action.body.encode())
                return False
            assert isinstance(action, Redirect)
            location = redirect_location(decision, req, "http")
            extra = apply_response_filters(decision, None, action.status, ())
            self.ex.finish(action.status)
            self.writer.send(action.status, [("location", location), *extra], b"")
            self._done()
            return False
        backend = self.backend = action.pick(int(h.rng.random() * action.total))
        self.ex.backend(backend)
        if backend.invalid is not None:
            msg = f"{backend.invalid.reason}: {backend.invalid.message}".encode()
            self._answer(backend.invalid.status, msg)
            return False
        state = self.state
        if decision.rewrites or backend.rewrites:
            upstream = apply_request_filters(decision, req, backend)
            self.method, self.target = upstream.method, upstream.path_and_query
            headers: Headers | tuple[tuple[str, str], ...] = upstream.headers
            host = upstream.authority
            self.head = self._encode(self.method, self.target, headers, host)
            if not self.head:
                return False
        else:  # no request filter: the request goes on as it came (the common case)
            host = req.host
            self.head = encode_forward_head(
                self.method,
                self.target,
                req.raw_headers,
                host=host,
                framing=request_framing(self.method, self.body),
            )
        if decision.mirrors and self.body is not None:
            mirrored = upstream.headers if decision.rewrites or backend.rewrites else req.headers
            h.mirror(decision, state, req, self.target, forward_headers(mirrored, host), self.body)
        self.balancer = state.balancers.get(backend.cluster)
        budget = state.budgets.get(backend.cluster)
        if budget is not None:
            budget.deposit()
        timeout = decision.request_timeout_ms
        self.deadline = None if timeout is None else self.ex.start + timeout / 1000
        return True

    def _encode(
        self, method: str, target: str, headers: Headers | tuple[tuple[str, str], ...], host: str
    ) -> bytes:
        framing = request_framing(method, self.body)
        try:
            return encode_request_head(method, target, headers, host=host, framing=framing)
        except ValueError as exc:
            self._answer(502, _REASONS[502], error=UpstreamProtocolError(("", 0), str(exc)))
            return b""

    def _target(self) -> tuple[Slot | None, tuple[str, int]] | None:
        """Where the next try goes, taken from the balancer (`release` it when the try
        ends): its slot and address (None: no ready endpoint, a 503); inbound, no slot and
        the local app's address."""
        if self.backend is None:
            app = self.h.app
            assert app is not None
            return None, app
        balancer = self.balancer
        slot = balancer.acquire() if balancer is not None else None
        return None if slot is None else (slot, slot.addr)

    def _try(self) -> None:
        self.timer = None
        if self.cancelled:
            return
        h = self.h
        now = h.clock()
        decision = self.decision
        timeout_ms: int | None = None
        if decision.per_try_timeout_ms is not None or self.deadline is not None:
            timeout_ms = _try_timeout(decision.per_try_timeout_ms, self.deadline, now)
            if timeout_ms is not None and timeout_ms <= 0:
                self._answer(504, _REASONS[504], timeout=True)
                return
        target = self._target()
        if target is None:
            self._answer(503, _REASONS[503])
            return
        self.slot, addr = target
        self.ex.endpoint(addr)
        self.t0 = now
        self.headed = self.discarding = False
        body = self.body
        self.handle = h.pool.send(
            addr,
            method=self.method,
            head=self.head,
            body=body if body is not None else self.req.body.chunks(),
            timeout_ms=timeout_ms,
            receiver=self,
        )

    def _try_done(self, *, failed: bool) -> None:
        slot, self.slot = self.slot, None
        if slot is not None and self.balancer is not None:
            self.balancer.release(slot, (self.h.clock() - self.t0) * 1000, failed=failed)

    def _should_retry(self, status: int | None, error: BaseException | None) -> bool:
        """Counts the outcome of a retriable try; True: try again (after a backoff)."""
        retry = self.decision.retry
        if retry is None:
            return False
        retriable = (
            (status is not None and status in retry.codes)
            or isinstance(error, UpstreamConnectError)
            or (isinstance(error, UpstreamTimeout) and self.decision.per_try_timeout_ms is not None)
        )
        ex = self.ex
        if not retriable:
            if self.attempt > 0 and status is not None:
                ex.retry_success()
            return False
        if self.body is None:
            ex.retry_skipped()  # not buffered: the body cannot be sent again
            return False
        if self.attempt >= retry.attempts:
            ex.retry_limit_exceeded()
            return False
        budget = self.state.budgets.get(self.backend.cluster) if self.backend else None
        if budget is not None and not budget.try_withdraw():
            ex.retry_skipped()
            return False
        self.attempt += 1
        ex.retry(status=status, error=error if isinstance(error, Exception) else None)
        return True

    def _backoff(self) -> None:
        retry = self.decision.retry
        assert retry is not None
        h = self.h
        backoff = _backoff_ms(retry.backoff_base_ms, retry.backoff_max_ms, self.attempt, h.rng)
        if self.deadline is not None and h.clock() + backoff / 1000 >= self.deadline:
            self._answer(504, _REASONS[504], timeout=True)
            return
        self.timer = asyncio.get_running_loop().call_later(backoff / 1000, self._try)

    # -- ResponseReceiver -------------------------------------------------------------------

    def on_head(
        self, conn: UpstreamHandle, status: int, headers: RawHeaders, content_length: int | None
    ) -> None:
        if self.cancelled:
            conn.cancel(self)
            return
        try:
            self.headed = True
            self.handle = conn
            slot = self.slot
            if slot is not None and self.balancer is not None:
                self.slot = None
                self.balancer.release(slot, (self.h.clock() - self.t0) * 1000, failed=False)
            ex = self.ex
            ex.attempt(status)
            decision = self.decision
            if decision.retry is not None and self._should_retry(status, None):
                self.discarding = True  # read the rest, so the connection stays pooled
                return
            self.status = status
            backend = self.backend
            if decision.filters_response or (backend is not None and backend.filters_response):
                self.resp_headers = self._response_headers(status, headers)
            else:
                self.resp_headers = headers  # the writer leaves hop-by-hop headers out
            ex.response_head(status)
            if content_length is not None and content_length <= SMALL_BODY_BYTES:
                self.buffered = []
            else:
                self.writer.begin(status, self.resp_headers, content_length=content_length)
        except Exception as exc:
            self._crash(exc)

    def on_body(self, chunk: bytes) -> None:
        if self.cancelled or self.discarding:
            return
        buffered = self.buffered
        if buffered is not None:
            buffered.append(chunk)
            return
        try:
            self.sent += len(chunk)
            if not self.writer.push(chunk) and self.handle is not None:
                self.handle.pause_reading()
                self.writer.on_writable = self._writable
        except Exception as exc:
            self._crash(exc)

    def _writable(self) -> None:
        self.writer.on_writable = None
        if self.handle is not None and not self.cancelled:
            self.handle.resume_reading()

    def on_end(self) -> None:
        self.handle = None
        if self.cancelled:
            return
        try:
            if self.discarding:
                self._backoff()
                return
            buffered = self.buffered
            if buffered is not None:
                body = buffered[0] if len(buffered) == 1 else b"".join(buffered)
                self.sent = len(body)
                self.writer.send(self.status, self.resp_headers, body)
            else:
                self.writer.close_body()
            self.ex.finish(self.status, bytes_sent=self.sent)
            self._done()
        except Exception as exc:
            self._crash(exc)

    def on_error(self, error: BaseException) -> None:
        self.handle = None
        if self.cancelled:
            return
        try:
            if not self.headed:
                self._try_done(failed=isinstance(error, UpstreamError))
                self.ex.attempt(None, error=_attempt_error(error))
                if self._should_retry(None, error):
                    self._backoff()
                else:
                    self._answer_error(error)
                return
            if self.discarding:
                self._backoff()  # the retriable response broke off: retry all the same
                return
            # mid-body: the per-try timer covers the request deadline when it is the shorter
            timeout = (
                isinstance(error, UpstreamTimeout) and self.decision.per_try_timeout_ms is None
            )
            if self.writer.started:
                # Half a response cannot be taken back: count it and reset the client.
                kind = REQUEST_TIMEOUT if timeout else type(error).__name__
                self.ex.finish(self.status, error=kind, bytes_sent=self.sent)
                self.writer.abort()
                self._done()
            elif timeout:
                self._answer(504, _REASONS[504], timeout=True)
            else:
                self._answer(502, _REASONS[502], error=error)
        except Exception as exc:
            self._crash(exc)

    # -- endings ------------------------------------------------------------------------------

    def cancel(self) -> None:
        """The client went away: give everything up (the endpoint is not blamed)."""
        if self.cancelled:
            return
        self.cancelled = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        handle, self.handle = self.handle, None
        if handle is not None:
            handle.cancel(self)
        self._try_done(failed=False)
        self.ex.abandon()
        self._done()

    def _done(self) -> None:
        finish, self.finish = self.finish, _nothing
        finish()

    def _answer_error(self, error: BaseException) -> None:
        if isinstance(error, ClientError):
            # the client's body broke (malformed, too slow, gone): its own status
            self.ex.finish(error.status, error=type(error).__name__)
            if not self.writer.started and error.status != 499:
                self.writer.send(
                    error.status, [("content-type", "text/plain")], str(error).encode()
                )
            self._done()
        elif isinstance(error, UpstreamTimeout):
            self._answer(504, _REASONS[504], timeout=True)
        elif self.backend is None:
            self._answer(502, _REASONS[502], error=error)  # inbound: the app is not there
        else:
            code = 503 if isinstance(error, UpstreamConnectError) else 502
            self._answer(code, _REASONS[502], error=error)

    def _answer(
        self,
        status: int,
        body: bytes,
        *,
        timeout: bool = False,
        error: BaseException | None = None,
    ) -> None:
        headers: Headers = [("content-type", "text/plain")]
        if self.decision is not _NO_DECISION:
            headers = list(apply_response_filters(self.decision, self.backend, status, headers))
        kind = REQUEST_TIMEOUT if timeout else (type(error).__name__ if error else "")
        self.ex.finish(status, error=kind)
        if not self.writer.started:
            self.writer.send(status, headers, body)
        self._done()

    def _abort_fault(self) -> None:
        fault = self.decision.fault
        assert fault is not None
        if fault.abort_grpc_status is not None:
            headers = [
                ("content-type", "application/grpc"),
                ("grpc-status", str(fault.abort_grpc_status)),
                ("grpc-message", "fault injected"),
            ]
            self.ex.finish(200, grpc_status=fault.abort_grpc_status)
            self.writer.send(200, headers, b"")
            self._done()
            return
        self._answer(fault.abort_http_status or 500, b"fault injected")

    def _crash(self, exc: Exception) -> None:
        """A bug of ours in a callback: log it and end the request (500, or a reset)."""
        log.error("request path failed target=%.200s", self.req.target, exc_info=exc)
        if self.handle is not None:
            self.handle.cancel(self)
            self.handle = None
        self._try_done(failed=False)
        self.cancelled = True
        self.ex.finish(500, error=type(exc).__name__)
        if self.writer.started:
            self.writer.abort()
        else:
            self.writer.send(500, [("content-type", "text/plain")], b"internal error")
        self._done()

    def _response_headers(self, status: int, headers: RawHeaders | Headers) -> Headers | RawHeaders:
        decision, backend = self.decision, self.backend
        if decision.filters_response or (backend is not None and backend.filters_response):
            pairs = headers.decode() if isinstance(headers, RawHeaders) else headers
            ends = [(n, v) for n, v in pairs if n.lower() not in HOP_BY_HOP]
            return list(apply_response_filters(decision, backend, status, ends))
        return headers  # the writer drops hop-by-hop and framing headers itself


def _nothing() -> None:
    pass


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


_NO_DECISION = Decision(route=None, action=DirectResponse(status=200))


def forward_headers(
    headers: list[tuple[str, str]] | tuple[tuple[str, str], ...], host: str
) -> list[tuple[str, str]]:
    """End-to-end headers with Host set to `host` (hop-by-hop and framing left out)."""
    out = [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP and n.lower() != "host"]
    out.insert(0, ("host", host))
    return out


def _attempt_error(error: BaseException | None) -> str:
    """The `error` label of one try's outcome ("" when a response arrived)."""
    if error is None:
        return ""
    return RESPONSE_HEADERS_TIMEOUT if isinstance(error, UpstreamTimeout) else type(error).__name__


def _try_timeout(per_try_ms: int | None, deadline: float | None, now: float) -> int | None:
    left = None if deadline is None else int((deadline - now) * 1000)
    if per_try_ms is None:
        return left
    return per_try_ms if left is None else min(per_try_ms, left)


def _backoff_ms(base: int, cap: int, attempt: int, rng: random.Random) -> float:
    """Exponential with full jitter above the base: never earlier than `base` (GEP-1731)."""
    ceiling = min(cap, base * (2 ** (attempt - 1)))
    return float(base + rng.random() * max(0, ceiling - base))
