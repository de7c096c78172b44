"""The HTTP/2 and gRPC half of `Call` (`H2Call`, a slotless base class as `Endings` is):
the upstream headers, the deadline from `grpc-timeout`, the streamed body and its replay
copy, the try sent on the `H2Pool`, and the trailers.

```
_prepare ─ self.h2 ─► _h2_headers(...)  (`heads.h2_request_headers`; not sendable: 502)
         ─ self.grpc ─► _grpc_deadline(route timeout)  min(route, grpc-timeout)
_try ─ self.h2 ─► _send_h2: pool.h2.send(headers, body: bytes, or the Replay as it comes)
on_trailers ─► kept for on_end (writer.close_body(trailers)); gRPC: their grpc-status
on_end of a small buffered response with trailers ─► _send_with_trailers when the client
   takes them (HTTP/2, or `TE: trailers`): head, body, trailers; else sent whole without
```

The helpers it uses (gRPC names, `grpc-timeout`, `Replay`) are `h2_call.py`'s; the flow
that calls these is `call.py`'s.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from turnout.proxy import answers, h2_call
from turnout.proxy.context import CallContext
from turnout.proxy.endings import Endings
from turnout.proxy.errors import UpstreamProtocolError
from turnout.proxy.transport.heads import h2_request_headers
from turnout.proxy.transport.messages import (
    Headers,
    IncomingRequest,
    RawHeaders,
    RawPairs,
    ResponseWriter,
    UpstreamHandle,
)

log = logging.getLogger(__name__)


class H2Call(Endings):
    """What a `Call` does for HTTP/2 upstreams and gRPC (see the module docstring)."""

    __slots__ = ("grpc", "grpc_status", "h2", "h2_headers", "replay", "trailers")

    # the `Call` slots these methods use
    h: CallContext
    req: IncomingRequest
    body: bytes | None
    method: str
    target: str
    attempt: int
    cancelled: bool
    discarding: bool
    writer: ResponseWriter
    status: int
    resp_headers: Headers | RawHeaders

    # its own slots, which `Call.__init__` sets (no `__init__` here: a frame less per request)
    grpc: bool
    """A gRPC request (content-type application/grpc*): HTTP/2 upstream, gRPC answers."""
    h2: bool
    """This call's upstream speaks HTTP/2 (decided once, in `_prepare`)."""
    h2_headers: RawPairs
    replay: h2_call.Replay | None
    """HTTP/2 or gRPC downstream: the body relayed as it comes (`h2_call.Replay`)."""
    grpc_status: int | None
    trailers: RawPairs | None

    def _grpc_deadline(self, route_ms: int | None) -> None:
        """A gRPC call's deadline: its `grpc-timeout` caps the route's request timeout."""
        timeout = h2_call.timeout_ms(self.req.raw_headers)
        if timeout is None or (route_ms is not None and route_ms < timeout):
            timeout = route_ms
        self.deadline = None if timeout is None else self.ex.start + timeout / 1000  # type: ignore[misc]  # a Call slot

    def _h2_headers(self, headers: RawPairs, host: str) -> RawPairs:
        """The HTTP/2 request headers of the tries ([] when not sendable: answered 502)."""
        body = self.body
        try:
            return h2_request_headers(
                self.method,
                self.target,
                host,
                headers,
                content_length=None if body is None or self.method == "GET" else len(body),
            )
        except ValueError as exc:
            log.debug("request head not sendable after filters error=%s", exc)
            self._answer(answers.INVALID_UPSTREAM_REQUEST, UpstreamProtocolError.__name__)
            return []

    def _streamed(self) -> AsyncIterator[bytes]:
        """The body that is not buffered: relayed as it comes, once."""
        replay = self.replay
        return replay if replay is not None else self.req.body.chunks()

    def _replayable(self) -> bool:
        """The body can be sent again: buffered, or (HTTP/2) all of it in the replay copy."""
        if self.body is not None:
            return True
        replay = self.replay
        return self.h2 and replay is not None and replay.body() is not None

    def _send_h2(
        self, addr: tuple[str, int], timeout_ms: int | None, identity: str | None
    ) -> UpstreamHandle:
        """One try on the HTTP/2 pool; a retry sends the replay copy when it is whole."""
        self.grpc_status = self.trailers = None
        body = self.body
        if body is None and self.attempt and self.replay is not None:
            body = self.body = self.replay.body()  # type: ignore[misc]  # a Call slot
        return self.h.pool.h2.send(
            addr,
            method=self.method,
            headers=self.h2_headers,
            body=body if body is not None else self._streamed(),
            timeout_ms=timeout_ms,
            receiver=self,  # type: ignore[arg-type]  # Call is the receiver
            identity=identity,
        )

    def on_trailers(self, trailers: RawPairs) -> None:
        """HTTP/2 upstreams only: the response's trailers, forwarded at `on_end` (gRPC:
        their grpc-status is the call's outcome)."""
        if self.cancelled or self.discarding:
            return
        self.trailers = trailers
        if self.grpc:
            self.grpc_status = h2_call.status_of_pairs(trailers)

    def _takes_trailers(self) -> bool:
        """The client can take response trailers: HTTP/2, or `TE: trailers` (RFC 9110
        §10.1.4); asked only of a response that has some."""
        req = self.req
        return req.version == "2" or any(
            n.lower() == b"te" and b"trailers" in v.lower() for n, v in req.raw_headers
        )

    def _send_with_trailers(self, body: bytes, trailers: RawPairs) -> None:
        """A small buffered response that has trailers: head (HTTP/2: with its length;
        HTTP/1.1: chunked, so the trailers fit), body, trailers; in one loop round."""
        writer = self.writer
        h2 = self.req.version == "2"
        writer.begin(self.status, self.resp_headers, content_length=len(body) if h2 else None)
        writer.push(body)
        writer.close_body(trailers)
