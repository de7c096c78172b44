"""The plain call (`PlainCall`): a `Call` whose decision forwards the request as it came.

```
Handler ─ no body, Decision.plain, no mesh TLS requirement, no HTTP/2 backend ─► PlainCall
   begin_plain: backend (by weight), head, budget deposit, timeouts, balancer slot
      ─► UpstreamPool.send(receiver=self)      (no endpoint: 503; deadline gone: 504)
   on_head: release the slot, the try's answer (`Exchange.answered`) ─► small: buffered
      whole; else streamed (`Call.on_body`)
   on_end: one write (or the streamed body's end), `Exchange.finish`, then `finish()`
```

`Decision.plain` is worked out once per table (`actions.py`): no fault, CORS, mirror,
retry or filter, on the route or any backend; the handler adds what a request or the
proxy can change (``l5d-require-id``, ``--require-mtls``, an HTTP/2 cluster). So a plain
call makes one try, answers as the upstream did, and is never gRPC: its receiver
callbacks skip the checks for what it never has, and everything else (errors, a client
that leaves, a streamed response) is `Call`'s, unchanged.

Not here: the general flow (`call.py`), choosing the decision (`handler.py`).
"""

from __future__ import annotations

import logging
from bisect import bisect_right

from turnout.proxy import answers, outbound_tls
from turnout.proxy.actions import Decision, Forward
from turnout.proxy.call import NO_CORS, SMALL_BODY_BYTES, Call
from turnout.proxy.context import CallContext, ProxyState
from turnout.proxy.endings import nothing
from turnout.proxy.families import REQUEST_TIMEOUT
from turnout.proxy.retries import try_timeout
from turnout.proxy.telemetry import Exchange
from turnout.proxy.transport.heads import encode_forward_head, request_framing
from turnout.proxy.transport.messages import (
    TLS_DISABLED,
    IncomingRequest,
    RawHeaders,
    ResponseWriter,
    UpstreamHandle,
)

log = logging.getLogger(__name__)

_UNRESOLVED: tuple[None, None] = (None, None)
"""A cluster the state has neither balancer nor budget for (`begin_plain`: a 503)."""


class PlainCall(Call):
    """A `Call` of a plain request (see the module docstring): `begin_plain` instead of
    `begin`, and the receiver's head and end without retries, filters, CORS or gRPC."""

    __slots__ = ()

    def __init__(
        self,
        h: CallContext,
        req: IncomingRequest,
        writer: ResponseWriter,
        ex: Exchange,
        decision: Decision,
        state: ProxyState,
    ) -> None:
        """`Call.__init__` for a plain request without a body, the writer's callbacks wired
        (callback mode). The slots no plain call reads are left unset: the HTTP/2 and gRPC
        ones, `attempt` (read only with a retry policy), `body` (only to retry or mirror),
        and those set before they are read (`head`, `status`, `resp_headers`)."""
        self.grpc = False
        self.h = h
        self.req = req
        self.writer = writer
        self.ex = ex
        self.decision = decision
        self.state = state
        self.backend = None
        self.finish = writer.complete
        writer.on_cancel = self.cancel
        self.cancelled = self.headed = self.discarding = False
        self.cors_extra = NO_CORS
        self.timer = self.handle = self.balancer = self.slot = None
        self.deadline = self.small = self.buffered = None
        self.t0 = 0.0
        self.method = req.method
        self.target = req.target
        self.sent = 0

    def begin_plain(self) -> None:
        """`begin` in one frame, sharing the handler's clock read."""
        decision, h, state, req = self.decision, self.h, self.state, self.req
        action: Forward = decision.action  # type: ignore[assignment]  # plain: a Forward
        try:
            backend = action.backends[
                bisect_right(action.cumulative, h.rng.random() * action.total)
            ]
            self.backend = backend
            ex = self.ex
            method = self.method
            self.head = encode_forward_head(
                method,
                self.target,
                req.raw_headers,
                req.host,
                "" if method == "GET" else request_framing(method, b""),
            )
            resolved = state.resolved
            if resolved is not None:
                balancer, budget = resolved.get(backend.cluster, _UNRESOLVED)
            else:
                balancer = state.balancers.get(backend.cluster)
                budget = state.budgets.get(backend.cluster)
            self.balancer = balancer
            if budget is not None:
                budget.deposit()
            now = ex.start  # the handler's clock read, a moment ago
            timeout_ms: int | None = None
            timeout = decision.request_timeout_ms
            if timeout is not None or decision.per_try_timeout_ms is not None:
                self.deadline = None if timeout is None else now + timeout / 1000
                timeout_ms = try_timeout(decision.per_try_timeout_ms, self.deadline, now)
                if timeout_ms is not None and timeout_ms <= 0:
                    ex.backend(backend)
                    self._answer(answers.REQUEST_TIMEOUT, REQUEST_TIMEOUT)
                    return
            slot = balancer.acquire() if balancer is not None else None
            if slot is None:
                ex.backend(backend)
                self._answer(self._unavailable())
                return
            self.slot = slot
            addr = slot.addr
            identity = slot.endpoint.identity
            if h.pool.mesh is None:
                meshed, tls = False, TLS_DISABLED
            else:
                meshed, tls = True, outbound_tls.server_tls(True, identity)
            ex.routed(backend, addr, tls)  # `backend` and `endpoint` in one
            self.t0 = now
            self.handle = h.pool.send(  # (endpoint, method, head, body, timeout_ms, receiver,
                addr,  # upgrade, identity)
                method,
                self.head,
                b"",
                timeout_ms,
                self,
                False,
                identity if meshed else None,
            )
        except Exception as exc:
            self._crash(exc)

    # -- ResponseReceiver (on_body, on_error: Call's) -----------------------------------------

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
            if slot is not None:
                self.slot = None
                self.balancer.release(slot, (now - self.t0) * 1000, failed=False)  # type: ignore[union-attr]  # a slot is the balancer's
            self.ex.answered(status, now)
            self.status = status
            self.resp_headers = headers  # the writer leaves hop-by-hop headers out
            if content_length is not None and content_length <= SMALL_BODY_BYTES:
                self.small = b""  # one write, at the end
            else:
                self.writer.begin(status, headers, content_length=content_length)
        except Exception as exc:
            self._crash(exc)

    def on_end(self) -> None:
        self.handle = None
        if self.cancelled:
            return
        try:
            small = self.small
            if small is not None:
                body = small if self.buffered is None else b"".join(self.buffered)
                self.sent = len(body)
                self.writer.send(self.status, self.resp_headers, body)
            else:
                self.writer.close_body()
            self.ex.finish(self.status, bytes_sent=self.sent)
            finish, self.finish = self.finish, nothing  # `_done`, inlined
            finish()
        except Exception as exc:
            self._crash(exc)
