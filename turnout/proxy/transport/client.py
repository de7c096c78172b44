"""`UpstreamPool`: pooled HTTP/1.1 keep-alive connections to upstream endpoints.

```
send(endpoint, head, body, receiver)            the callback API (the proxy's request path)
   idle[endpoint].pop()  (LIFO: the warmest connection)
   └─ none idle ─► a task connects (connect timeout), then sends
   transport.write(head + body)     (bytes body: one write; iterator body: a sender task
                                     waiting on pause_writing, chunked)
   HttpResponseParser callbacks ─► receiver.on_head(handle, status, headers, length)
                                   receiver.on_body(chunk)...  receiver.on_end()
                                   or receiver.on_error(exc), once, instead of the rest
   message complete + keep-alive ─► idle[endpoint].append(conn), before on_end
request(...) / upgrade(...)                     the awaitable API: the same exchange through
   a receiver that turns it into an UpstreamResponse (head future + BodyStream body)
```

No callback is ever made from inside `send()`, and the callbacks of one exchange never
overlap. One request is in flight per connection (no upstream pipelining). A pooled
connection the peer closed while we were writing to it (the keep-alive race every pool meets)
is detected when it closes before a single response byte: the request is then sent again,
once, on a fresh connection, if its body is `bytes` (replayable) — as Go's `net/http` and
Envoy do. Errors reach receivers only as `UpstreamError` subclasses (turnout.proxy.errors),
made once here with the OS or parser exception as `__cause__`, or as the exception of a
failing iterator body.

Deliberately not here: retries on failures other than that stale-connection case (the
handler owns retry policy and budgets), load balancing, TLS, HTTP/2, request pipelining,
response trailers (parsed and dropped), and a response body timeout other than the request
deadline `timeout_ms`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import cast

import httptools

from turnout.proxy import config
from turnout.proxy.errors import (
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from turnout.proxy.transport.batch import WriteBatch
from turnout.proxy.transport.messages import (
    HOP_BY_HOP,
    HOP_BY_HOP_BYTES,
    Address,
    ConnectionHooks,
    ConnectionInfo,
    Headers,
    RawHeaders,
    RawPairs,
    ResponseReceiver,
    TunnelEnd,
    UpstreamHandle,
    UpstreamResponse,
    hook_close,
    hook_open,
)
from turnout.proxy.transport.streams import BodyStream, WriteFlow

log = logging.getLogger(__name__)

_NO_BODY_STATUS = frozenset({204, 304})
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})


class _StopParsing(Exception):
    """Raised from a parser callback to end `feed_data` (a HEAD response is complete)."""


class _StaleConnection(UpstreamConnectError):
    """A reused connection closed before any response byte: the keep-alive race."""


def encode_request_head(
    method: str,
    target: str,
    headers: Headers | tuple[tuple[str, str], ...],
    *,
    framing: str,
    host: str | None = None,
    endpoint: Address | None = None,
    parsed: bool = False,
) -> bytes:
    """The request line and headers, hop-by-hop and framing headers replaced by `framing`
    (already formatted lines, see `request_framing`). With `host`, that Host goes first and
    any Host in `headers` is left out; else a request without one gets `endpoint`'s. Raises
    `ValueError` for a CR or LF inside a header, unless `parsed` says that method, target,
    headers and host all come from the request parser as they are (it refuses CR and LF
    there already)."""
    if host is None:
        parts = [method, " ", target, " HTTP/1.1\r\n"]
        lines = 2
    else:
        parts = [method, " ", target, " HTTP/1.1\r\nhost: ", host, "\r\n"]
        lines = 3
    has_host = host is not None
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP:
            continue
        if lname == "host":
            if host is not None:
                continue
            has_host = True
        parts += (name, ": ", value, "\r\n")
        lines += 1
    if not has_host and endpoint is not None:
        parts.append(f"host: {endpoint[0]}:{endpoint[1]}\r\n")
        lines += 1
    parts += (framing, "\r\n")
    head = "".join(parts)
    if parsed:
        return head.encode("latin-1")
    # One C-level scan instead of a check per value: a CR/LF smuggled into a header value
    # (or a method/target) would add lines and split the request.
    if head.count("\n") != lines + framing.count("\n") or head.count("\r") != head.count("\n"):
        raise ValueError("CR or LF inside the request line or a header")
    return head.encode("latin-1")


_HOP_LENGTHS = frozenset(len(name) for name in HOP_BY_HOP_BYTES)
_NOT_FORWARDED = HOP_BY_HOP_BYTES | {b"host"}
_NOT_FORWARDED_LENGTHS = frozenset(len(name) for name in _NOT_FORWARDED)


def encode_forward_head(
    method: str, target: str, headers: RawPairs, *, host: str, framing: str
) -> bytes:
    """`encode_request_head` for a request going on as it came: `headers` as the request
    parser gave them (bytes, already free of CR and LF), Host set to `host` (from the
    parsed request too)."""
    parts = [f"{method} {target} HTTP/1.1\r\nhost: {host}\r\n{framing}".encode("latin-1")]
    for name, value in headers:
        if len(name) in _NOT_FORWARDED_LENGTHS and name.lower() in _NOT_FORWARDED:
            continue
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def request_framing(method: str, body: bytes | None, upgrade: str | None = None) -> str:
    """The framing header lines of a request whose body is `body` (None: streamed, chunked),
    or of an upgrade request, for `encode_request_head`."""
    if upgrade is not None:
        return f"connection: upgrade\r\nupgrade: {upgrade}\r\n"
    if body is None:
        return "transfer-encoding: chunked\r\n"
    if not body and method in _BODYLESS_METHODS:
        return ""
    return f"content-length: {len(body)}\r\n"


class _UpstreamConnection(asyncio.Protocol):
    """One upstream TCP connection: writes requests, parses responses, one at a time, and
    hands each response to the exchange's `ResponseReceiver`."""

    def __init__(self, pool: UpstreamPool, endpoint: Address) -> None:
        self.pool = pool
        self.endpoint = endpoint
        self.loop = pool.loop or asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.batch = pool.batch
        self.parser = httptools.HttpResponseParser(self)
        self.info: ConnectionInfo | None = None
        self.flow = WriteFlow(self.loop, None)
        self.closed = False
        self.reused = False
        self.busy = False
        self.idle_since = 0.0
        """Loop time it went back to the pool; the pool's sweep closes it after the idle
        timeout."""
        # the exchange in flight
        self._receiver: ResponseReceiver | None = None
        self._request: _Request | None = None
        self._headers: list[bytes] = []
        """The response head's end-to-end headers as `RawHeaders.lines`."""
        self._hop: RawPairs = []
        self._in_head = False
        self._interim = False
        self._received = False
        self._headed = False
        self._head_only = False
        self._keep_alive = False
        self._until_eof = False
        self._content_length: int | None = None
        self._chunked = False
        self._sent = False
        self._deadline: asyncio.TimerHandle | None = None
        self._sender: asyncio.Task[None] | None = None
        # after a 101
        self.upgraded = False
        self.tunnel_peer: TunnelEnd | None = None
        self.tunnel_buffer: list[bytes] = []
        self.closed_waiter: asyncio.Future[None] = self.loop.create_future()

    @property
    def version(self) -> str:
        """HTTP version of the response being parsed."""
        return self.parser.get_http_version()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = transport = cast(asyncio.Transport, transport)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.info = ConnectionInfo("outbound", self.endpoint, (local[0], local[1]))
        hook_open(self.pool.hooks, self.info)

    def data_received(self, data: bytes) -> None:
        assert self.info is not None
        self.info.bytes_read += len(data)
        if self.upgraded:
            if self.tunnel_peer is not None:
                self.tunnel_peer.send(data)
            else:
                self.tunnel_buffer.append(data)
            return
        if not self.busy:
            log.debug("upstream sent data while idle endpoint=%s:%d", *self.endpoint)
            self.abort()
            return
        self._received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0]
            self.upgraded = True
            if offset < len(data):
                self.tunnel_buffer.append(data[offset:])
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _StopParsing):
                return
            log.error("response callback failed endpoint=%s:%d", *self.endpoint, exc_info=cause)
            self._fail(UpstreamProtocolError(self.endpoint, "response handling failed"), cause)
            self.abort()
        except httptools.HttpParserError as exc:
            self._fail(UpstreamProtocolError(self.endpoint, f"malformed response: {exc}"), exc)
            self.abort()

    def eof_received(self) -> bool | None:
        return False  # close; connection_lost does the bookkeeping

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        self.flow.close(
            UpstreamProtocolError(self.endpoint, "connection closed while sending the request")
        )
        if self.busy:
            self._lost_mid_exchange(exc)
        if self.tunnel_peer is not None:
            self.tunnel_peer.close()
        if not self.closed_waiter.done():
            self.closed_waiter.set_result(None)
        assert self.info is not None
        hook_close(self.pool.hooks, self.info, exc)

    def pause_writing(self) -> None:
        if self.tunnel_peer is not None:
            self.tunnel_peer.pause_reading()
        self.flow.pause()

    def resume_writing(self) -> None:
        if self.tunnel_peer is not None:
            self.tunnel_peer.resume_reading()
        self.flow.resume()

    # -- httptools callbacks -------------------------------------------------------------

    def _begin_message(self) -> None:
        """What `on_message_begin` would do; called instead when a request is sent and after
        an interim (1xx) response, which saves a parser callback per response."""
        self._headers = []
        self._hop = []
        self._in_head = True
        self._content_length = None
        self._chunked = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a trailer: dropped
        if len(name) in _HOP_LENGTHS:
            lname = name.lower()
            if lname in HOP_BY_HOP_BYTES:
                if lname == b"content-length":
                    self._content_length = int(value)
                elif lname == b"transfer-encoding":
                    self._chunked = True
                self._hop.append((name, value))
                return
        self._headers += (name, b": ", value, b"\r\n")  # `RawHeaders.lines`

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self.parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim = True  # 100 Continue, 103 Early Hints: not forwarded
            return
        self._interim = False
        self._keep_alive = parser.should_keep_alive()
        if status == 101:
            self.upgraded = True  # feed_data raises HttpParserUpgrade right after this
        head_only = self._head_only
        no_body = head_only or status in _NO_BODY_STATUS or status == 101
        # HEAD: the announced length (no body follows); 204/304/101: none; else as framed
        content_length = 0 if no_body and not head_only else self._content_length
        self._until_eof = not no_body and content_length is None and not self._chunked
        self._headed = True
        receiver = self._receiver
        if receiver is not None:
            receiver.on_head(self, status, RawHeaders(self._headers, self._hop), content_length)
        if head_only:
            # llhttp cannot be told that a HEAD response has no body: stop this parser (the
            # exception ends feed_data) and let a fresh one take the next response.
            self.parser = httptools.HttpResponseParser(self)
            self._begin_message()
            self._complete()
            raise _StopParsing

    def on_body(self, body: bytes) -> None:
        receiver = self._receiver
        if receiver is not None:
            receiver.on_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            self._begin_message()
            return
        if not self._head_only:
            self._complete()

    # -- the exchange --------------------------------------------------------------------

    def start(self, request: _Request, receiver: ResponseReceiver) -> None:
        """Send `request`; the response goes to `receiver`."""
        transport = self.transport
        info = self.info
        assert transport is not None and info is not None
        self._receiver = receiver
        self._request = request
        self._received = self._headed = self._interim = self._sent = False
        self._headers = []
        self._hop = []
        self._in_head = True
        self._content_length = None
        self._chunked = False
        self._head_only = request.method == "HEAD"
        self.busy = True
        info.requests += 1
        if request.deadline is not None:
            self._deadline = self.loop.call_at(request.deadline, self._expire)
        head, body = request.head, request.body
        if isinstance(body, bytes):
            if not body:
                self.batch.write(transport, head)
                info.bytes_written += len(head)
            elif len(body) < 65536:
                data = head + body
                transport.write(data)
                info.bytes_written += len(data)
            else:
                transport.writelines((head, body))
                info.bytes_written += len(head) + len(body)
            self._sent = True
        else:
            transport.write(head)
            info.bytes_written += len(head)
            self._sender = self.loop.create_task(
                self._send_body(body), name=f"upstream-body {self.endpoint[0]}:{self.endpoint[1]}"
            )
            self._sender.add_done_callback(_log_crash)

    def cancel(self, receiver: ResponseReceiver) -> None:
        """`receiver` gives up its exchange: close the connection unless the response is
        already complete (then it is in the pool, maybe serving someone else)."""
        if self._receiver is receiver:
            self._receiver = None
            self.abort()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    async def _send_body(self, body: AsyncIterator[bytes]) -> None:
        transport = self.transport
        assert transport is not None and self.info is not None
        try:
            async for chunk in body:
                if self.closed:
                    return
                if not chunk:
                    continue
                transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                self.info.bytes_written += len(chunk) + 4 + len(b"%x" % len(chunk))
                await self.flow.drain()
            if self.closed:
                return
            transport.write(b"0\r\n\r\n")
            self.info.bytes_written += 5
            self._sent = True
        except UpstreamError:
            return  # the connection broke; the exchange has its own error already
        except Exception as exc:
            # The source (usually the client's request body) failed: the upstream got a
            # truncated body, so this connection is done; the caller sees the source's error.
            log.debug("request body source failed endpoint=%s:%d error=%r", *self.endpoint, exc)
            self._fail(exc, None)
            self.abort()

    def _complete(self) -> None:
        """The response is complete on the wire; reuse the connection if we can."""
        receiver = self._receiver
        self._receiver = None
        self._request = None
        self.busy = False
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if not self._sent:
            # An early response (before the whole request body went out): Go and Envoy both
            # close such a connection rather than keep sending a body nobody reads.
            self.abort()
        elif self.upgraded:
            pass
        elif self._keep_alive and not self.closed:
            self.reused = True
            self.pool._put_idle(self)
        else:
            self.close()
        if receiver is not None:
            receiver.on_end()

    def _expire(self) -> None:
        self._deadline = None
        request = self._request
        timeout = "" if request is None else f" within {request.timeout_s:g} s"
        self._fail(UpstreamTimeout(self.endpoint, f"no complete response{timeout}"), None)
        self.abort()

    def _fail(self, err: BaseException, cause: BaseException | None) -> None:
        if cause is not None:
            err.__cause__ = cause
        receiver = self._receiver
        self._receiver = None
        if receiver is not None:
            receiver.on_error(err)

    def _lost_mid_exchange(self, exc: Exception | None) -> None:
        self.busy = False
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._sender is not None:
            self._sender.cancel()
        receiver = self._receiver
        if receiver is None:
            return
        if not self._headed:
            request = self._request
            if self._received:
                err: UpstreamError = UpstreamProtocolError(
                    self.endpoint, "connection closed in the response head"
                )
            elif self.reused and request is not None and isinstance(request.body, bytes):
                # the keep-alive race: send it again, once, on a fresh connection
                log.debug("stale pooled connection, sending again endpoint=%s:%d", *self.endpoint)
                self._receiver = None
                self.pool._connect_and_start(self.endpoint, request, receiver)
                return
            elif self.reused:
                err = _StaleConnection(self.endpoint, "reused connection closed before response")
            else:
                err = UpstreamConnectError(self.endpoint, "connection closed before response")
            self._fail(err, exc)
            return
        if self.upgraded:
            self._receiver = None
            return
        if self._until_eof and exc is None:
            self._receiver = None
            receiver.on_end()  # a close-delimited body ends here (RFC 9112 §6.3 rule 8)
        else:
            self._fail(UpstreamProtocolError(self.endpoint, "connection closed mid-body"), exc)

    # -- connection control --------------------------------------------------------------

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def idle_expired(self) -> None:
        log.debug("idle upstream connection closed endpoint=%s:%d", *self.endpoint)
        self.close()


