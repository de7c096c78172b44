"""One upstream HTTP/1.1 connection (`UpstreamConnection`, an `asyncio.Protocol` over
httptools); what it becomes after a 101 is `upgraded.UpgradedConnection`.

```
start(OutgoingRequest, receiver)  (from the pool: an idle connection, or a new one)
   bytes body: transport.write(head + body)    iterator body: a sender task, chunked,
               (no body: the pool's WriteBatch)               waiting on pause_writing
   HttpResponseParser callbacks ─► receiver.on_head(self, status, RawHeaders, length)
                                   receiver.on_body(chunk)...  receiver.on_end()
                                   or receiver.on_error(exc), once, instead of the rest
   message complete ─► once the read is parsed to its end: nothing after the response
                       + keep-alive ─► pool._put_idle(self), then on_end; bytes after it
                       (or on an idle connection) ─► closed, never pooled
   closed before a response byte on a reused connection ─► pool._connect_and_start (resend)
   101 ─► upgraded.UpgradedConnection: bytes spliced to a TunnelEnd, never pooled again
```

The callbacks of one exchange never overlap, and one request is in flight at a time (no
pipelining), so a byte past the end of a response answers no request: the connection is
closed (its response still delivered), as is one that sends anything while idle; otherwise
the surplus would be read as the answer to the next request sent on it. A head over the
pool's `max_header_bytes` or `max_header_count` fails the exchange and closes the
connection; so do that many bytes read without the parser reporting anything (one header
that long, which httptools would buffer whole). A pooled connection the peer closed while
we were writing to it (the keep-alive race every pool meets) is detected when it closes
before a single response byte: the request is then sent again, once, on a fresh
connection, if its body is `bytes` (replayable), as Go's `net/http` and Envoy do. Errors reach receivers only as
`UpstreamError` subclasses (turnout.proxy.errors), made once here with the OS or parser
exception as `__cause__`, or as the exception of a failing iterator body.

Not here: the idle lists, connecting and the awaitable API (`client.UpstreamPool`, seen
from here as `ConnectionPool`), head encoding (`heads`), retries other than that one
resend, TLS, HTTP/2, response trailers (parsed and dropped), and the timer of the read
timeout (an exchange without a deadline: the pool's sweep compares `progress` and calls
`read_expired`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Protocol, cast

import httptools

from turnout.proxy.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReadTimeout,
    UpstreamTimeout,
)
from turnout.proxy.transport.batch import WriteBatch
from turnout.proxy.transport.heads import NO_BODY_STATUS, without_connection_options
from turnout.proxy.transport.messages import (
    HOP_BY_HOP_BYTES,
    Address,
    ConnectionHooks,
    ConnectionInfo,
    RawHeaders,
    RawPairs,
    ResponseReceiver,
    TunnelEnd,
    UpstreamHandle,
    hook_close,
    hook_open,
)
from turnout.proxy.transport.streams import WriteFlow

log = logging.getLogger(__name__)

_HOP_LENGTHS = frozenset(len(name) for name in HOP_BY_HOP_BYTES)


_HEAD_TOO_LARGE = "response head over max_header_bytes or max_header_count"
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"upgrade"})
"""Connection values that name no other header (the common ones, checked in one lookup)."""


class _BadResponse(Exception):
    """Raised from a parser callback to end `feed_data`: the upstream broke the exchange's
    framing (the message is the `UpstreamProtocolError`'s). Outside the proxy's tree on
    purpose: it never leaves this module, which turns it into that error."""


class _StaleConnection(UpstreamConnectError):
    """A reused connection closed before any response byte: the keep-alive race."""


class ConnectionPool(Protocol):
    """What a connection needs from the pool that owns it (`client.UpstreamPool`)."""

    loop: asyncio.AbstractEventLoop | None
    hooks: ConnectionHooks | None
    max_header_bytes: int
    max_header_count: int

    @property
    def batch(self) -> WriteBatch:
        """Where bodiless request heads wait for the end of the loop's round."""

    def _put_idle(self, conn: UpstreamConnection) -> None:
        """The response is complete and the connection may be reused (a connection already
        idle stays in the pool once)."""

    def _unpool(self, conn: UpstreamConnection) -> None:
        """The connection must not be reused (it is closing)."""

    def _forget(self, conn: UpstreamConnection) -> None:
        """The connection is closed."""

    def _connect_and_start(
        self, endpoint: Address, request: OutgoingRequest, receiver: ResponseReceiver
    ) -> UpstreamHandle:
        """Send `request` again on a new connection (the stale-connection resend)."""


class UpstreamConnection(asyncio.Protocol):
    """One upstream TCP connection: writes requests, parses responses, one at a time, and
    hands each response to the exchange's `ResponseReceiver`."""

    def __init__(self, pool: ConnectionPool, endpoint: Address) -> None:
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
        self.pooled = False
        """In the pool's idle list (`client.UpstreamPool` keeps it true)."""
        self.watched = False
        """The exchange in flight has no deadline: the pool's read sweep times its silences."""
        self.progress = 0
        """Reads, and writes of a request or a piece of its body, so far: a count the read
        sweep compares (cheaper than reading the clock on every read)."""
        self.swept = -1
        """`progress` at the read sweep before."""
        self.quiet_sweeps = 0
        """Read sweeps in a row that saw no progress."""
        self.idle_since = 0.0
        """Loop time it went back to the pool; the pool's sweep closes it after the idle
        timeout."""
        # the exchange in flight
        self._receiver: ResponseReceiver | None = None
        self._request: OutgoingRequest | None = None
        self._headers: list[bytes] = []
        """The response head's end-to-end headers as `RawHeaders.lines`."""
        self._hop: RawPairs = []
        self._named = False
        """The Connection header names other headers (`without_connection_options`)."""
        self._read_size = 0
        """Bytes of the read being parsed."""
        self._head_reads = 0
        """Bytes of the reads before this one that the head being parsed spans."""
        self._trailer_size = 0
        self._unparsed = 0
        """Bytes read, outside a head, since the parser last reported anything: a trailer
        longer than a read, which httptools keeps whole until it ends."""
        self._heard = False
        self._max_head = pool.max_header_bytes
        self._max_lines = 4 * pool.max_header_count
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
        self._settling = False
        """The response completed in the read being parsed: `_settle` follows."""
        self._ended: ResponseReceiver | None = None
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
        size = self._read_size = len(data)
        self.info.bytes_read += size
        if self.upgraded:
            if self.tunnel_peer is not None:
                self.tunnel_peer.send(data)
            else:
                self.tunnel_buffer.append(data)
            return
        if not self.busy:
            # a response to no request: whatever it is, the connection is out of step
            log.debug("upstream sent data while idle endpoint=%s:%d", *self.endpoint)
            self.abort()
            self.pool._unpool(self)
            return
        self._received = True
        self._heard = False
        self.progress += 1
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0]
            self.upgraded = True
            if offset < len(data):
                self.tunnel_buffer.append(data[offset:])
        except httptools.HttpParserCallbackError as exc:
            self._callback_failed(exc.__context__)
        except httptools.HttpParserError as exc:
            # after a complete response, too: bytes past its end that are not even HTTP
            self._fail(UpstreamProtocolError(self.endpoint, f"malformed response: {exc}"), exc)
            self.abort()
        if self._settling:
            self._settle()
        elif self._in_head:
            # the head goes on in the next read; a header longer than a read is kept whole
            # by httptools until it ends, so count what its reads hold
            self._head_reads += size
            if self._head_reads > self._max_head:
                self._head_too_large()
        elif self._heard:
            self._unparsed = 0
        else:
            self._unparsed += size  # the same for a trailer
            if self._unparsed > self._max_head:
                self._head_too_large()

    def _head_too_large(self) -> None:
        if not self.closed:
            self._fail(UpstreamProtocolError(self.endpoint, _HEAD_TOO_LARGE), None)
            self.abort()

    def _head_bytes(self) -> int:
        """The head's size as the cap counts it: names and values, 4 more bytes each."""
        size = sum(map(len, self._headers))  # the lines hold ": " and CRLF already
        for name, value in self._hop:
            size += len(name) + len(value) + 4
        return size

    def _callback_failed(self, cause: BaseException | None) -> None:
        if isinstance(cause, _BadResponse):
            log.debug("bad response endpoint=%s:%d error=%s", *self.endpoint, cause)
            self._fail(UpstreamProtocolError(self.endpoint, str(cause)), None)
        else:
            log.error("response callback failed endpoint=%s:%d", *self.endpoint, exc_info=cause)
            self._fail(UpstreamProtocolError(self.endpoint, "response handling failed"), cause)
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

    def on_message_begin(self) -> None:
        if not self.busy:
            # a message after the response completed in this same read: no request of ours
            # asked for it (a second response, or a body past the Content-Length)
            raise _BadResponse("response longer than its framing")
        self._headers = []
        self._hop = []
        self._in_head = True
        self._named = False
        self._head_reads = 0
        self._content_length = None
        self._chunked = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:  # a trailer: counted, then dropped
            self._heard = True
            self._trailer_size += len(name) + len(value) + 4
            if self._trailer_size > self._max_head:
                raise _BadResponse(_HEAD_TOO_LARGE)
            return
        if len(name) in _HOP_LENGTHS:
            lname = name.lower()
            if lname in HOP_BY_HOP_BYTES:
                if lname == b"content-length":
                    self._content_length = int(value)
                elif lname == b"transfer-encoding":
                    self._chunked = True
                elif lname == b"connection" and value.lower() not in _PLAIN_CONNECTION:
                    self._named = True
                self._hop.append((name, value))
                return
        self._headers += (name, b": ", value, b"\r\n")  # `RawHeaders.lines`

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heard = True
        self._trailer_size = 0
        # the caps, once per head: the exact size only when its reads could exceed it
        if len(self._headers) + 4 * len(self._hop) > self._max_lines or (
            self._head_reads + self._read_size > self._max_head
            and self._head_bytes() > self._max_head
        ):
            raise _BadResponse(_HEAD_TOO_LARGE)
        parser = self.parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim = True  # 100 Continue, 103 Early Hints: not forwarded
            return
        self._interim = False
        self._keep_alive = parser.should_keep_alive()
        if status == 101:
            request = self._request
            if request is None or not request.upgrade:
                # no tunnel to splice it to: the connection is neither HTTP nor ours any more
                raise _BadResponse("101 to a request that asked no upgrade")
            self.upgraded = True  # feed_data raises HttpParserUpgrade right after this
        head_only = self._head_only
        no_body = head_only or status in NO_BODY_STATUS or status == 101
        # HEAD: the announced length (no body follows); 204/304/101: none; else as framed
        content_length = 0 if no_body and not head_only else self._content_length
        self._until_eof = not no_body and content_length is None and not self._chunked
        self._headed = True
        receiver = self._receiver
        if receiver is not None:
            hop, lines = self._hop, self._headers
            if self._named:
                lines = without_connection_options(lines, hop)
            receiver.on_head(self, status, RawHeaders(lines, hop), content_length)
        if head_only:
            # llhttp cannot be told that a HEAD response has no body: a fresh parser takes
            # the next response; this one reads the rest of this read as a body, so a byte
            # after the head still shows (`on_body`, `on_message_begin`).
            self.parser = httptools.HttpResponseParser(self)
            self._complete()

    def on_body(self, body: bytes) -> None:
        self._heard = True
        receiver = self._receiver
        if receiver is not None:
            receiver.on_body(body)
        elif not self.busy:
            raise _BadResponse("response longer than its framing")

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False  # on_message_begin starts the next head
            return
        if not self._head_only:
            self._complete()

    # -- the exchange --------------------------------------------------------------------

    def start(self, request: OutgoingRequest, receiver: ResponseReceiver) -> None:
        """Send `request`; the response goes to `receiver`."""
        transport = self.transport
        info = self.info
        assert transport is not None and info is not None
        self._receiver = receiver
        self._request = request
        self._received = self._headed = self._interim = self._sent = False
        self._head_only = request.method == "HEAD"
        self.busy = True
        self.watched = request.deadline is None
        self.progress += 1
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
            self._sender.add_done_callback(log_crash)

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
                self.progress += 1  # the upstream is not due to answer yet
            if self.closed:
                return
            transport.write(b"0\r\n\r\n")
            self.info.bytes_written += 5
            self._sent = True
            self.progress += 1
        except UpstreamError:
            return  # the connection broke; the exchange has its own error already
        except Exception as exc:
            # The source (usually the client's request body) failed: the upstream got a
            # truncated body, so this connection is done; the caller sees the source's error.
            log.debug("request body source failed endpoint=%s:%d error=%r", *self.endpoint, exc)
            self._fail(exc, None)
            self.abort()

    def _complete(self) -> None:
        """The response is complete on the wire (a parser callback): the exchange is over,
        and `_settle` follows once the rest of the read is parsed."""
        self._ended = self._receiver
        self._receiver = None
        self._request = None
        self.busy = False
        self._settling = True
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _settle(self) -> None:
        """After the read that completed a response: reuse the connection if we can (not if
        anything followed the response: it is closing then), then tell the receiver. The
        receiver hears last, so that a request it sends at once can take this connection."""
        self._settling = False
        receiver, self._ended = self._ended, None
        transport = self.transport
        if not self._sent:
            # An early response (before the whole request body went out): Go and Envoy both
            # close such a connection rather than keep sending a body nobody reads.
            self.abort()
        elif self.upgraded:
            pass
        elif self._keep_alive and transport is not None and not transport.is_closing():
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

    def read_expired(self, timeout_ms: int) -> None:
        """The pool's read sweep: the upstream has been silent for `timeout_ms`."""
        what = "response head" if not self._headed else "more of the response body"
        log.debug("upstream silent endpoint=%s:%d waiting=%s", *self.endpoint, what)
        self._fail(UpstreamReadTimeout(self.endpoint, f"no {what} within {timeout_ms} ms"), None)
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


class OutgoingRequest:
    """What `start()` sends, kept for the one resend after a stale pooled connection."""

    __slots__ = ("body", "deadline", "head", "method", "timeout_s", "upgrade")

    def __init__(
        self,
        head: bytes,
        body: bytes | AsyncIterator[bytes],
        method: str,
        deadline: float | None,
        timeout_s: float | None,
        upgrade: bool = False,
    ) -> None:
        self.head = head
        self.body = body
        self.method = method
        self.upgrade = upgrade
        """The head asks for an upgrade: the one kind of request a 101 may answer."""
        self.deadline = deadline
        """Loop time by which the whole response must have arrived (None: no limit)."""
        self.timeout_s = timeout_s


def log_crash(task: asyncio.Task[None]) -> None:
    """Done callback of a task nobody awaits (a body sender, a connect): log its crash."""
    if not task.cancelled() and task.exception() is not None:
        log.error("task crashed task=%s", task.get_name(), exc_info=task.exception())
