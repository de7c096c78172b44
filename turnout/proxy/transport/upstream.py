"""The reading half of an upstream HTTP/1.1 connection: `UpstreamConnection`, a
`pooled.PooledConnection` that parses responses with httptools; what it becomes after a
101 is `upgraded.UpgradedConnection`.

```
data_received ─► HttpResponseParser callbacks ─► receiver.on_head(self, status, RawHeaders,
   length), receiver.on_body(chunk)... ─► message complete: `_complete`, then `_settle`
   after the read (the pooled side)
   refused: bytes after the response or on an idle connection, a head over the caps, a 101
   to a request that asked no upgrade, malformed ─► UpstreamProtocolError, connection closed
   101 to an upgrade request ─► the bytes after it kept for the tunnel
```

The callbacks of one exchange never overlap, and one request is in flight at a time (no
pipelining), so a byte past the end of a response answers no request: the connection is
closed (its response still delivered), as is one that sends anything while idle; otherwise
the surplus would be read as the answer to the next request sent on it. A head over the
pool's `max_header_bytes` or `max_header_count` fails the exchange and closes the
connection; so do that many bytes in the reads one head spans (a header longer than a read,
which httptools would buffer whole), or in reads without a report after it (a trailer).
Headers the response's `Connection` header names are left out with the hop-by-hop ones.

Not here: the exchange and its endings (`pooled`), head encoding (`heads`), TLS, HTTP/2,
response trailers (parsed and dropped).
"""

from __future__ import annotations

import logging

import httptools

from turnout.proxy.errors import UpstreamProtocolError
from turnout.proxy.transport.heads import NO_BODY_STATUS, without_connection_options
from turnout.proxy.transport.messages import HOP_BY_HOP_BYTES, Address, RawHeaders, RawPairs
from turnout.proxy.transport.pooled import ConnectionPool, PooledConnection

log = logging.getLogger(__name__)


_HOP_LENGTHS = frozenset(len(name) for name in HOP_BY_HOP_BYTES)


_HEAD_TOO_LARGE = "response head over max_header_bytes or max_header_count"
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"upgrade"})
"""Connection values that name no other header (the common ones, checked in one lookup)."""


class _BadResponse(Exception):
    """Raised from a parser callback to end `feed_data`: the upstream broke the exchange's
    framing (the message is the `UpstreamProtocolError`'s). Outside the proxy's tree on
    purpose: it never leaves this module, which turns it into that error."""


_CLOSED_PARSER = httptools.HttpResponseParser(object())
"""A closed connection's parser: it calls nothing back (`_drop_parser`)."""


class UpstreamConnection(PooledConnection):
    """One upstream TCP connection: writes requests, parses responses, one at a time, and
    hands each response to the exchange's `ResponseReceiver`."""

    def _drop_parser(self) -> None:
        self.parser = _CLOSED_PARSER

    def __init__(self, pool: ConnectionPool, endpoint: Address) -> None:
        super().__init__(pool, endpoint)
        self.parser = httptools.HttpResponseParser(self)
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
        self._content_length: int | None = None
        self._chunked = False

    @property
    def version(self) -> str:
        """HTTP version of the response being parsed."""
        return self.parser.get_http_version()

    # -- asyncio.Protocol (the rest: the pooled side) ------------------------------------

    def data_received(self, data: bytes) -> None:
        size = self._read_size = len(data)
        self.info.bytes_read += size  # type: ignore[union-attr]  # connection_made's
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
        head_only = self._head_only
        if status >= 200 and not head_only and status not in NO_BODY_STATUS:
            # the common answer: a body, as framed
            self._interim = False
            self._keep_alive = parser.should_keep_alive()
            content_length = self._content_length
            self._until_eof = content_length is None and not self._chunked
        else:
            if 100 <= status < 200 and status != 101:
                self._interim = True  # 100 Continue, 103 Early Hints: not forwarded
                return
            self._interim = False
            self._keep_alive = parser.should_keep_alive()
            if status == 101:
                request = self._request
                if request is None or not request.upgrade:
                    # no tunnel to splice it to: the connection is neither HTTP nor ours
                    raise _BadResponse("101 to a request that asked no upgrade")
                self.upgraded = True  # feed_data raises HttpParserUpgrade right after this
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