class _Request:
    """What `start()` sends, kept for the one resend after a stale pooled connection."""

    __slots__ = ("body", "deadline", "head", "method", "timeout_s")

    def __init__(
        self,
        head: bytes,
        body: bytes | AsyncIterator[bytes],
        method: str,
        deadline: float | None,
        timeout_s: float | None,
    ) -> None:
        self.head = head
        self.body = body
        self.method = method
        self.deadline = deadline
        """Loop time by which the whole response must have arrived (None: no limit)."""
        self.timeout_s = timeout_s


class _Connecting:
    """The handle of an exchange waiting for a new connection."""

    __slots__ = ("conn", "receiver", "task")

    def __init__(self, receiver: ResponseReceiver) -> None:
        self.receiver = receiver
        self.conn: _UpstreamConnection | None = None
        self.task: asyncio.Task[None] | None = None

    def cancel(self, receiver: ResponseReceiver) -> None:
        if self.conn is not None:
            self.conn.cancel(receiver)
        elif self.task is not None:
            self.task.cancel()

    def pause_reading(self) -> None:
        if self.conn is not None:
            self.conn.pause_reading()

    def resume_reading(self) -> None:
        if self.conn is not None:
            self.conn.resume_reading()


class _Awaiting:
    """The receiver behind the awaitable API: the head as a future, the body as a stream."""

    __slots__ = ("conn", "future", "loop", "stream")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[UpstreamResponse] = loop.create_future()
        self.stream: BodyStream | None = None
        self.conn: _UpstreamConnection | None = None

    def on_head(
        self,
        conn: UpstreamHandle,
        status: int,
        headers: RawHeaders,
        content_length: int | None,
    ) -> None:
        assert isinstance(conn, _UpstreamConnection)
        self.conn = conn
        self.stream = stream = BodyStream(
            self.loop,
            high_water=config.DEFAULT_READ_HIGH_WATER,
            pause=conn.pause_reading,
            resume=conn.resume_reading,
        )
        if not self.future.done():
            self.future.set_result(
                UpstreamResponse(
                    status=status,
                    headers=headers.decode(),
                    version=conn.version,
                    content_length=content_length,
                    stream=stream,
                    release=self.release,
                )
            )

    def on_body(self, chunk: bytes) -> None:
        if self.stream is not None:
            self.stream.feed(chunk)

    def on_end(self) -> None:
        if self.stream is not None:
            self.stream.feed_eof()

    def on_error(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)
        elif self.stream is not None:
            self.stream.fail(error)

    def release(self) -> None:
        stream = self.stream
        if stream is not None:
            stream.discard()
            conn = self.conn
            if not stream.at_eof and conn is not None and not conn.upgraded:
                conn.cancel(self)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task crashed task=%s", task.get_name(), exc_info=task.exception())


