"""`ExchangeWriter`: one request on a client connection and the `ResponseWriter` that answers
it: heads, bodies (sized, chunked or close-delimited), `100 Continue` and the 101 of a tunnel.

```
handler ─► respond()/send()        one write: head + body (a relayed RawHeaders response
                                   read whole: status line + its lines + content-length)
        ─► start()/begin()         head with framing: content-length, chunked (1.1) or
           write()/push()...       close-delimited (1.0); each chunk "%x\r\n" ... "\r\n"
           end()/close_body()      "0\r\n\r\n", or a reset if fewer bytes than announced
        ─► tunnel(upstream)        101 head, then conn.splice(upstream) until either closes
        ─► complete()              callback mode: done (500 if nothing was answered)
every write ─► conn.write / conn.writelines (the listener's WriteBatch, counted bytes);
               awaiting calls wait in conn.flow.drain() while the client is slow to read
```

The connection line follows the exchange: `connection: close` when the request asked for
it, when the request body is still arriving (the rest is not read: see `downstream`), or
after a close-delimited body; `connection: keep-alive` for an HTTP/1.0 client that keeps it.
Hop-by-hop and framing headers a handler gives are dropped (`messages.HOP_BY_HOP`), except
a HEAD answer's Content-Length; CR or LF inside a header raises `ValueError`.

Not here: which request comes next, timers and what happens once an exchange is done
(`downstream.DownstreamConnection`, seen from here as `WriterConnection`), parsing
(`server`), the bytes of status lines and error answers (`heads`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from turnout.proxy.errors import ClientError
from turnout.proxy.transport.heads import CONTINUE, NO_BODY_STATUS, STATUS_BYTES, status_line
from turnout.proxy.transport.messages import (
    HOP_BY_HOP,
    HOP_BY_HOP_BYTES,
    Address,
    Headers,
    IncomingRequest,
    RawHeaders,
    RawPairs,
    UpstreamTunnel,
)
from turnout.proxy.transport.streams import BodyStream, WriteFlow

log = logging.getLogger(__name__)


_KEPT_LENGTHS = 1024
_LENGTH_LINES = [b"content-length: %d\r\n\r\n" % n for n in range(_KEPT_LENGTHS)]
"""The last line of a head for a body of each length under `_KEPT_LENGTHS`, made once
(`%d` formatting per response costs about 80 ns)."""


class WriterConnection(Protocol):
    """What an exchange writes through: its client connection
    (`downstream.DownstreamConnection`)."""

    flow: WriteFlow
    closed: bool
    peer: Address

    def write(self, data: bytes) -> None:
        """Held until the end of the loop's round (`batch.WriteBatch`)."""

    def writelines(self, *parts: bytes) -> None:
        """What is held first, then `parts`, now."""

    def close(self) -> None: ...
    def abort(self) -> None: ...

    async def splice(self, upstream: UpstreamTunnel) -> None:
        """Relay bytes both ways until either side closes."""

    def _answer_error(self, exch: ExchangeWriter, status: int) -> None:
        """Answer `status` in the transport's words, or reset a half-sent response."""

    def _done(self, exch: ExchangeWriter) -> None:
        """The exchange is over: the next request, keep-alive, or close."""


class ExchangeWriter:
    """One request on a connection and its `ResponseWriter` (see the module docstring)."""

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
        self, conn: WriterConnection, request: IncomingRequest, stream: BodyStream
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
        n = len(body)
        if (
            type(headers) is RawHeaders
            and request.method != "HEAD"
            and not self.must_close
            and request.version != "1.0"
            and self.stream.at_eof
            and status not in NO_BODY_STATUS
            and n < 65536
        ):
            # the common answer, a relayed response read whole: `_encode_raw_head` with no
            # Connection header to add, and the body, in one write
            line = STATUS_BYTES.get(status)
            length = _LENGTH_LINES[n] if n < _KEPT_LENGTHS else b"content-length: %d\r\n\r\n" % n
            parts = [line if line is not None else status_line(status).encode("latin-1")]
            parts += headers.lines
            parts += (length, body)
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
        if self.request.method == "HEAD" or status in NO_BODY_STATUS or not body:
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
        self.no_body = self.request.method == "HEAD" or status in NO_BODY_STATUS
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

    def close_body(self, trailers: RawPairs | None = None) -> None:
        if not self.started:
            raise RuntimeError("end() needs start() first")
        if self.finished:
            return
        self.finished = True
        if self.chunked and not self.conn.closed:
            if trailers and self._takes_trailers():
                lines = [b"%s: %s\r\n" % (n, v) for n, v in trailers if n not in HOP_BY_HOP_BYTES]
                self.conn.write(b"0\r\n" + b"".join(lines) + b"\r\n")
            else:
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
        parts = [status_line(status)]
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
        line = STATUS_BYTES.get(status)
        parts = [line if line is not None else status_line(status).encode("latin-1")]
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

    def _takes_trailers(self) -> bool:
        """The client asked for trailers (`TE: trailers`, RFC 9110 §10.1.4)."""
        return any(
            n.lower() == b"te" and b"trailers" in v.lower() for n, v in self.request.raw_headers
        )

    async def _drain(self) -> None:
        try:
            await self.conn.flow.drain()
        except TimeoutError:
            self.conn.abort()
            raise ClientError(408, "client too slow to read the response") from None

    def send_continue(self) -> None:
        """The handler started reading the body: tell the client to send it (RFC 9110 §10.1.1)."""
        if not self.started and not self.conn.closed:
            self.conn.write(CONTINUE)
