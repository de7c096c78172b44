"""How a `Call` ends: the proxy's own answers, a crash, and the response headers it sends.

```
_answer_action(action) a redirect or direct response (no upstream)
_answer(answer)        the proxy's answer: route/backend response filters + CORS, then once
_answer_error(error)   the answer for an upstream or client error (`answers.for_error`)
_response_headers(..)  an upstream head as the client gets it (filters, CORS, no hop-by-hop)
_done()                `finish()`, exactly once
```

`Endings` holds no state of its own (`__slots__ = ()`): `Call` (`call.py`) has the slots
and the flow; this is the part of it that ends the request, kept apart so each file reads
as one concern. Not here: when to retry (`retries.py`), the flow itself (`call.py`).
"""

from __future__ import annotations

from collections.abc import Callable

from turnout.proxy import answers
from turnout.proxy.actions import Backend, Decision, DirectResponse, Forward, Redirect
from turnout.proxy.answers import Answer
from turnout.proxy.balancer import Balancer
from turnout.proxy.errors import ClientError, UpstreamTimeout
from turnout.proxy.families import REQUEST_TIMEOUT
from turnout.proxy.filters import apply_response_filters, redirect_location
from turnout.proxy.h2_call import for_grpc
from turnout.proxy.telemetry import Exchange
from turnout.proxy.transport.messages import (
    HOP_BY_HOP,
    Headers,
    IncomingRequest,
    RawHeaders,
    ResponseWriter,
)


def nothing() -> None:
    pass


class Endings:
    """The ending half of `Call` (see the module docstring)."""

    __slots__ = ()

    # the `Call` slots these methods use
    writer: ResponseWriter
    ex: Exchange
    decision: Decision
    backend: Backend | None
    finish: Callable[[], None]
    cors_extra: list[tuple[str, str]]
    balancer: Balancer | None
    deadline: float | None
    t0: float
    grpc: bool
    req: IncomingRequest

    def _done(self) -> None:
        finish, self.finish = self.finish, nothing
        finish()

    def _answer_action(self, action: Redirect | DirectResponse | Forward) -> None:
        """No upstream: the route's (or picked backend's) redirect or direct response."""
        if isinstance(action, DirectResponse):
            self._answer(action.answer)
            return
        assert isinstance(action, Redirect)
        decision = self.decision
        scheme = "http" if self.req.tls is None else "https"
        location = redirect_location(decision, self.req, scheme, self.backend)
        extra = apply_response_filters(decision, self.backend, action.status, ())
        self.ex.finish(action.status)
        self.writer.send(action.status, [("location", location), *extra], b"")
        self._done()

    def _answer_error(self, error: BaseException) -> None:
        """End with the answer for `error`: the try ended before the response reached the
        client (a client that broke its own body gets its status; one that left, nothing)."""
        kind = REQUEST_TIMEOUT if isinstance(error, UpstreamTimeout) else type(error).__name__
        if isinstance(error, ClientError) and error.status == 499:
            self.ex.finish(499, error=kind)
            self._done()
        else:
            self._answer(self._error_answer(error), kind)

    def _error_answer(self, error: BaseException) -> Answer:
        """`answers.for_error`, told whether a timeout was the request deadline's (which
        bounded the try in flight) or the try's own."""
        per_try, deadline = self.decision.per_try_timeout_ms, self.deadline
        request = per_try is None or (
            deadline is not None and (deadline - self.t0) * 1000 <= per_try
        )
        return answers.for_error(error, inbound=self.backend is None, request_timeout=request)

    def _unavailable(self) -> Answer:
        """No endpoint for a try: none is ready, or every one is backed off (fail-fast)."""
        failing = self.balancer is not None and self.balancer.backed_off
        return answers.FAIL_FAST if failing else answers.NO_ENDPOINTS

    def _answer(self, answer: Answer, error: str = "") -> None:
        """End the request with one of the proxy's own answers; `error` is the metrics'
        error label ("" for none); a gRPC call gets its gRPC form (`h2_call.for_grpc`)."""
        if self.grpc:
            answer = for_grpc(answer)
        headers: Headers = answer.headers
        if self._filters_response():
            headers = list(
                apply_response_filters(self.decision, self.backend, answer.status, headers)
            )
        if self.cors_extra:
            headers = [*headers, *self.cors_extra]
        self.ex.finish(answer.status, error=error, grpc_status=answer.grpc_status)
        if not self.writer.started:
            try:  # noqa: SIM105 (no context manager object per answer)
                self.writer.send(answer.status, headers, answer.body)
            except ClientError:  # the client left (an HTTP/2 reset) before its cancel ran
                pass
        self._done()

    def _filters_response(self) -> bool:
        """The route or the chosen backend modifies response headers."""
        backend = self.backend
        return self.decision.filters_response or (backend is not None and backend.filters_response)

    def _response_headers(self, status: int, headers: RawHeaders | Headers) -> Headers | RawHeaders:
        """The upstream's headers as the client gets them: end-to-end ones, after the response
        filters, plus the CORS headers (`headers` itself when there is neither)."""
        filtered = self._filters_response()
        if not filtered and not self.cors_extra:
            return headers  # the writer drops hop-by-hop and framing headers itself
        pairs = headers.decode() if isinstance(headers, RawHeaders) else headers
        out: Headers = [(n, v) for n, v in pairs if n.lower() not in HOP_BY_HOP]
        if filtered:
            out = list(apply_response_filters(self.decision, self.backend, status, out))
        return [*out, *self.cors_extra]
