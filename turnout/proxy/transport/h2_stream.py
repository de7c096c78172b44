"""`H2StreamWriter`: one HTTP/2 stream of a client connection, as the handler sees it: the
`IncomingRequest`'s body and the `ResponseWriter` that answers it (docs/http2.md).

```
handler ─► send()/respond()     HEADERS (+ DATA), END_STREAM: one HEADERS when no body
                                (a gRPC proxy answer: trailers-only, grpc-status in it)
        ─► begin()/start()      HEADERS
           push()/write()...    DATA, as far as the stream's and the connection's windows
                                allow; the rest waits (`pending`), push() says False
           close_body(trailers) END_STREAM on the last DATA, or a HEADERS of trailers
        ─► complete()           callback mode: done (500 if nothing was answered)
        ─► abort()              RST_STREAM(INTERNAL_ERROR): this stream only
WINDOW_UPDATE / resume_writing ─► _send_pending ─► on_writable (or an awaiting write wakes)
request DATA ─► BodyStream ─► the handler reads ─► acknowledged then (WINDOW_UPDATE)
```

Response headers lose what HTTP/2 forbids (RFC 9113 §8.2.2: the hop-by-hop names of
`messages.HOP_BY_HOP`) and their names are lower-cased; the frames themselves are the
connection's (`h2_server.H2ServerConnection`, seen from here as `StreamConnection`), which
writes what `h2` queued once per loop round.

Not here: reading frames, stream limits, timers (`h2_server`); tunnels (no extended CONNECT:
`tunnel()` refuses).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import H2Error

from turnout.proxy.errors import ClientError
from turnout.proxy.transport.heads import NO_BODY_STATUS, UNSAFE
from turnout.proxy.transport.messages import (
    HOP_BY_HOP,
    HOP_BY_HOP_BYTES,
    Headers,
    IncomingRequest,
    RawHeaders,
    RawPairs,
    UpstreamTunnel,
)
from turnout.proxy.transport.streams import BodyStream

log = logging.getLogger(__name__)

_STATUS = {code: str(code).encode() for code in range(100, 600)}

GRPC_FOR_HTTP = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 431: 13, 502: 14, 503: 14, 504: 4}
"""A proxy answer's HTTP status -> the gRPC code it is sent as on a gRPC stream: gRPC's
"HTTP to gRPC status code mapping" (doc/http-grpc-status-mapping.md), but 504, the proxy's
timeouts, is DEADLINE_EXCEEDED as Linkerd answers; any other status is UNKNOWN (2)."""


class StreamConnection(Protocol):
    """What a stream writes through: its client connection (`h2_server.H2ServerConnection`)."""

    h2: H2Connection
    paused: bool
    """The transport's write buffer is full (`pause_writing`)."""

    def want_flush(self) -> None:
        """Write what `h2` has queued at the end of this loop round."""

    def stream_done(self, stream: H2StreamWriter) -> None:
        """The stream is over for the handler and on the wire (it may still be reset)."""

    def stalled(self, stream: H2StreamWriter, *, progressed: bool) -> None:
        """`stream` has DATA waiting for the client's window (`progressed`: it sent some
        first): it has `Limits.send_timeout_ms` to get window, or it is reset."""

    def answer_error(self, stream: H2StreamWriter, status: int) -> None:
        """Answer `status` in the transport's words, or reset a half-sent response."""


