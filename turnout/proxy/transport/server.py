"""`serve_http`: the listener. One `HttpServerProtocol` per client connection, parsing with
httptools (llhttp, in C) and answering in request order.

```
connection_made ─► Limits.max_connections, then accept(conn_info) ─► False: closed
data_received ─► HttpRequestParser ─► on_url/on_header ─► on_headers_complete (head caps: 431,
      │              │                  there or at the end of a read inside the head)
      │              │                  ─► IncomingRequest + ExchangeWriter ─► _start or queued
      │              └─► on_body ─► BodyStream ─► handler reads body (pause_reading above
      │                                            Limits.read_high_water)
      ├─ the HTTP/2 preface first, with `Listener.http2`: that protocol takes the
      │  connection over (`_hand_over_http2`; without one: 505)
      ├─ refused (`refusals`): 400, 501, 505; header timeout: 408 (answered after the
      │  requests before it, then close)
      ├─ upgrade request: bytes after its head are held for the tunnel
      └─ h2c upgrade: the head is parsed again without it, by a new parser (`_after_upgrade`)
```

`HttpServerProtocol` is the reading half: its parser callbacks build each request as the
head is parsed (the headers the transport itself reads, Host, Content-Length,
Transfer-Encoding, Expect, Upgrade, Connection, are noted and checked on the way, and
headers stay undecoded bytes). The rest of a connection's life, one handler at a time,
pipelining, timers and output, is `downstream.DownstreamConnection`, which it extends, and
each answer's bytes are `writer.ExchangeWriter`'s. Connections are counted and reported
through `ConnectionHooks`; `accept` is the place for the inbound policy check (who may
connect; with TLS, the peer identity too): it runs once per connection before any byte is
read.

Deliberately not here: routing and everything else about what to answer (the handler's),
HTTP/2 (and its h2c upgrade), CONNECT (answered 400), request trailers (parsed and
dropped), and TLS itself: `loop.create_server` runs the handshake, `tls.py` chooses the
certificate, and the connection only learns the chosen listener once it is made.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as _ssl
from typing import cast

import httptools

from turnout.proxy.errors import ClientError
from turnout.proxy.transport.downstream import DownstreamConnection, Http2Takeover, Listener
from turnout.proxy.transport.heads import ORDINARY_NAMES
from turnout.proxy.transport.messages import (
    NO_TLS_FROM_REMOTE,
    TLS_DISABLED,
    Accept,
    ConnectionHooks,
    ConnectionInfo,
    Handler,
    IncomingRequest,
    Limits,
    RawPairs,
    RequestBody,
    TlsStatus,
    client_tls,
    hook_open,
)
from turnout.proxy.transport.refusals import (
    Refused,
    check_transfer_coding,
    check_version,
    drop_http2_settings,
    is_http2_preface,
    plain_head,
    status_for,
    without_h2c,
)
from turnout.proxy.transport.streams import BodyStream
from turnout.proxy.transport.tls import TlsSlot
from turnout.proxy.transport.writer import ExchangeWriter

log = logging.getLogger(__name__)

CLIENT_ID_HEADER = b"l5d-client-id"
REQUIRE_ID_HEADER = b"l5d-require-id"
"""Linkerd's per-request require-mTLS header: noted, never forwarded
(`IncomingRequest.require_id`)."""
READ_NAMES = frozenset(
    {
        b"host",
        b"expect",
        b"upgrade",
        b"connection",
        b"content-length",
        b"transfer-encoding",
        REQUIRE_ID_HEADER,
    }
)
"""The request headers the listener itself reads (`on_header`), lower-cased."""
MESH_READ_NAMES = READ_NAMES | {CLIENT_ID_HEADER}
"""And l5d-client-id, on a mesh TLS listener (where the transport owns that header)."""
_SPECIAL_LENGTHS = frozenset(map(len, READ_NAMES))
"""Only a header of one of these lengths is lower-cased and compared (`on_header`)."""
_MESH_LENGTHS = frozenset(map(len, MESH_READ_NAMES))
_CLOSED_PARSER = httptools.HttpRequestParser(object())
"""A closed connection's parser: it calls nothing back (`_drop_parser`)."""
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}


