"""`serve_http`: the listener. One `asyncio.Protocol` per client connection, parsing with
httptools (llhttp, in C) and answering in request order.

```
data_received ─► HttpRequestParser ─► on_headers_complete ─► _Exchange (IncomingRequest +
      │              │                                        ResponseWriter), queued
      │              └─► on_body ─► BodyStream ─► handler reads body (pause_reading above
      │                                            Limits.read_high_water)
      └─ limits: 431 (header bytes/count), 400 (malformed), 408 (header timeout)
queue ─► one handler task at a time (pipelined requests wait their turn) ─► writer:
   respond(): one transport.write(head + body) │ start()/write()/end(): chunked or sized
   tunnel(): 101, then bytes spliced both ways with each side's flow control
handler done ─► next queued request, or keep-alive timer, or close
```

Connections are counted and reported through `ConnectionHooks` (bytes read and written,
requests). `accept(conn_info) -> bool` is the place for the inbound policy check (who may
connect; with TLS, the peer identity too): it runs once per connection before any byte is
read, and a False closes it.

Deliberately not here: routing and everything else about what to answer (the handler's),
HTTP/2, request trailers (parsed and dropped), the TLS setup itself (`ssl` is passed through
to `loop.create_server`), graceful drain on shutdown, an idle timeout inside upgraded
tunnels, and resuming keep-alive after a response that left the request body unread (the
connection is closed instead, as h11 does, rather than reading and discarding the rest).
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import cast

import httptools

from turnout.proxy.errors import ClientError, UpstreamError
from turnout.proxy.transport.batch import WriteBatch
from turnout.proxy.transport.messages import (
    HOP_BY_HOP,
    ConnectionHooks,
    ConnectionInfo,
    Headers,
    IncomingRequest,
    Limits,
    RawHeaders,
    RawPairs,
    RequestBody,
    ResponseWriter,
    UpstreamTunnel,
    hook_close,
    hook_open,
)
from turnout.proxy.transport.streams import BodyStream, WriteFlow

log = logging.getLogger(__name__)

Handler = Callable[[IncomingRequest, ResponseWriter], Awaitable[None] | None]
"""Answers one request through the writer, in one of two ways. It returns an awaitable (an
`async def` handler): the server runs it as a task, cancelled when the client disconnects;
if it raises before starting the response, the server answers 500 (`ClientError`: its
status) and logs. Or it returns None: it answers through the writer's synchronous calls
from callbacks of its own and calls `writer.complete()` at the end; `writer.on_cancel` is
called if the client disconnects first."""

Accept = Callable[[ConnectionInfo], bool]

_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n" for s in HTTPStatus}
_STATUS_BYTES = {code: line.encode() for code, line in _STATUS_LINES.items()}
_NO_BODY_STATUS = frozenset({204, 304})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _status_line(status: int) -> str:
    line = _STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise ValueError(f"invalid status code {status}")
        line = f"HTTP/1.1 {status} Unknown\r\n"
    return line


def _error_response(status: int) -> bytes:
    phrase = HTTPStatus(status).phrase if status in _STATUS_LINES else "Error"
    body = f"{phrase}\n".encode()
    return (
        f"{_status_line(status)}content-type: text/plain\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


_ERRORS = {s: _error_response(s) for s in (400, 405, 408, 431, 500, 503)}


_SPECIAL_LENGTHS = frozenset({4, 6, 7, 10, 14, 17})
"""Lengths of Host, Expect, Upgrade, Connection, Content-Length, Transfer-Encoding."""
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}


class _HeadTooLarge(Exception):
    """Raised from a parser callback: the request head is over a limit (431)."""


class _Exchange:
    """One request on a connection and its `ResponseWriter`."""

    __slots__ = (
        "chunked",
        "close_delimited",
        "completed",
        "conn",
        "finished",
        "must_close",
        "no_body",
        "on_cancel",
        "on_writable",
        "remaining",
        "request",
        "started",
        "stream",
        "task",
        "tunneling",
    )

    def __init__(
        self, conn: HttpServerProtocol, request: IncomingRequest, stream: BodyStream
    ) -> None:
        self.conn = conn
        self.request = request
        self.stream = stream
        self.task: asyncio.Task[None] | None = None
        self.started = False
        self.finished = False
        self.must_close = not request.keep_alive
        self.chunked = False
        self.close_delimited = False
        self.no_body = False
        self.remaining: int | None = None
        self.tunneling = False
        self.completed = False
        self.on_cancel: Callable[[], None] | None = None
        """Callback mode: called if the client disconnects before `complete()`."""
        self.on_writable: Callable[[], None] | None = None
        """Callback mode: called when the client has read enough after `push()` said stop."""

    # -- the ResponseWriter protocol ------------------------------------------------------

    async def respond(self, status: int, headers: Headers | RawHeaders, body: bytes) -> None:
        self.send(status, headers, body)
        if self.conn.flow.paused:
            await self._drain()

    def send(self, status: int, headers: Headers | RawHeaders, body: bytes) -> None:
        conn = self.conn
        if self.started or conn.closed:
            self._check_open()  # raises
        request = self.request
        if (
            type(headers) is RawHeaders
            and request.method != "HEAD"
            and not self.must_close
            and request.version != "1.0"
            and self.stream.at_eof
            and status not in _NO_BODY_STATUS
            and len(body) < 65536
        ):
            # the common answer, a relayed response read whole: `_encode_raw_head` with no
            # Connection header to add, and the body, in one write
            line = _STATUS_BYTES.get(status)
            parts = [line if line is not None else _status_line(status).encode("latin-1")]
            parts += headers.lines
            parts += (b"content-length: %d\r\n\r\n" % len(body), body)
            self.started = self.finished = True
            conn.write(b"".join(parts))
            return
        # RFC 9110 §8.6: no Content-Length in a 204
        framing = "" if status == 204 else f"content-length: {len(body)}\r\n"
        if type(headers) is RawHeaders:
            head = self._encode_raw_head(status, headers, framing)
        else:
            head = self._encode_head(status, headers, framing)
        self.started = self.finished = True
        if self.request.method == "HEAD" or status in _NO_BODY_STATUS or not body:
            conn.write(head)
        elif len(body) < 65536:
            conn.write(head + body)
        else:
            conn.writelines(head, body)

    async def start(
        self, status: int, headers: Headers, *, content_length: int | None = None
    ) -> None:
        self.begin(status, headers, content_length=content_length)
        if self.conn.flow.paused:
            await self._drain()

    def begin(
        self, status: int, headers: Headers | RawHeaders, *, content_length: int | None = None
    ) -> None:
        self._check_open()
        self.no_body = self.request.method == "HEAD" or status in _NO_BODY_STATUS
        if content_length is not None:
            framing = f"content-length: {content_length}\r\n"
            self.remaining = 0 if self.no_body else content_length
        elif self.no_body:
            framing = ""
        elif self.request.version == "1.1":
            framing = "transfer-encoding: chunked\r\n"
            self.chunked = True
        else:
            framing = ""
            self.close_delimited = self.must_close = True
        head = self._encode_head(status, headers, framing)
        self.started = True
        self.conn.write(head)

    async def write(self, chunk: bytes) -> None:
        if not self.push(chunk):
            await self._drain()

    def push(self, chunk: bytes) -> bool:
        if not self.started or self.finished:
            raise RuntimeError("write() needs start() first and no end() yet")
        conn = self.conn
        if not chunk or self.no_body:
            return not conn.flow.paused
        if conn.closed:
            raise ClientError(499, "client disconnected")
        if self.chunked:
            conn.writelines(b"%x\r\n" % len(chunk), chunk, b"\r\n")
        else:
            if self.remaining is not None:
                self.remaining -= len(chunk)
                if self.remaining < 0:
                    raise RuntimeError("body longer than the content_length given to start()")
            conn.write(chunk)
        return not conn.flow.paused

    async def end(self) -> None:
        self.close_body()

    def close_body(self) -> None:
        if not self.started:
            raise RuntimeError("end() needs start() first")
        if self.finished:
            return
        self.finished = True
        if self.chunked and not self.conn.closed:
            self.conn.write(b"0\r\n\r\n")
        elif self.remaining:
            # Fewer bytes than announced: the client would wait forever; only a reset tells it.
            log.debug("response shorter than its content-length, aborting peer=%s", self.conn.peer)
            self.conn.abort()

    def complete(self) -> None:
        if self.completed:
            return
        self.completed = True
        self.on_cancel = self.on_writable = None
        conn = self.conn
        if not self.started:
            log.error("handler completed without responding target=%.200s", self.request.target)
            conn._answer_error(self, 500)
        elif not self.finished:
            self.close_body()
        conn._done(self)

    def abort(self) -> None:
        """Reset the client connection (a half-sent response that cannot be completed)."""
        self.must_close = True
        self.conn.abort()

    async def tunnel(self, upstream: UpstreamTunnel, headers: Headers | None = None) -> None:
        self._check_open()
        if self.request.upgrade is None:
            upstream.close()
            raise RuntimeError("tunnel() needs a request that asked for an upgrade")
        framing = f"connection: upgrade\r\nupgrade: {upstream.protocol}\r\n"
        hdrs = upstream.response.headers if headers is None else headers
        head = self._encode_head(101, hdrs, framing)
        self.started = self.tunneling = self.must_close = True
        conn = self.conn
        conn.write(head)
        try:
            await conn.splice(upstream)
        finally:
            self.finished = True
            upstream.close()
            conn.close()

    # -- helpers ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.started:
            raise RuntimeError("the response has already started")
        if self.conn.closed:
            raise ClientError(499, "client disconnected")

    def _encode_head(self, status: int, headers: Headers | RawHeaders, framing: str) -> bytes:
        if isinstance(headers, RawHeaders):
            return self._encode_raw_head(status, headers, framing)
        parts = [_status_line(status)]
        lines = 2
        head_request = self.request.method == "HEAD"
        for name, value in headers:
            lname = name.lower()
            if lname in HOP_BY_HOP:
                if not (head_request and lname == "content-length"):
                    continue
                # HEAD: the handler's Content-Length tells the size a GET would get
                framing = ""
            parts += (name, ": ", value, "\r\n")
            lines += 1
        connection = self._connection_line(status)
        if connection:
            parts.append(connection)
            lines += 1
        parts += (framing, "\r\n")
        head = "".join(parts)
        # One scan instead of a check per value: CR/LF inside a value would split the response.
        if head.count("\n") != lines + framing.count("\n") or head.count("\r") != head.count("\n"):
            raise ValueError("CR or LF inside a response header")
        return head.encode("latin-1")

    def _encode_raw_head(self, status: int, headers: RawHeaders, framing: str) -> bytes:
        """As `_encode_head`, for headers the upstream parser has checked and sorted."""
        line = _STATUS_BYTES.get(status)
        parts = [line if line is not None else _status_line(status).encode("latin-1")]
        parts += headers.lines
        if self.request.method == "HEAD":
            # HEAD: the upstream's Content-Length tells the size a GET would get
            length = headers.content_length()
            if length is not None:
                parts += (b"content-length: ", length, b"\r\n")
                framing = ""
        if self.must_close or self.request.version == "1.0" or not self.stream.at_eof:
            parts.append(self._connection_line(status).encode())
        parts += (framing.encode(), b"\r\n")
        return b"".join(parts)

    def _connection_line(self, status: int) -> str:
        if not self.stream.at_eof and not self.tunneling and status != 101:
            self.must_close = True  # the request body is still coming: see the docstring
        if self.must_close and status != 101:
            return "connection: close\r\n"
        if self.request.version == "1.0":
            return "connection: keep-alive\r\n"
        return ""

    async def _drain(self) -> None:
        try:
            await self.conn.flow.drain()
        except TimeoutError:
            self.conn.abort()
            raise ClientError(408, "client too slow to read the response") from None

    def send_continue(self) -> None:
        """The handler started reading the body: tell the client to send it (RFC 9110 §10.1.1)."""
        if not self.started and not self.conn.closed:
            self.conn.write(_CONTINUE)


class _ClientEnd:
    """The client side of a tunnel, as the upstream side sees it."""

    __slots__ = ("_conn",)

    def __init__(self, conn: HttpServerProtocol) -> None:
        self._conn = conn

    def send(self, data: bytes) -> None:
        if not self._conn.closed:
            self._conn.write(data)

    def pause_reading(self) -> None:
        self._conn.set_reading(tunnel=False)

    def resume_reading(self) -> None:
        self._conn.set_reading(tunnel=True)

    def close(self) -> None:
        self._conn.close()


class _Listener:
    """What all connections of one `serve_http` share."""

    __slots__ = ("accept", "batch", "handler", "hooks", "limits", "open")

    def __init__(
        self,
        handler: Handler,
        limits: Limits,
        hooks: ConnectionHooks | None,
        accept: Accept | None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.batch = WriteBatch(loop or asyncio.get_running_loop())
        """Every connection's writes of one loop round, sent at its end (`batch.py`)."""
        self.handler = handler
        self.limits = limits
        self.hooks = hooks
        self.accept = accept
        self.open = 0