class H2StreamWriter:
    """One stream: its request and its `ResponseWriter` (see the module docstring)."""

    __slots__ = (
        "answer",
        "closed",
        "completed",
        "conn",
        "end_pending",
        "finished",
        "grpc",
        "head",
        "idle",
        "no_body",
        "on_cancel",
        "on_writable",
        "pending",
        "remote_done",
        "request",
        "stalled_at",
        "started",
        "stream",
        "stream_id",
        "task",
        "trailers",
        "waiter",
        "want_writable",
    )

    def __init__(
        self,
        conn: StreamConnection,
        stream_id: int,
        request: IncomingRequest,
        stream: BodyStream,
        *,
        grpc: bool,
    ) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.request = request
        self.stream = stream
        self.grpc = grpc
        """The request is gRPC (`content-type: application/grpc...`)."""
        self.head = request.method == "HEAD"
        self.task: asyncio.Task[None] | None = None
        self.answer: Awaitable[None] | None = None
        """The handler's awaitable that `task` runs (async handlers)."""
        self.started = False
        self.finished = False
        """The response is whole: END_STREAM queued (maybe behind `pending`) or reset."""
        self.completed = False
        self.closed = False
        """Nothing more can be sent: END_STREAM sent, or the stream reset (either side)."""
        self.remote_done = False
        """The client's side ended (END_STREAM received, or reset)."""
        self.no_body = False
        self.pending: deque[bytes] = deque()
        """DATA waiting for window, in order."""
        self.end_pending = False
        self.trailers: RawPairs | None = None
        self.want_writable = False
        self.idle = 0
        """Idle sweeps of the connection this stream has seen with no frame either way
        (`h2_server.STREAM_IDLE_TIMEOUT_S`)."""
        self.stalled_at = 0.0
        """Loop time since which `pending` has waited for the client's window (0: not)."""
        self.waiter: asyncio.Future[None] | None = None
        self.on_cancel: Callable[[], None] | None = None
        """Callback mode: called once if the client resets the stream (or leaves) first."""
        self.on_writable: Callable[[], None] | None = None
        """Callback mode: called when the windows open again after `push()` said stop."""

    # -- the ResponseWriter protocol ------------------------------------------------------

    async def respond(self, status: int, headers: Headers | RawHeaders, body: bytes) -> None:
        self.send(status, headers, body)
        await self._drain()

    def send(self, status: int, headers: Headers | RawHeaders, body: bytes) -> None:
        self._check_open()
        if self.grpc and type(headers) is list and _proxy_answer(status, headers):
            headers, body = self._grpc_answer(status, headers), b""
            status = 200
        no_body = self.head or status in NO_BODY_STATUS
        fields = self._fields(status, headers)
        if not no_body and status != 204 and not self.grpc:
            fields.append((b"content-length", b"%d" % len(body)))
        self.started = self.finished = True
        h2 = self.conn.h2
        if no_body or not body:
            self._guard(h2.send_headers, self.stream_id, fields, True)
            self._closed()
        else:
            self._guard(h2.send_headers, self.stream_id, fields, False)
            self.pending.append(body)
            self.end_pending = True
            self.send_pending()
        self.conn.want_flush()

    async def start(
        self, status: int, headers: Headers, *, content_length: int | None = None
    ) -> None:
        self.begin(status, headers, content_length=content_length)
        await self._drain()

    def begin(
        self, status: int, headers: Headers | RawHeaders, *, content_length: int | None = None
    ) -> None:
        self._check_open()
        self.no_body = self.head or status in NO_BODY_STATUS
        fields = self._fields(status, headers)
        if content_length is not None and status != 204:
            fields.append((b"content-length", b"%d" % content_length))
        self.started = True
        self.idle = 0
        self._guard(self.conn.h2.send_headers, self.stream_id, fields, False)
        self.conn.want_flush()

    async def write(self, chunk: bytes) -> None:
        if not self.push(chunk):
            await self._drain()

    def push(self, chunk: bytes) -> bool:
        if not self.started or self.finished:
            raise RuntimeError("write() needs start() first and no end() yet")
        if self.closed:
            raise ClientError(499, "client reset the stream")
        if chunk and not self.no_body:
            self.pending.append(chunk)
            self.send_pending()
        if self.pending or self.conn.paused:
            self.want_writable = True
            return False
        return True

    async def end(self) -> None:
        self.close_body()

    def close_body(self, trailers: RawPairs | None = None) -> None:
        """`end()`; `trailers` (names lower-case, as an HTTP/2 upstream gives them) go in
        a last HEADERS frame: how gRPC sends grpc-status."""
        if not self.started:
            raise RuntimeError("end() needs start() first")
        if self.finished:
            return
        self.finished = self.end_pending = True
        if trailers:
            kept = [(n.lower(), v) for n, v in trailers]
            self.trailers = [(n, v) for n, v in kept if n not in HOP_BY_HOP_BYTES]
        self.send_pending()
        self.conn.want_flush()

    def complete(self) -> None:
        if self.completed:
            return
        self.completed = True
        self.on_cancel = self.on_writable = None
        if not self.started:
            if not self.closed:  # (a stream the client reset needs no answer)
                log.error("handler completed without responding target=%.200s", self.request.target)
                self.conn.answer_error(self, 500)
        elif not self.finished:
            self.close_body()
        self.conn.stream_done(self)

    def abort(self) -> None:
        """Reset this stream (a half-sent response that cannot be completed)."""
        self.reset(ErrorCodes.INTERNAL_ERROR)

    async def tunnel(self, upstream: UpstreamTunnel, headers: Headers | None = None) -> None:
        upstream.close()
        raise RuntimeError("no upgrade over HTTP/2 (extended CONNECT is not supported)")

    # -- for the connection ----------------------------------------------------------------

    def send_pending(self) -> None:
        """Send what waits, as far as the windows allow; END_STREAM (or the trailers) once
        it is all out."""
        if self.closed:
            return
        h2, sid, pending = self.conn.h2, self.stream_id, self.pending
        self.idle = 0
        self.conn.want_flush()
        sent = False
        try:
            while pending:
                room = min(h2.local_flow_control_window(sid), h2.max_outbound_frame_size)
                if room <= 0:
                    self.conn.stalled(self, progressed=sent)
                    return
                sent = True
                chunk = pending[0]
                if len(chunk) > room:
                    h2.send_data(sid, chunk[:room])
                    pending[0] = chunk[room:]
                    continue
                pending.popleft()
                if not pending and self.end_pending and not self.trailers:
                    self.end_pending = False
                    h2.send_data(sid, chunk, end_stream=True)
                    self._closed()
                    return
                h2.send_data(sid, chunk)
            if self.end_pending:
                self.end_pending = False
                if self.trailers:
                    h2.send_headers(sid, self.trailers, end_stream=True)
                else:
                    h2.end_stream(sid)
                self._closed()
        except H2Error as exc:  # the stream closed under us (a reset crossing our frames)
            log.debug("stream write failed stream=%d error=%s", sid, exc)
            self.pending.clear()
            self._closed()

    def writable(self) -> None:
        """The windows or the transport opened: tell whoever `push()` told to stop."""
        if self.pending or self.conn.paused or not self.want_writable:
            return
        self.want_writable = False
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.on_writable is not None and not self.completed:
            self.on_writable()

    def reset(self, code: int) -> None:
        """RST_STREAM(`code`) unless the stream is closed already."""
        self.finished = True
        self.pending.clear()
        if not self.closed:
            self._guard(self.conn.h2.reset_stream, self.stream_id, code)
            self._closed()
            self.conn.want_flush()

    def gone(self, exc: BaseException) -> None:
        """The client reset the stream or left: nothing more is sent or read; the handler
        is told (its task cancelled, or `on_cancel`)."""
        self.closed = self.remote_done = self.finished = True
        self.pending.clear()
        self.stream.fail(exc)
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        task = self.task
        if task is not None:
            task.cancel()
            close = getattr(self.answer, "close", None)
            if close is not None:  # a task cancelled before it ran never awaited it
                task.add_done_callback(lambda _: close())
        elif self.on_cancel is not None and not self.completed:
            on_cancel, self.on_cancel = self.on_cancel, None
            on_cancel()

    # -- helpers ---------------------------------------------------------------------------

    def _closed(self) -> None:
        self.closed = True
        if self.completed:
            self.conn.stream_done(self)

    def _check_open(self) -> None:
        if self.started:
            raise RuntimeError("the response has already started")
        if self.closed:
            raise ClientError(499, "client reset the stream")

    def _guard(self, send: Callable[..., None], *args: object) -> None:
        try:
            send(*args)
        except H2Error as exc:  # the stream closed under us (a reset crossing our frames)
            log.debug("stream write failed stream=%d error=%s", self.stream_id, exc)
            self.closed = self.finished = True
            self.pending.clear()

    async def _drain(self) -> None:
        if not (self.pending or self.conn.paused) or self.closed:
            if self.closed and not self.finished:
                raise ClientError(499, "client reset the stream")
            return
        self.want_writable = True
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        await waiter

    def _fields(self, status: int, headers: Headers | RawHeaders) -> RawPairs:
        fields: RawPairs = [(b":status", _STATUS.get(status) or str(status).encode())]
        if isinstance(headers, RawHeaders):
            for raw_name, raw_value in headers.pairs:
                fields.append((raw_name.lower(), raw_value))
            if self.head and (length := headers.content_length()) is not None:
                fields.append((b"content-length", length))
            return fields
        for name, value in headers:
            lname = name.lower()
            if lname in HOP_BY_HOP and not (self.head and lname == "content-length"):
                continue
            field = (lname.encode("latin-1"), value.encode("latin-1"))
            if UNSAFE.search(field[0]) or UNSAFE.search(field[1]):
                raise ValueError("CR, LF or NUL inside a response header")
            fields.append(field)
        return fields

    @staticmethod
    def _grpc_answer(status: int, headers: Headers) -> Headers:
        """A proxy answer (`_proxy_answer`) on a gRPC stream, as gRPC
        clients read errors: HTTP 200, trailers-only, the code in grpc-status."""
        code = GRPC_FOR_HTTP.get(status, 2)
        message = next((v for n, v in headers if n == "l5d-proxy-error"), str(status))
        kept = [(n, v) for n, v in headers if n != "content-type"]
        return [
            ("content-type", "application/grpc"),
            ("grpc-status", str(code)),
            ("grpc-message", message),
            *kept,
        ]


def _proxy_answer(status: int, headers: Headers) -> bool:
    """An HTTP error the proxy made itself (it names its cause in `l5d-proxy-error`)."""
    return status != 200 and any(n == "l5d-proxy-error" for n, _ in headers)