class UpgradedConnection:
    """An upstream connection after `101 Switching Protocols`, for `ResponseWriter.tunnel`.

    `response` is the 101 (its headers carry e.g. `Sec-WebSocket-Accept`); `protocol` is the
    upstream's `Upgrade` value. Bytes the upstream sent right after its 101 are kept until
    `attach()`.
    """

    __slots__ = ("_conn", "protocol", "response")

    def __init__(self, conn: _UpstreamConnection, response: UpstreamResponse) -> None:
        self._conn = conn
        self.response = response
        """The upstream's 101 response."""
        self.protocol = next((v for k, v in response.headers if k.lower() == "upgrade"), "")
        """The `Upgrade` value the upstream agreed to ("websocket")."""

    def attach(self, peer: TunnelEnd) -> None:
        """Send everything the upstream sends (buffered bytes first) to `peer`."""
        conn = self._conn
        conn.tunnel_peer = peer
        buffered, conn.tunnel_buffer = conn.tunnel_buffer, []
        for data in buffered:
            peer.send(data)
        if conn.closed:
            peer.close()

    def send(self, data: bytes) -> None:
        conn = self._conn
        if conn.transport is not None and not conn.closed:
            conn.transport.write(data)
            assert conn.info is not None
            conn.info.bytes_written += len(data)

    def pause_reading(self) -> None:
        self._conn.pause_reading()

    def resume_reading(self) -> None:
        self._conn.resume_reading()

    def close(self) -> None:
        """Close after flushing what was written."""
        self._conn.close()

    @property
    def closed(self) -> bool:
        return self._conn.closed

    async def wait_closed(self) -> None:
        await asyncio.shield(self._conn.closed_waiter)