class HttpServerProtocol(asyncio.Protocol):
    """One client connection (see the module docstring)."""

    def __init__(self, listener: _Listener) -> None:
        self.listener = listener
        self.limits = listener.limits
        self.loop = asyncio.get_running_loop()
        self.batch = listener.batch
        send_timeout = self.limits.send_timeout_ms
        self.flow = WriteFlow(self.loop, None if send_timeout is None else send_timeout / 1000)
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.info: ConnectionInfo | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self.closed = False
        self._counted = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._due = 0.0  # loop time of the armed timeout, 0: none
        self._due_callback: Callable[[], None] = _nothing
        self._send_timer: asyncio.TimerHandle | None = None
        self._await_writable = False
        self._queue: deque[_Exchange] = deque()
        self._active: _Exchange | None = None
        self._parsing: _Exchange | None = None  # head complete, body still arriving
        self._stopped = False  # no more requests are parsed on this connection
        self._pending_error: int | None = None
        self._paused_streams = 0
        self._reading = True
        self._tunnel_ok = True
        # the head being parsed
        self._in_head = False
        self._url = b""
        self._headers: RawPairs = []
        self._host = ""
        self._content_length: int | None = None
        self._chunked = False
        self._expect = False
        self._connection = False
        self._upgrade: str | None = None
        self._head_size = 0
        self._head_raw = 0
        self._head_new = False
        self._max_head = self.limits.max_header_bytes
        self._max_count = self.limits.max_header_count
        self._keepalive_s = self.limits.keepalive_timeout_ms / 1000
        # after an upgrade request
        self._upgraded = False
        self._tunnel: UpstreamTunnel | None = None
        self._tunnel_buffer: list[bytes] = []
        self._closed_waiter: asyncio.Future[None] = self.loop.create_future()
        # every request without a body shares one empty, finished body
        self._empty_stream = BodyStream(self.loop, high_water=1, pause=_nothing, resume=_nothing)
        self._empty_stream.feed_eof()
        self._no_body = RequestBody(self._empty_stream, None)

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.peer, self.local = (peer[0], peer[1]), (local[0], local[1])
        self.info = info = ConnectionInfo("inbound", self.peer, self.local)
        listener = self.listener
        listener.open += 1
        self._counted = True
        hook_open(listener.hooks, info)
        limit = self.limits.max_connections
        if limit is not None and listener.open > limit:
            log.debug("connection over the limit closed peer=%s limit=%d", self.peer, limit)
            transport.abort()
            return
        if listener.accept is not None:
            try:
                allowed = listener.accept(info)
            except Exception:
                log.exception("accept check failed peer=%s", self.peer)
                allowed = False
            if not allowed:
                log.debug("connection refused by policy peer=%s", self.peer)
                transport.abort()
                return
        self._arm(self.limits.keepalive_timeout_ms, self._on_idle_timeout)

    def data_received(self, data: bytes) -> None:
        info = self.info
        assert info is not None
        info.bytes_read += len(data)
        if self._tunnel is not None:
            self._tunnel.send(data)
            return
        if self._upgraded:
            self._tunnel_buffer.append(data)
            return
        if self._stopped:
            return
        # bytes of a new request: unless its head is complete in them, it has the header
        # timeout to send the rest (from here; a whole head never needs the timer)
        fresh = self._active is None and self._parsing is None and not self._in_head
        heads = info.requests
        self._head_new = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._on_upgrade(data[exc.args[0] :])
            return
        except httptools.HttpParserError as exc:
            too_large = isinstance(exc.__context__, _HeadTooLarge)
            self._on_bad_input(431 if too_large else 400, exc)
            return
        if fresh and info.requests == heads and not self.closed:
            self._arm(self.limits.header_timeout_ms, self._on_header_timeout)
        if self._in_head and not self._head_new:
            # the header being read is buffered inside httptools until it ends: count raw
            # bytes too, so a single endless header cannot grow without bound
            self._head_raw += len(data)
            if self._head_raw > self.limits.max_header_bytes:
                self._on_bad_input(431, None)

    def eof_received(self) -> bool | None:
        # A client's FIN is taken as a disconnect, as nginx does (`proxy_ignore_client_abort
        # off`): a proxy must not keep upstream work going for a client that left. The cost:
        # a client that half-closes after its request gets no answer.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        err = ClientError(499, "client disconnected")
        self.flow.close(err)
        active = self._active
        for exch in (active, self._parsing, *self._queue):
            if exch is not None:
                exch.stream.fail(err)
        self._queue.clear()
        if active is not None and not active.tunneling:
            if active.task is not None:
                active.task.cancel()
            elif active.on_cancel is not None and not active.completed:
                on_cancel, active.on_cancel = active.on_cancel, None
                on_cancel()
        if self._tunnel is not None:
            self._tunnel.close()
        if not self._closed_waiter.done():
            self._closed_waiter.set_result(None)
        if self._counted:
            self.listener.open -= 1
            self._counted = False
        assert self.info is not None
        hook_close(self.listener.hooks, self.info, exc)

    def pause_writing(self) -> None:
        self.flow.pause()
        self._arm_send_timeout()
        if self._tunnel is not None:
            self._tunnel.pause_reading()

    def resume_writing(self) -> None:
        self.flow.resume()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        if self._tunnel is not None:
            self._tunnel.resume_reading()
        active = self._active
        if active is not None and active.on_writable is not None and not active.completed:
            active.on_writable()
        elif self._await_writable and not self.closed:
            self._await_writable = False
            self._update_reading()
            if self._active is None:
                self._next()

    # -- httptools callbacks -----------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        if not self._in_head:
            # a new request head starts: its first callback (one less per request than
            # `on_message_begin`)
            self._in_head = self._head_new = True
            self._url = url
            self._headers = []
            self._host = ""
            self._content_length = self._upgrade = None
            self._chunked = self._expect = self._connection = False
            self._head_size = len(url)
            self._head_raw = 0
            if self._head_size > self._max_head:
                raise _HeadTooLarge
            return
        self._url += url
        self._head_size += len(url)
        if self._head_size > self._max_head:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a trailer: dropped
        size = self._head_size + len(name) + len(value) + 4
        self._head_size = size
        headers = self._headers
        if size > self._max_head or len(headers) >= self._max_count:
            raise _HeadTooLarge
        n = len(name)
        if n in _SPECIAL_LENGTHS:
            # the headers the transport itself reads, noted as they are parsed
            lname = name.lower()
            if lname == b"host":
                self._host = value.decode("latin-1")
            elif lname == b"content-length":
                self._content_length = int(value)
            elif lname == b"transfer-encoding":
                self._chunked = True
            elif lname == b"expect":
                self._expect = value.lower() == b"100-continue"
            elif lname == b"upgrade":
                self._upgrade = value.decode("latin-1")
            elif lname == b"connection":
                self._connection = True
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self.parser
        headers = self._headers
        host = self._host
        content_length = self._content_length
        has_body = self._chunked or (content_length is not None and content_length > 0)
        expect = self._expect
        upgrade = self._upgrade
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        if (upgrade is not None or method == "CONNECT") and parser.should_upgrade():
            if method == "CONNECT":
                raise ValueError("CONNECT is not supported")  # 400 via the callback error
            has_body = False
        else:
            upgrade = None
        keep_alive = parser.should_keep_alive()
        # HTTP/1.0 keeps the connection only when asked with `Connection: keep-alive`: kept
        # without a Connection header, the request is HTTP/1.1 (llhttp takes no other
        # version), which spares the parser's costly version string
        version = "1.1" if keep_alive and not self._connection else parser.get_http_version()
        target = self._url.decode("latin-1")
        path, _, query = target.partition("?")
        limits = self.limits
        if has_body:
            stream = BodyStream(
                self.loop,
                high_water=limits.read_high_water,
                pause=self._pause_stream,
                resume=self._resume_stream,
                timeout_s=None if limits.body_timeout_ms is None else limits.body_timeout_ms / 1000,
                timeout_error=_body_timeout,
            )
            body = RequestBody(stream, content_length)
        else:
            body, stream = self._no_body, self._empty_stream
            if content_length is not None:
                body = RequestBody(stream, content_length)
        request = IncomingRequest(
            method,
            target,
            path,
            query,
            headers,
            host,
            version,
            keep_alive,
            body,
            self.peer,
            self.local,
            upgrade,
        )
        exch = _Exchange(self, request, stream)
        if expect and has_body and version == "1.1":
            stream.on_first_read = exch.send_continue
        assert self.info is not None
        self.info.requests += 1
        self._parsing = exch
        if self._active is None:
            self._start(exch)
        else:
            self._queue.append(exch)
            if len(self._queue) >= limits.max_pipelined:
                self._update_reading()

    def on_body(self, body: bytes) -> None:
        exch = self._parsing
        if exch is not None:
            exch.stream.feed(body)

    def on_message_complete(self) -> None:
        exch = self._parsing
        if exch is None:
            return
        self._parsing = None
        stream = exch.stream
        if not stream.at_eof:
            stream.feed_eof()
        if not exch.request.keep_alive:
            self._stopped = True  # llhttp refuses data after `Connection: close`; ignore it

    # -- requests ------------------------------------------------------------------------

    def _start(self, exch: _Exchange) -> None:
        self._active = exch
        self._due = 0.0  # `_cancel_timer`: no idle or header timeout while it runs
        try:
            answer = self.listener.handler(exch.request, exch)
        except Exception as exc:
            self._handler_failed(exch, exc)
            self._done(exch)
            return
        if answer is not None:
            exch.task = self.loop.create_task(self._run(exch, answer))
        # else: callback mode, exch.complete() ends it

    def _handler_failed(self, exch: _Exchange, exc: Exception) -> None:
        if isinstance(exc, ClientError):
            log.debug("client error peer=%s status=%d error=%s", self.peer, exc.status, exc)
            self._answer_error(exch, exc.status)
            return
        log.error(
            "handler failed method=%s target=%.200s peer=%s",
            exch.request.method,
            exch.request.target,
            self.peer,
            exc_info=exc,
        )
        self._answer_error(exch, 500)

    async def _run(self, exch: _Exchange, answer: Awaitable[None]) -> None:
        try:
            await answer
        except ClientError as exc:
            log.debug("client error peer=%s status=%d error=%s", self.peer, exc.status, exc)
            self._answer_error(exch, exc.status)
        except UpstreamError as exc:
            # The upstream broke a response already being relayed: an outside failure, not
            # a bug of ours, so no traceback; the half-sent response is aborted.
            log.debug("upstream failed mid-response peer=%s error=%s", self.peer, exc)
            self._answer_error(exch, 502)
        except Exception:
            log.exception(
                "handler failed method=%s target=%.200s peer=%s",
                exch.request.method,
                exch.request.target,
                self.peer,
            )
            self._answer_error(exch, 500)
        else:
            if not exch.started:
                log.error("handler returned without responding target=%.200s", exch.request.target)
                self._answer_error(exch, 500)
            elif not exch.finished:
                await exch.end()
        finally:
            self._done(exch)

    def _answer_error(self, exch: _Exchange, status: int) -> None:
        if exch.started or self.closed:
            if not exch.finished:
                self.abort()  # a half-sent response cannot be completed or taken back
            return
        exch.started = exch.finished = exch.must_close = True
        if status != 499:
            self.write(_ERRORS.get(status) or _error_response(status))

    def _done(self, exch: _Exchange) -> None:
        self._active = None
        if self.closed:
            return
        stream = exch.stream
        if exch.must_close or not stream.at_eof or self._upgraded:
            self.close()
            return
        if stream is not self._empty_stream:
            stream.discard()
        if self.flow.paused:
            # a callback-mode handler wrote without waiting: the client reads that first
            self._await_writable = True
            self._update_reading()
            return
        if self._queue or self._pending_error is not None or self._stopped or self._in_head:
            self._next()
        else:  # the common case: wait for the next request (`_arm`, inlined)
            due = self.loop.time() + self._keepalive_s
            self._due = due
            self._due_callback = self._on_idle_timeout
            if self._timer is None or self._timer_at > due:
                self._move_timer(due)

    def _next(self) -> None:
        """After an exchange: the next pipelined request, a pending error, or wait."""
        if self._queue:
            nxt = self._queue.popleft()
            self._update_reading()
            self._start(nxt)
        elif self._pending_error is not None:
            self._send_error_and_close(self._pending_error)
        elif self._stopped:
            self.close()  # the client half-closed: nothing more will come
        elif self._in_head:
            self._arm(self.limits.header_timeout_ms, self._on_header_timeout)
        else:
            self._arm(self.limits.keepalive_timeout_ms, self._on_idle_timeout)

    def _on_bad_input(self, status: int, exc: BaseException | None) -> None:
        self._stopped = True
        exch = self._parsing
        if exch is not None:
            # broken body (bad chunk framing): the handler reading it sees a ClientError
            self._parsing = None
            exch.stream.fail(ClientError(400, f"malformed request body: {exc}"))
            exch.must_close = True
            if self._active is None and not self._queue:
                self.close()
            return
        log.debug("bad request peer=%s status=%d error=%s", self.peer, status, exc)
        if self._active is None:
            self._send_error_and_close(status)
        else:
            self._pending_error = status  # answered after the requests before it

    def _on_upgrade(self, rest: bytes) -> None:
        self._upgraded = self._stopped = True
        self._parsing = None
        if rest:
            self._tunnel_buffer.append(rest)
        self.set_reading(tunnel=False)  # until the handler splices (or declines) the tunnel

    async def splice(self, upstream: UpstreamTunnel) -> None:
        """Splice this connection and `upstream` until either closes (`tunnel()`)."""
        self._tunnel = upstream
        buffered, self._tunnel_buffer = self._tunnel_buffer, []
        for data in buffered:
            upstream.send(data)
        upstream.attach(_ClientEnd(self))
        self.set_reading(tunnel=True)
        closed = asyncio.ensure_future(upstream.wait_closed())
        try:
            await asyncio.wait((self._closed_waiter, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()

    # -- timers --------------------------------------------------------------------------

    def _arm(self, ms: int, callback: Callable[[], None]) -> None:
        """Call `callback` in `ms` unless re-armed or cancelled first. Cheap to call on every
        request: one timer per connection is kept and moved only when it must fire sooner
        (a timer that fires early just sleeps again until what is due)."""
        due = self.loop.time() + ms / 1000
        self._due = due
        self._due_callback = callback
        if self._timer is None or self._timer_at > due:
            self._move_timer(due)

    def _move_timer(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(due, self._on_timer)
        self._timer_at = due

    def _cancel_timer(self) -> None:
        self._due = 0.0

    def _on_timer(self) -> None:
        self._timer = None
        due = self._due
        if not due or self.closed:
            return
        if self.loop.time() < due:
            self._timer = self.loop.call_at(due, self._on_timer)
            self._timer_at = due
            return
        self._due = 0.0
        self._due_callback()

    def _arm_send_timeout(self) -> None:
        """The client has `send_timeout_ms` to read what is buffered for it, whoever wrote
        it (a callback-mode handler never waits in `drain()`, and held writes reach the
        transport only at the end of the loop round): then the connection is reset."""
        ms = self.limits.send_timeout_ms
        if ms is not None and self._send_timer is None and not self.closed:
            self._send_timer = self.loop.call_later(ms / 1000, self._on_send_timeout)

    def _on_send_timeout(self) -> None:
        self._send_timer = None
        if self.flow.paused:
            log.debug("client too slow to read the response, aborting peer=%s", self.peer)
            self.abort()

    def _on_idle_timeout(self) -> None:
        if self._active is None and not self._in_head:
            log.debug("idle connection closed peer=%s", self.peer)
            self.close()

    def _on_header_timeout(self) -> None:
        if self.closed:
            return
        if self._in_head:
            self._on_bad_input(408, None)
        elif self._active is None and self._parsing is None:
            # bytes came but no request line yet (stray CRLFs, a method cut short)
            log.debug("no request head in time, closing peer=%s", self.peer)
            self.close()

    # -- I/O -----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        assert self.transport is not None and self.info is not None
        self.batch.write(self.transport, data)
        self.info.bytes_written += len(data)

    def writelines(self, *parts: bytes) -> None:
        assert self.transport is not None and self.info is not None
        self.batch.flush()
        self.transport.writelines(parts)
        self.info.bytes_written += sum(map(len, parts))

    def close(self) -> None:
        """Close after the buffered writes are flushed."""
        if self.transport is not None and not self.transport.is_closing():
            self.batch.flush()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _send_error_and_close(self, status: int) -> None:
        self._stopped = True
        if not self.closed:
            self.write(_ERRORS.get(status) or _error_response(status))
            self.close()

    def _pause_stream(self) -> None:
        self._paused_streams += 1
        self._update_reading()

    def _resume_stream(self) -> None:
        self._paused_streams -= 1
        self._update_reading()

    def set_reading(self, *, tunnel: bool) -> None:
        """Pause (False) or resume (True) reading for the tunnel's flow control."""
        self._tunnel_ok = tunnel
        self._update_reading()

    def _update_reading(self) -> None:
        want = (
            self._paused_streams == 0
            and self._tunnel_ok
            and not self._await_writable
            and len(self._queue) < self.limits.max_pipelined
        )
        if want == self._reading or self.transport is None or self.closed:
            return
        self._reading = want
        if want:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()


def _nothing() -> None:
    pass


def _body_timeout() -> ClientError:
    return ClientError(408, "request body timed out")


async def serve_http(
    handler: Handler,
    *,
    host: str,
    port: int,
    limits: Limits | None = None,
    ssl: _ssl.SSLContext | None = None,
    hooks: ConnectionHooks | None = None,
    accept: Accept | None = None,
    backlog: int = 1024,
    reuse_port: bool = False,
) -> asyncio.Server:
    """Listen on `host:port` (0: any free port; see `server.sockets`) and serve HTTP/1.1.

    `limits` defaults to `Limits()`. `ssl` is handed to `loop.create_server` as is (TLS
    termination comes later). `hooks` sees every connection open and close; `accept` is the
    inbound policy check (see the module docstring). Closing the returned server stops
    accepting; open connections end on their own (keep-alive timeout).
    """
    listener = _Listener(handler, limits or Limits(), hooks, accept)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpServerProtocol(listener),
        host,
        port,
        ssl=ssl,
        backlog=backlog,
        reuse_port=reuse_port or None,
    )
    log.info("listening host=%s port=%d", host, server.sockets[0].getsockname()[1])
    return server
