"""One request after its decision: the per-request flow of the proxy (`Call`).

```
Handler ─ Decision ─► Call.begin ─ fault delay (a timer, `faults.py`) ─► _prepare: fault
   abort, DirectResponse, Redirect, invalid share ─► the proxy's answer (`answers.py`);
   Forward: request filters, mirrors ─► _try: balancer endpoint (none: 503), per-try timeout
   inside the request deadline (504) ─► UpstreamPool.send(receiver=self)
on_head ─ retriable status, replayable body, budget (`retries.py`) ─► discard, backoff, _try
          again; else response filters ─► the client (small bodies in one write, others
          streamed with the client's flow control)
on_error ─ retriable ─► backoff, _try; else the answer for the error, or a reset when the
           response had started; every ending: `Exchange.finish`, then `finish()` once
```

The common request (no body, no upgrade) never creates a task or awaits: a `Call` is the
`ResponseReceiver` of its upstream exchange and answers through the writer's synchronous
calls, so a request costs a handful of callbacks and objects, not a coroutine chain. A
request with a body is read first (up to `MAX_RETRY_BODY_BYTES`, else streamed and never
retried) by `run_with_body`; a gRPC or HTTP/2 one starts at once, its body relayed as it
comes, and goes to the `H2Pool` when its cluster speaks HTTP/2 or it is gRPC (`h2_parts.py`:
headers, grpc-timeout, trailers). A `Call` reads the `ProxyState` its request started with,
never a newer one.

Not here: choosing the listener and the decision (`handler.py`), whether and when to retry
(`retries.py`), fault draws (`faults.py`), upgrades (`UpgradeCall`, `upgrades.py`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Literal

from turnout.proxy import answers, cors, faults, h2_call, outbound_tls
from turnout.proxy.actions import Backend, Cors, Decision, DirectResponse, Forward
from turnout.proxy.balancer import Balancer, Slot
from turnout.proxy.context import CallContext, ProxyState
from turnout.proxy.endings import nothing
from turnout.proxy.errors import (
    ClientError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from turnout.proxy.families import REQUEST_TIMEOUT, RESPONSE_HEADERS_TIMEOUT
from turnout.proxy.filters import (
    apply_request_filters,
    forward_headers,
)
from turnout.proxy.h2_parts import H2Call
from turnout.proxy.retries import MAX_RETRY_BODY_BYTES, admit_retry, backoff_s, try_timeout
from turnout.proxy.telemetry import Exchange
from turnout.proxy.transport.heads import (
    encode_forward_head,
    encode_request_head,
    raw_pairs,
    request_framing,
)
from turnout.proxy.transport.messages import (
    Headers,
    IncomingRequest,
    RawHeaders,
    RawPairs,
    ResponseWriter,
    UpstreamHandle,
)

log = logging.getLogger(__name__)


SMALL_BODY_BYTES = 64 * 1024
"""Responses up to this size (with a Content-Length) are read whole and written in one go."""


class Call(H2Call):
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
        "cors_extra",
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
        "small",
        "state",
        "status",
        "t0",
        "target",
        "timer",
        "writer",
    )

    def __init__(
        self,
        h: CallContext,
        req: IncomingRequest,
        writer: ResponseWriter,
        ex: Exchange,
        decision: Decision,
        state: ProxyState,
        backend: Backend | None,
    ) -> None:
        # `H2Call`'s fields, set here (one frame less per request)
        self.grpc = False
        self.h2 = False
        self.h2_headers = _NO_H2_HEADERS
        self.replay = None
        self.grpc_status = None
        self.trailers = None
        self.h = h
        self.req = req
        self.writer = writer
        self.ex = ex
        self.decision = decision
        self.state = state
        self.backend = backend
        self.finish: Callable[[], None] = nothing
        self.body: bytes | None = None
        """The buffered (replayable) request body; None when too big: the request's own
        stream carries it, once, and the request is never retried."""
        self.cancelled = False
        self.cors_extra: list[tuple[str, str]] = NO_CORS  # never appended to: replaced
        """CORS headers the response gains (the route's CORS filter, a matching Origin)."""
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
        self.resp_headers: Headers | RawHeaders = _NO_HEADERS
        self.small: bytes | None = None
        """A small response's body, buffered whole (None: streamed): its one chunk, the
        common case, with no list; `buffered` holds the chunks once there are more."""
        self.buffered: list[bytes] | None = None
        self.sent = 0

    # -- the async entry ---------------------------------------------------------------------

    async def run_with_body(self) -> None:
        """A request with a body: read it (up to the retry cap), then run as usual; a gRPC
        or HTTP/2 one starts at once, its body relayed as it comes (streaming RPCs)."""
        req = self.req
        self.grpc = h2_call.is_grpc(req.raw_headers)
        if (self.grpc or req.version == "2") and not req.body.complete:
            self.replay = h2_call.Replay(req.body.chunks(), MAX_RETRY_BODY_BYTES)
        else:  # a unary call has all arrived by now, mostly: bytes, no relay task
            self.body = await req.body.read(MAX_RETRY_BODY_BYTES)
        try:
            await self._run_async(self.begin)
        finally:
            if self.replay is not None:
                self.replay.abandon()  # a body not relayed whole: its mirrors give up

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
        if fault is not None and (delay := faults.delay_s(fault, self.h.draw)):
            self.timer = asyncio.get_running_loop().call_later(delay, self._after_delay)
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
            if self.grpc:
                self.h2 = True
                self._grpc_deadline(None)
                self.h2_headers = self._h2_headers(req.raw_headers, req.host)
                return bool(self.h2_headers)
            self.head = encode_forward_head(
                req.method,
                req.target,
                req.raw_headers,
                host=req.host,
                framing=request_framing(req.method, self.body),
            )
            return bool(self.head)
        if decision.cors is not None and self._cors(decision.cors):
            return False
        fault = decision.fault
        if fault is not None and fault.abort is not None and faults.aborts(fault, h.draw):
            self._answer(fault.abort)
            return False
        action = decision.action
        if type(action) is not Forward:
            self._answer_action(action)
            return False
        backend = self.backend = action.pick(int(h.rng.random() * action.total))
        self.ex.backend(backend)
        if backend.local is not None:  # an invalid share, or a backend that redirects
            self._answer_action(backend.local)
            return False
        state = self.state
        self.h2 = self.grpc or (bool(state.http2) and backend.cluster in state.http2)
        if decision.rewrites or backend.rewrites:
            upstream = apply_request_filters(decision, req, backend)
            self.method, self.target = upstream.method, upstream.path_and_query
            headers: Headers | tuple[tuple[str, str], ...] = upstream.headers
            host = upstream.authority
            if self.h2:
                self.h2_headers = self._h2_headers(raw_pairs(headers), host)
                if not self.h2_headers:
                    return False
            else:
                self.head = self._encode(self.method, self.target, headers, host)
                if not self.head:
                    return False
        elif self.h2:
            host = req.host
            self.h2_headers = self._h2_headers(req.raw_headers, host)
            if not self.h2_headers:
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
        body = self.body if self.body is not None else self.replay  # (relayed: as it comes)
        if decision.mirrors and body is not None:
            mirrored = upstream.headers if decision.rewrites or backend.rewrites else req.headers
            h.mirror(decision, state, req, self.target, forward_headers(mirrored, host), body)
        self.balancer = state.balancers.get(backend.cluster)
        budget = state.budgets.get(backend.cluster)
        if budget is not None:
            budget.deposit()
        timeout = decision.request_timeout_ms
        if self.grpc:
            self._grpc_deadline(timeout)
        else:
            self.deadline = None if timeout is None else self.ex.start + timeout / 1000
        return True

    def _cors(self, policy: Cors) -> bool:
        """A preflight is answered here (True); an actual request notes its CORS headers."""
        answer, self.cors_extra = cors.for_request(policy, self.req.method, self.req.raw_headers)
        if answer is None:
            return False
        self.ex.finish(200)
        if not self.writer.started:
            self.writer.send(200, answer, b"")
        self._done()
        return True

    def _encode(
        self, method: str, target: str, headers: Headers | tuple[tuple[str, str], ...], host: str
    ) -> bytes:
        framing = request_framing(method, self.body)
        try:
            return encode_request_head(method, target, headers, host=host, framing=framing)
        except ValueError as exc:
            log.debug("request head not sendable after filters error=%s", exc)
            self._answer(answers.INVALID_UPSTREAM_REQUEST, UpstreamProtocolError.__name__)
            return b""

    def _target(self) -> tuple[Slot | None, tuple[str, int]] | None:
        """Where the next try goes, taken from the balancer (`release` it when the try
        ends): its slot and address (None: no ready endpoint, a 503); inbound, no slot and
        the local app's address."""
        if self.backend is None:
            return None, self.ex.target  # the app (with --transparent: this connection's)
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
            timeout_ms = try_timeout(decision.per_try_timeout_ms, self.deadline, now)
            if timeout_ms is not None and timeout_ms <= 0:
                self._answer(answers.REQUEST_TIMEOUT, REQUEST_TIMEOUT)
                return
        target = self._target()
        if target is None:
            self._answer(self._unavailable())
            return
        self.slot, addr = slot, addr = target
        identity = self._endpoint_tls(slot, addr)
        if identity is False:
            return
        self.t0 = now
        self.headed = self.discarding = False
        body = self.body
        if self.h2:
            self.handle = self._send_h2(addr, timeout_ms, identity)
            return
        self.handle = h.pool.send(
            addr,
            method=self.method,
            head=self.head,
            body=body if body is not None else self._streamed(),
            timeout_ms=timeout_ms,
            receiver=self,
            identity=identity,
        )

    def _endpoint_tls(
        self, slot: Slot | None, addr: tuple[str, int]
    ) -> str | Literal[False] | None:
        """The try's mesh TLS (`outbound_tls.py`): the identity to expect of the endpoint
        (None: plaintext), or False when the request was answered 502 instead (mTLS
        required and not possible): the slot is released and nothing is sent."""
        if slot is None:  # inbound: the local app
            self.ex.endpoint(addr, self.req.peer_tls)
            return None
        identity = slot.endpoint.identity
        meshed = self.h.pool.mesh is not None
        require_id = self.req.require_id
        if require_id is not None or self.h.require_mtls:
            refused = outbound_tls.refusal(
                meshed=meshed,
                identity=identity,
                require_mtls=self.h.require_mtls,
                require_id=require_id,
            )
            if refused is not None:
                self.ex.endpoint(addr, outbound_tls.server_tls(meshed, identity))
                self.slot = None
                if self.balancer is not None:
                    self.balancer.release(slot, 0.0, failed=False)
                self._answer(refused, outbound_tls.REFUSED_ERROR)
                return False
        self.ex.endpoint(addr, outbound_tls.server_tls(meshed, identity))
        return identity if meshed else None

    def _try_done(self, *, failed: bool) -> None:
        slot, self.slot = self.slot, None
        if slot is not None and self.balancer is not None:
            self.balancer.release(slot, (self.h.clock() - self.t0) * 1000, failed=failed)

    def _should_retry(
        self, status: int | None, error: BaseException | None, grpc_status: int | None = None
    ) -> bool:
        """Counts the outcome of a retriable try; True: try again (after a backoff)."""
        retry = self.decision.retry
        if retry is None:
            return False
        backend = self.backend
        if not admit_retry(
            retry,
            self.ex,
            per_try_timeout_ms=self.decision.per_try_timeout_ms,
            attempt=self.attempt,
            replayable=self._replayable(),
            budgets=self.state.budgets,
            cluster=backend.cluster if backend is not None else None,
            status=status,
            error=error,
            grpc_status=grpc_status,
        ):
            return False
        self.attempt += 1
        return True

    def _backoff(self) -> None:
        retry = self.decision.retry
        assert retry is not None
        delay = backoff_s(retry, self.attempt, self.h.rng)
        if self.deadline is not None and self.h.clock() + delay >= self.deadline:
            self._answer(answers.REQUEST_TIMEOUT, REQUEST_TIMEOUT)
            return
        self.timer = asyncio.get_running_loop().call_later(delay, self._try)

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
            now = self.h.clock()  # one read for the release and the response head
            if slot is not None and self.balancer is not None:
                self.slot = None
                self.balancer.release(slot, (now - self.t0) * 1000, failed=False)
            ex = self.ex
            ex.attempt(status)
            decision = self.decision
            grpc_status = h2_call.status_of_lines(headers.lines) if self.grpc else None
            if decision.retry is not None and self._should_retry(status, None, grpc_status):
                self.discarding = True  # read the rest, so the connection stays pooled
                return
            if self.replay is not None:
                self.replay.stop()  # the first response byte: no retry any more
            self.status = status
            self.grpc_status = grpc_status
            backend = self.backend
            if (
                decision.filters_response
                or self.cors_extra
                or (backend is not None and backend.filters_response)
            ):
                self.resp_headers = self._response_headers(status, headers)
            else:
                self.resp_headers = headers  # the writer leaves hop-by-hop headers out
            ex.response_head(status, now)
            if grpc_status is not None or (
                not self.grpc and content_length is not None and content_length <= SMALL_BODY_BYTES
            ):  # small, or trailers-only: one write (HEADERS with END_STREAM on HTTP/2)
                self.small = b""
            else:
                self.writer.begin(status, self.resp_headers, content_length=content_length)
        except Exception as exc:
            self._crash(exc)

    def on_body(self, chunk: bytes) -> None:
        if self.cancelled or self.discarding:
            return
        small = self.small
        if small is not None:
            if self.buffered is not None:
                self.buffered.append(chunk)
            elif small:
                self.buffered = [small, chunk]
            else:
                self.small = chunk
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
            small = self.small
            if small is not None:
                body = small if self.buffered is None else b"".join(self.buffered)
                self.sent = len(body)
                if self.trailers and self._takes_trailers():
                    self._send_with_trailers(body, self.trailers)
                else:
                    self.writer.send(self.status, self.resp_headers, body)
            elif self.trailers is not None:
                self.writer.close_body(self.trailers)
            else:
                self.writer.close_body()
            self.ex.finish(self.status, bytes_sent=self.sent, grpc_status=self.grpc_status)
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
                self.ex.attempt(None, error=attempt_error(error))
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
            kind = REQUEST_TIMEOUT if timeout else type(error).__name__
            if self.writer.started:
                # Half a response cannot be taken back: count it and reset the client.
                self.ex.finish(self.status, error=kind, bytes_sent=self.sent)
                self.writer.abort()
                self._done()
            else:
                self._answer(self._error_answer(error), kind)
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

    def _crash(self, exc: Exception) -> None:
        """A bug of ours in a callback: log it and end the request (500, or a reset)."""
        log.error("request path failed target=%.200s", self.req.target, exc_info=exc)
        if self.handle is not None:
            self.handle.cancel(self)
            self.handle = None
        self._try_done(failed=False)
        self.cancelled = True
        self.ex.finish(500, error=type(exc).__name__)
        try:
            if self.writer.started:
                self.writer.abort()
            else:
                self.writer.send(500, answers.UNEXPECTED.headers, answers.UNEXPECTED.body)
        except ClientError:
            pass  # the client is gone too
        self._done()


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


NO_CORS: list[tuple[str, str]] = []
"""A Call's `cors_extra` until a CORS filter gives it its own (shared: never changed)."""

_NO_HEADERS: Headers = []
"""A Call's `resp_headers` until it has a response (shared: never changed, only replaced)."""

_NO_H2_HEADERS: RawPairs = []
"""A Call's `h2_headers` until `_prepare` makes them (shared: never changed, only replaced)."""

NO_DECISION = Decision(route=None, action=DirectResponse(status=200))


def attempt_error(error: BaseException | None) -> str:
    """The `error` label of one try's outcome ("" when a response arrived)."""
    if error is None:
        return ""
    return RESPONSE_HEADERS_TIMEOUT if isinstance(error, UpstreamTimeout) else type(error).__name__