class UpstreamPool:
    """Keep-alive HTTP/1.1 connections per upstream `(host, port)`, reused last-in first-out.

    Idle connections are closed after `idle_timeout_ms`; at most `max_idle_per_endpoint` are
    kept per endpoint. `hooks` sees every connection opened and closed (`direction` is
    "outbound"). `close()` closes all of them.
    """

    def __init__(
        self,
        *,
        connect_timeout_ms: int = config.DEFAULT_CONNECT_TIMEOUT_MS,
        idle_timeout_ms: int = config.DEFAULT_POOL_IDLE_TIMEOUT_MS,
        max_idle_per_endpoint: int = config.DEFAULT_POOL_MAX_IDLE_PER_ENDPOINT,
        hooks: ConnectionHooks | None = None,
    ) -> None:
        self.connect_timeout_ms = connect_timeout_ms
        self.idle_timeout_ms = idle_timeout_ms
        self.max_idle_per_endpoint = max_idle_per_endpoint
        self.hooks = hooks
        self.loop: asyncio.AbstractEventLoop | None = None
        self._batch: WriteBatch | None = None
        self._idle: dict[Address, list[_UpstreamConnection]] = {}
        self._all: set[_UpstreamConnection] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def batch(self) -> WriteBatch:
        """Request heads of one loop round, sent at its end (`batch.py`)."""
        batch = self._batch
        if batch is None:
            batch = self._batch = WriteBatch(self.loop or asyncio.get_running_loop())
        return batch

    def idle_count(self, endpoint: Address) -> int:
        """Idle connections pooled for `endpoint` right now."""
        return len(self._idle.get(endpoint, ()))

    @property
    def open_count(self) -> int:
        """Connections open (idle or busy) across all endpoints."""
        return len(self._all)

    # -- the callback API ------------------------------------------------------------------

    def send(
        self,
        endpoint: Address,
        *,
        method: str,
        head: bytes,
        body: bytes | AsyncIterator[bytes],
        timeout_ms: int | None,
        receiver: ResponseReceiver,
    ) -> UpstreamHandle:
        """Send one request whose head `encode_request_head` made; the response goes to
        `receiver`, never before this returns. `timeout_ms` bounds the whole exchange, body
        included (None: no deadline). The returned handle gives the exchange up
        (`cancel(receiver)`) or pauses reading its response."""
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
        if timeout_ms is None:
            request = _Request(head, body, method, None, None)
        else:
            request = _Request(
                head, body, method, loop.time() + timeout_ms / 1000, timeout_ms / 1000
            )
        idle = self._idle.get(endpoint)
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.start(request, receiver)
                return conn
        return self._connect_and_start(endpoint, request, receiver)

    def _connect_and_start(
        self, endpoint: Address, request: _Request, receiver: ResponseReceiver
    ) -> _Connecting:
        pending = _Connecting(receiver)
        loop = self.loop or asyncio.get_running_loop()
        task = loop.create_task(self._start_on_new(endpoint, request, pending))
        pending.task = task
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        task.add_done_callback(_log_crash)
        return pending

    async def _start_on_new(
        self, endpoint: Address, request: _Request, pending: _Connecting
    ) -> None:
        receiver = pending.receiver
        try:
            conn = await self._connect(endpoint)
            if request.deadline is not None and request.deadline <= conn.loop.time():
                conn.close()
                raise UpstreamTimeout(endpoint, "deadline expired before the request was sent")
        except UpstreamError as exc:
            receiver.on_error(exc)
            return
        pending.conn = conn
        conn.start(request, receiver)

    # -- the awaitable API -----------------------------------------------------------------

    async def request(
        self,
        endpoint: Address,
        *,
        method: str,
        target: str,
        headers: Headers,
        body: bytes | AsyncIterator[bytes],
        timeout_ms: int | None,
    ) -> UpstreamResponse:
        """Send one request and return the response once its head has arrived.

        `timeout_ms` bounds the whole exchange, body included (None: no deadline). Raises
        `UpstreamConnectError`, `UpstreamTimeout` or `UpstreamProtocolError`; an exception
        from an iterator `body` is raised as is.
        """
        response, _ = await self._exchange(endpoint, method, target, headers, body, timeout_ms)
        return response

    async def upgrade(
        self,
        endpoint: Address,
        *,
        method: str,
        target: str,
        headers: Headers,
        upgrade: str,
        timeout_ms: int | None,
    ) -> tuple[UpstreamResponse, UpgradedConnection | None]:
        """Send an upgrade request (`Connection: upgrade`, `Upgrade: <upgrade>`). On a 101
        the connection is handed over as an `UpgradedConnection` (never pooled again) and
        `timeout_ms` stops applying; any other answer is an ordinary response and None."""
        return await self._exchange(endpoint, method, target, headers, b"", timeout_ms, upgrade)

    async def _exchange(
        self,
        endpoint: Address,
        method: str,
        target: str,
        headers: Headers,
        body: bytes | AsyncIterator[bytes],
        timeout_ms: int | None,
        upgrade: str | None = None,
    ) -> tuple[UpstreamResponse, UpgradedConnection | None]:
        try:
            head = encode_request_head(
                method,
                target,
                headers,
                endpoint=endpoint,
                framing=request_framing(method, body if isinstance(body, bytes) else None, upgrade),
            )
        except ValueError as exc:
            raise UpstreamProtocolError(endpoint, str(exc)) from exc
        receiver = _Awaiting(asyncio.get_running_loop())
        handle = self.send(
            endpoint, method=method, head=head, body=body, timeout_ms=timeout_ms, receiver=receiver
        )
        try:
            response = await receiver.future
        except BaseException:
            handle.cancel(receiver)
            raise
        conn = receiver.conn
        if conn is not None and conn.upgraded:
            if upgrade is None:
                conn.abort()
                raise UpstreamProtocolError(endpoint, "101 to a request that asked no upgrade")
            return response, UpgradedConnection(conn, response)
        return response, None

    # -- connections -------------------------------------------------------------------------

    async def _connect(self, endpoint: Address) -> _UpstreamConnection:
        loop = asyncio.get_running_loop()
        host, port = endpoint
        try:
            async with asyncio.timeout(self.connect_timeout_ms / 1000):
                _, conn = await loop.create_connection(
                    lambda: _UpstreamConnection(self, endpoint), host, port
                )
        except TimeoutError as exc:
            raise UpstreamConnectTimeout(
                endpoint, f"connect timed out after {self.connect_timeout_ms} ms"
            ) from exc
        except OSError as exc:
            raise UpstreamConnectError(endpoint, f"connect failed: {exc}") from exc
        self._all.add(conn)
        return conn

    def _put_idle(self, conn: _UpstreamConnection) -> None:
        idle = self._idle.get(conn.endpoint)
        if idle is None:
            idle = self._idle[conn.endpoint] = []
        if len(idle) >= self.max_idle_per_endpoint:
            conn.close()
            return
        conn.idle_since = conn.loop.time()
        idle.append(conn)
        if self._sweeper is None:
            self._schedule_sweep(conn.loop)

    def _schedule_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """One timer for the whole pool instead of one per pooled connection: a connection
        going idle on every request must not cost a timer each time."""
        self._sweeper = loop.call_later(self.idle_timeout_ms / 2000, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close connections idle for `idle_timeout_ms` or more (oldest first in each list,
        as idle connections are appended and reused last-in first-out)."""
        self._sweeper = None
        cutoff = loop.time() - self.idle_timeout_ms / 1000
        for idle in list(self._idle.values()):
            while idle and idle[0].idle_since <= cutoff:
                idle.pop(0).idle_expired()
        if any(self._idle.values()):
            self._schedule_sweep(loop)

    def _forget(self, conn: _UpstreamConnection) -> None:
        self._all.discard(conn)
        idle = self._idle.get(conn.endpoint)
        if idle and conn in idle:
            idle.remove(conn)

    async def close(self) -> None:
        """Close every connection (idle or busy) and wait until they are closed."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for task in list(self._connecting):
            task.cancel()
        conns = list(self._all)
        for conn in conns:
            conn.abort()
        for conn in conns:
            await conn.closed_waiter