class HttpServerProtocol(DownstreamConnection):
    """One client connection (see the module docstring)."""

    def __init__(self, listener: Listener, original_dst: tuple[str, int] | None = None) -> None:
        super().__init__(listener)
        self._original_dst = original_dst
        self.parser = httptools.HttpRequestParser(self)
        # the head being parsed
        self._url = b""
        self._headers: RawPairs = []
        self._host: str | None = None  # None: no Host header (yet)
        self._content_length: int | None = None
        self._coding: bytes | None = None  # the Transfer-Encoding value
        self._expect = False
        self._connection = False
        self._framed = False  # a header the framing depends on was seen (`_framing`)
        self._upgrade: str | None = None
        self._head_size = 0  # the request-target's (the headers': `_check_head`)
        self._head_raw = 0
        self._head_new = False
        self._read_size = 0  # bytes of the read being parsed
        self._spanned = 0  # bytes of the reads before it that the head being parsed spans
        self._dropped = 0  # header fields of the head not kept in `_headers`
        self._dropped_size = 0
        self._max_head = self.limits.max_header_bytes
        self._max_count = self.limits.max_header_count
        self._no_body = RequestBody(self._empty_stream, None)
        self._plain_head: bytes | None = None  # an h2c upgrade's head, to parse again
        self._special = _SPECIAL_LENGTHS if listener.mesh is None else _MESH_LENGTHS
        self._client_id = b""  # mesh TLS: the verified client identity
        self._peer_tls: TlsStatus = TLS_DISABLED  # mesh TLS: the labels, once per connection
        self._require_id: str | None = None

    # -- asyncio.Protocol (connection_lost and the writing side: DownstreamConnection) --------

    def _drop_parser(self) -> None:
        self.parser = _CLOSED_PARSER

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.peer, self.local = (peer[0], peer[1]), (local[0], local[1])
        self.info = info = ConnectionInfo("inbound", self.peer, self.local)
        info.original_dst = self._original_dst
        listener = self.listener
        listener.open += 1
        self._counted = True
        if listener.conns is not None:
            listener.conns.add(self)  # for the drain on stop (`h2_drain`)
        if listener.tls is not None:
            # the handshake is over (`ssl=` of create_server): which listener did SNI choose?
            self.chain = listener.tls.session(transport.get_extra_info("ssl_object"))
            if self.chain is None:
                log.debug("tls connection without a chosen listener closed peer=%s", self.peer)
                hook_open(listener.hooks, info)  # every close is paired with an open
                transport.abort()
                return
        elif listener.mesh is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            self._peer_tls = NO_TLS_FROM_REMOTE
            if ssl_object is not None:
                info.tls = True
                info.client_id = listener.mesh.peer_identity(ssl_object)
                self._client_id = info.client_id.encode("ascii")
                self._peer_tls = client_tls(info.client_id)
        info.tls_status = self._peer_tls
        hook_open(listener.hooks, info)  # after TLS: the metrics label the connection by it
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
        info: ConnectionInfo = self.info  # type: ignore[assignment]  # connection_made's
        size = len(data)
        info.bytes_read += size
        if self._stopped:  # (so is every upgraded connection: `_on_upgrade`)
            if self._tunnel is not None:
                self._tunnel.send(data)
            elif self._upgraded:
                self._tunnel_buffer.append(data)
            return
        # bytes of a new request: unless its head is complete in them, it has the header
        # timeout to send the rest (from here; a whole head never needs the timer)
        fresh = self._active is None and self._parsing is None and not self._in_head
        heads = info.requests
        self._head_new = False
        self._read_size = size
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if not self._after_upgrade(data, exc.args[0]):
                return
        except httptools.HttpParserError as exc:
            self._on_parse_error(exc, data)
            return
        if fresh and info.requests == heads and not self.closed:
            self._arm(self.limits.header_timeout_ms, self._on_header_timeout)
        if self._in_head:
            self._head_goes_on(size)

    def _head_goes_on(self, size: int) -> None:
        """A read ended inside a request head: the caps, on what it holds so far (and raw
        bytes: a header is buffered inside httptools until it ends, so count those too)."""
        if not self._head_new:
            self._head_raw += size
            if self._head_raw > self._max_head:
                self._on_bad_input(431, None)
                return
        self._spanned += size
        if self._over_caps():
            self._on_bad_input(431, None)

    def _after_upgrade(self, data: bytes, offset: int) -> bool:
        """llhttp stopped at `offset` after an upgrade request's head: the tunnel's bytes
        follow; or, when that upgrade was h2c only (`_without_h2c`), a new parser reads
        the head again as a plain request, then the rest. False: parsing has stopped."""
        while True:
            rest = data[offset:]
            head, self._plain_head = self._plain_head, None
            if head is None:
                self._on_upgrade(rest)
                return False
            self.parser = httptools.HttpRequestParser(self)
            data = head + rest
            try:
                self.parser.feed_data(data)
                return True
            except httptools.HttpParserUpgrade as exc:
                offset = exc.args[0]
            except httptools.HttpParserError as exc:
                self._on_parse_error(exc, data)
                return False

    def _on_parse_error(self, exc: httptools.HttpParserError, data: bytes) -> None:
        info = self.info
        takeover = self.listener.http2
        if (
            takeover is not None
            and info is not None
            and info.requests == 0
            and info.bytes_read == len(data)  # every byte of the connection is in `data`
            and is_http2_preface(exc)
        ):
            self._hand_over_http2(takeover, info, data)
            return
        status = status_for(
            exc,
            data,
            coding_seen=self._coding is not None,
            version=self.parser.get_http_version(),
        )
        self._on_bad_input(status, exc)

    def _hand_over_http2(self, takeover: Http2Takeover, info: ConnectionInfo, data: bytes) -> None:
        """The connection opened with the HTTP/2 preface: `takeover`'s protocol serves it
        from here (the bytes replayed) and owns its end; this one only lets go."""
        transport = self.transport
        assert transport is not None
        self._stopped = self.closed = True
        self._cancel_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._counted = False  # `Listener.open` and hook_close are the new protocol's now
        if self.listener.conns is not None:
            self.listener.conns.discard(self)  # an HTTP/2 one now, drained as such
        log.debug("http/2 connection handed over peer=%s", self.peer)
        proto = takeover(transport, info, self.listener, data)
        transport.set_protocol(proto)
        if not transport.is_closing():
            proto.data_received(data)

    def eof_received(self) -> bool | None:
        # A client's FIN is taken as a disconnect, as nginx does (`proxy_ignore_client_abort
        # off`): a proxy must not keep upstream work going for a client that left. The cost:
        # a client that half-closes after its request gets no answer.
        return False

    # -- httptools callbacks -----------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        if not self._in_head:
            # a new request head starts: its first callback (one less per request than
            # `on_message_begin`)
            self._in_head = self._head_new = True
            self._url = url
            self._headers = []
            self._host = self._content_length = self._upgrade = self._coding = None
            self._require_id = None
            self._expect = self._connection = self._framed = False
            self._head_size = len(url)
            self._head_raw = self._spanned = self._dropped = self._dropped_size = 0
            if self._head_size > self._max_head:
                raise Refused(414, "request target over max_header_bytes")
            return
        self._url += url
        self._head_size += len(url)
        if self._head_size > self._max_head:
            raise Refused(414, "request target over max_header_bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a trailer: dropped
        # (the caps, max_header_bytes and max_header_count: `_over_caps`, at the head's end)
        n = len(name)
        if n in self._special and name not in ORDINARY_NAMES:
            # the headers the transport itself reads, noted as they are parsed
            lname = name.lower()
            if lname == b"host":
                if self._host is not None:  # RFC 9112 §3.2: more than one Host is a 400
                    raise Refused(400, "more than one Host header")
                self._host = value.decode("latin-1")
            elif lname == b"content-length":
                self._content_length = int(value)
                self._framed = True
            elif lname == b"transfer-encoding":
                if self._coding is not None:  # nginx: a repeated Transfer-Encoding is a 400
                    raise Refused(400, "more than one Transfer-Encoding header")
                self._coding = value
                self._framed = True
            elif lname == b"expect":
                self._expect = value.lower() == b"100-continue"
                self._framed = True
            elif lname == b"upgrade":
                self._upgrade = value.decode("latin-1")
                self._framed = True
            elif lname == b"connection":
                self._connection = self._framed = True
            elif lname == CLIENT_ID_HEADER:
                self._drop(name, value)
                return  # only on a mesh listener: the client's own is never believed
            elif lname == REQUIRE_ID_HEADER:
                self._require_id = value.decode("latin-1").strip()
                self._drop(name, value)
                return
        self._headers.append((name, value))

    def _drop(self, name: bytes, value: bytes) -> None:  # a field not kept: for the caps
        self._dropped += 1
        self._dropped_size += len(name) + len(value) + 4

    def _over_caps(self) -> bool:
        """The head so far has more than max_header_count fields, or more than
        max_header_bytes in its request-target and fields (each counted as name, value and
        4 more bytes); added up only when the reads it spans could hold that many."""
        headers = self._headers
        if len(headers) + self._dropped > self._max_count:
            return True
        if self._spanned + self._read_size <= self._max_head:
            return False
        size = self._head_size + self._dropped_size
        for name, value in headers:
            size += len(name) + len(value) + 4
        return size > self._max_head

    def on_headers_complete(self) -> None:
        self._in_head = False
        headers = self._headers
        if (
            len(headers) > self._max_count
            or self._spanned + self._read_size > self._max_head
            or self._dropped
        ) and self._over_caps():  # (the exact figures: only when they could be over)
            raise Refused(431, "request head over max_header_bytes or max_header_count")
        parser = self.parser
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        keep_alive = parser.should_keep_alive()
        host = self._host
        if not self._framed and keep_alive and method != "CONNECT":
            # the common head: no framing header, so no body, no upgrade, and HTTP/1.1 (of
            # those llhttp takes, the one kept alive without a Connection header asking so)
            if host is None:
                # RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host
                raise Refused(400, "HTTP/1.1 request without a Host header")
            version = "1.1"
            upgrade = None
            body, stream = self._no_body, self._empty_stream
            expect = False
        else:
            framing = self._framing(raw_method, method, keep_alive)
            if framing is None:
                return  # parsed again as a plain request (`_after_upgrade`)
            version, upgrade, body, stream, expect = framing
            if host is None:
                host = ""
        target = self._url.decode("latin-1")
        path, _, query = target.partition("?")
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
            self.chain,
            self._peer_tls,
            self.info,
        )
        if self._require_id is not None:
            request.require_id = self._require_id
        if self._client_id:
            headers.append((CLIENT_ID_HEADER, self._client_id))
            request.client_id = self.info.client_id  # type: ignore[union-attr]
        exch = ExchangeWriter(self, request, stream)
        if expect:
            stream.on_first_read = exch.send_continue
        self.info.requests += 1  # type: ignore[union-attr]  # connection_made's
        self._parsing = exch
        if self._active is None:
            # `_start`, inlined: once per request
            self._active = exch
            self._due = 0.0
            try:
                answer = self.listener.handler(request, exch)
            except Exception as exc:
                self._handler_failed(exch, exc)
                self._done(exch)
                return
            if answer is not None:
                exch.task = self.loop.create_task(self._run(exch, answer))
        else:
            self._queue.append(exch)
            if len(self._queue) >= self.limits.max_pipelined:
                self._update_reading()

    def _framing(
        self, raw_method: bytes, method: str, keep_alive: bool
    ) -> tuple[str, str | None, RequestBody, BodyStream, bool] | None:
        """Any other head (a framing header, not kept alive, CONNECT): its version, upgrade,
        body, stream and whether to send 100 Continue at the body's first read; None: an
        h2c upgrade, to be parsed again as a plain request."""
        parser = self.parser
        content_length = self._content_length
        coding = self._coding
        has_body = coding is not None or (content_length is not None and content_length > 0)
        upgrade = self._upgrade
        if keep_alive and not self._connection:
            version = "1.1"  # (spares the parser's costly version string: see the caller)
        else:
            version = parser.get_http_version()
            check_version(version)
        if self._host is None and version == "1.1":  # RFC 9112 §3.2 (on_headers_complete)
            raise Refused(400, "HTTP/1.1 request without a Host header")
        if coding is not None:
            check_transfer_coding(coding, version)
        if (upgrade is not None or method == "CONNECT") and parser.should_upgrade():
            if method == "CONNECT":
                raise ValueError("CONNECT is not supported")  # 400 via the callback error
            if upgrade is not None and "h2c" in upgrade.lower():
                upgrade = self._without_h2c(upgrade, raw_method, version)
                if upgrade is None:
                    return None
            has_body = False
        else:
            upgrade = None
        limits = self.limits
        body: RequestBody
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
        expect = self._expect and has_body and version == "1.1"
        return version, upgrade, body, stream, expect

    def _without_h2c(self, upgrade: str, method: bytes, version: str) -> str | None:
        """Take `h2c` out of an upgrade request (see `refusals`): the other tokens, or
        None when there are none: the head is then kept to be parsed again as a plain
        request once llhttp has stopped after it."""
        rest = without_h2c(upgrade)
        if rest is None:
            self._plain_head = plain_head(method, self._url, version, self._headers)
        else:
            drop_http2_settings(self._headers)
        log.debug("h2c upgrade removed peer=%s upgrade=%.100s", self.peer, rest)
        return rest

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

    def _on_upgrade(self, rest: bytes) -> None:
        self._upgraded = self._stopped = True
        self._parsing = None
        if rest:
            self._tunnel_buffer.append(rest)
        self.set_reading(tunnel=False)  # until the handler splices (or declines) the tunnel


def _body_timeout() -> ClientError:
    return ClientError(408, "request body timed out")


async def serve_http(
    handler: Handler,
    *,
    host: str,
    port: int,
    limits: Limits | None = None,
    ssl: _ssl.SSLContext | None = None,
    tls: TlsSlot | None = None,
    hooks: ConnectionHooks | None = None,
    accept: Accept | None = None,
    backlog: int = 1024,
    reuse_port: bool = False,
    sock: socket.socket | None = None,
    http2: Http2Takeover | None = None,
) -> asyncio.Server:
    """Listen on `host:port` (0: any free port; see `server.sockets`), or on the bound
    `sock`, and serve HTTP/1.1.

    `limits` defaults to `Limits()`. `tls` terminates TLS with SNI-chosen certificates
    (`tls.py`; each request then carries its listener's chain); `ssl` is a fixed context
    handed to `loop.create_server` as is (one of the two at most). The handshake gets
    `Limits.header_timeout_ms`. `hooks` sees every connection open and close; `accept` is
    the inbound policy check (see the module docstring). `http2` takes over a connection
    opening with the HTTP/2 preface (`Http2Takeover`; None: 505). Closing the returned server stops
    accepting; open connections end on their own (keep-alive timeout), or are drained by
    the takeover's keeper (`h2_drain.H2Connections`, HTTP/1.1 ones too).
    """
    if ssl is not None and tls is not None:
        raise ValueError("serve_http takes ssl or tls, not both")
    limits = limits or Limits()
    listener = Listener(handler, limits, hooks, accept, tls=tls, http2=http2)
    loop = asyncio.get_running_loop()
    context = tls.context if tls is not None else ssl
    timeout = None if context is None else limits.header_timeout_ms / 1000

    def factory() -> HttpServerProtocol:
        return HttpServerProtocol(listener)

    if sock is not None:
        server = await loop.create_server(
            factory, sock=sock, ssl=context, ssl_handshake_timeout=timeout, backlog=backlog
        )
    else:
        server = await loop.create_server(
            factory,
            host,
            port,
            ssl=context,
            ssl_handshake_timeout=timeout,
            backlog=backlog,
            reuse_port=reuse_port or None,
        )
    log.info(
        "listening host=%s port=%d tls=%s",
        host,
        server.sockets[0].getsockname()[1],
        "off" if context is None else "on",
    )
    return server
