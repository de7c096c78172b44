"""The values that cross the transport boundary (docs/proxy.md, "Contracts between them").

```
transport.server ──IncomingRequest(body: RequestBody)──► handler ──► ResponseWriter (writer)
handler ──UpstreamPool.send(head, receiver)──► transport.client ──► ResponseReceiver.on_head/
                                                                    on_body/on_end/on_error
        ──UpstreamPool.request()/upgrade()──► UpstreamResponse, UpstreamTunnel ──► tunnel()
both sides ──ConnectionInfo──► ConnectionHooks (metrics: TCP opens, closes, bytes)
```

Headers are `list[tuple[str, str]]`, names in the case received, values decoded as latin-1
(the bytes on the wire, one to one); `RawHeaders` keeps an upstream's response undecoded.
The handler passes end-to-end headers only: framing (`Content-Length`, `Transfer-Encoding`)
and hop-by-hop headers (`HOP_BY_HOP`) belong to the transport, which drops any it is given
and writes its own. The seams are `Protocol`s (`ResponseWriter`, `ResponseReceiver`,
`UpstreamHandle`, `UpstreamTunnel`, `TunnelEnd`, `ConnectionHooks`), so this module imports
no other transport module but `streams`: the listener and the pool both build on it.

Not here: any I/O, HTTP parsing or head encoding (`heads`), and the classes that implement
the protocols (`writer.ExchangeWriter`, `upstream.UpstreamConnection`,
`upgraded.UpgradedConnection`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from turnout.proxy import config
from turnout.proxy.transport.streams import BodyStream
from turnout.proxy.transport.tls import Chain

log = logging.getLogger(__name__)

Headers = list[tuple[str, str]]
RawPairs = list[tuple[bytes, bytes]]
Address = tuple[str, int]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "expect",
    }
)
"""Lowercase names the transport owns (RFC 9110 §7.6.1 plus framing and `Expect`)."""

HOP_BY_HOP_BYTES = frozenset(name.encode() for name in HOP_BY_HOP)

TlsStatus = tuple[str, str, str]
"""A connection's mesh TLS status, as Linkerd labels it (`app/core/src/transport/labels.rs`):
``(tls, name, value)``, e.g. ``("true", "client_id", "web.shop.serviceaccount...")``,
``("no_identity", "no_tls_reason", "no_tls_from_remote")`` or ``("disabled", "", "")``. Made
once per connection (inbound) or endpoint (outbound); a tuple, so equal statuses key the
metrics caches alike."""
TLS_DISABLED: TlsStatus = ("disabled", "", "")
"""This proxy has no identity: mesh TLS is off."""
NO_TLS_FROM_REMOTE: TlsStatus = ("no_identity", "no_tls_reason", "no_tls_from_remote")
"""Inbound, on a proxy with an identity: the client sent plaintext."""


def client_tls(client_id: str) -> TlsStatus:
    """Inbound, TLS terminated: the client's identity ("" when it sent no certificate)."""
    return ("true", "client_id", client_id)


class RawHeaders:
    """Response headers as an upstream sent them, undecoded and already checked by the
    parser (no CR or LF inside): the end-to-end ones as `lines`, the hop-by-hop and framing
    ones (`HOP_BY_HOP`) apart in `hop`. A `ResponseWriter` writes `lines` to the client as
    they are; `pairs` and `decode()` are for whoever needs to look."""

    __slots__ = ("hop", "lines")

    def __init__(self, lines: list[bytes], hop: RawPairs | None = None) -> None:
        self.lines = lines
        """Ready to join into a head: name, b": ", value, b"\\r\\n" for each header, in
        order."""
        self.hop: RawPairs = [] if hop is None else hop

    @property
    def pairs(self) -> RawPairs:
        """The end-to-end headers as (name, value)."""
        lines = self.lines
        return list(zip(lines[0::4], lines[2::4], strict=True))

    def decode(self) -> Headers:
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in (*self.pairs, *self.hop)]

    def content_length(self) -> bytes | None:
        """The Content-Length value as sent, None when there is none."""
        for name, value in self.hop:
            if name.lower() == b"content-length":
                return value
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What one listener tolerates from its clients. Defaults: `turnout.proxy.config`."""

    max_header_bytes: int = config.DEFAULT_MAX_HEADER_BYTES
    """Request line plus headers, in bytes; more is answered 431 (414 when the request-target
    alone is over it) and the connection closed."""
    max_header_count: int = config.DEFAULT_MAX_HEADER_COUNT
    """Header fields per request; more is answered 431 and the connection closed."""
    header_timeout_ms: int = config.DEFAULT_HEADER_TIMEOUT_MS
    """Milliseconds from a request's first byte to its last header; then 408 and close."""
    body_timeout_ms: int | None = config.DEFAULT_BODY_TIMEOUT_MS
    """Milliseconds a body read may wait for the next bytes (None: no limit); on expiry the
    read raises `ClientError(408)`."""
    keepalive_timeout_ms: int = config.DEFAULT_KEEPALIVE_TIMEOUT_MS
    """Milliseconds an idle connection (no request in progress) is kept open."""
    send_timeout_ms: int | None = config.DEFAULT_SEND_TIMEOUT_MS
    """Milliseconds a write may wait for a slow client to read (None: no limit); then abort."""
    max_pipelined: int = config.DEFAULT_MAX_PIPELINED
    """Parsed requests waiting behind the current one before reading pauses."""
    read_high_water: int = config.DEFAULT_READ_HIGH_WATER
    """Buffered body bytes per message above which reading pauses (back-pressure)."""
    max_connections: int | None = config.DEFAULT_MAX_CONNECTIONS
    """Client connections kept at once by one listener; None means no limit. Connections
    over the limit are closed as soon as they are accepted."""
    h2_max_concurrent_streams: int = config.DEFAULT_H2_MAX_CONCURRENT_STREAMS
    """HTTP/2: streams one client connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS);
    a stream over it is refused (RST_STREAM(REFUSED_STREAM), safe to retry)."""
    h2_initial_window: int = config.DEFAULT_H2_INITIAL_WINDOW
    """HTTP/2: bytes of request body a client may send on a stream before the handler has
    read them (SETTINGS_INITIAL_WINDOW_SIZE): the per-stream buffer bound."""
    h2_connection_window: int = config.DEFAULT_H2_CONNECTION_WINDOW
    """HTTP/2: the same for all streams of a connection together (its WINDOW_UPDATE)."""


class ConnectionInfo:
    """One TCP connection, as the metrics see it. Counters are updated in place while the
    connection lives; read them in `on_connection_close` for the final values."""

    __slots__ = (
        "authz",
        "bytes_read",
        "bytes_written",
        "client_id",
        "destination",
        "direction",
        "local",
        "metrics",
        "opened_at",
        "original_dst",
        "peer",
        "requests",
        "tls",
        "tls_status",
    )

    def __init__(
        self, direction: Literal["inbound", "outbound"], peer: Address, local: Address
    ) -> None:
        self.direction: Literal["inbound", "outbound"] = direction
        """"inbound": a client of our listener; "outbound": a pooled upstream connection."""
        self.peer = peer
        """The other end: the client's address, or the upstream endpoint."""
        self.local = local
        """Our end: the listener's address, or the local address of the upstream socket."""
        self.opened_at = asyncio.get_running_loop().time()
        """Loop time (seconds) when the connection was established."""
        self.bytes_read = 0
        """Bytes received so far (raw TCP payload, headers included)."""
        self.bytes_written = 0
        """Bytes handed to the transport so far (raw TCP payload)."""
        self.requests = 0
        """Requests carried: received (inbound) or sent (outbound)."""
        self.tls = False
        """Mesh TLS: the inbound connection was TLS terminated with this proxy's identity
        (`MeshTls`), or the upstream one was originated with it."""
        self.client_id = ""
        """Inbound mesh TLS: the client certificate's identity ("": none, or plaintext)."""
        self.authz: object = None
        """Inbound authorization's per-connection state (`inbound_guard.py`); None: none yet."""
        self.tls_status: TlsStatus = TLS_DISABLED
        """Linkerd's TLS labels of the connection (set before `on_connection_open`)."""
        self.metrics: object = None
        """The metrics' per-connection key (`telemetry.TcpHooks`)."""
        self.original_dst: Address | None = None
        """``--transparent``: where the client connected before iptables redirected it
        (`original_dst.py`), read once at accept; None: not redirected, or not asked."""
        self.destination: tuple[str, str] | None = None
        """``--transparent``, outbound bytes forwarded to a known Service (or endpoint): its
        namespace and name, the metrics' ``dst_namespace``/``dst_service`` ("" for a pod)."""

    def __repr__(self) -> str:
        return (
            f"ConnectionInfo({self.direction} peer={self.peer} local={self.local}"
            f" read={self.bytes_read} written={self.bytes_written} requests={self.requests})"
        )


class ConnectionHooks(Protocol):
    """Connection lifecycle callbacks, for metrics. Called on the event loop; they must not
    block or raise (an exception is logged and ignored)."""

    def on_connection_open(self, conn: ConnectionInfo) -> None:
        """A TCP connection was accepted (inbound) or connected (outbound)."""

    def on_connection_close(self, conn: ConnectionInfo, error: BaseException | None) -> None:
        """The connection is closed; `error` is why (None for an orderly close). Called once
        for every `on_connection_open`."""


def hook_open(hooks: ConnectionHooks | None, conn: ConnectionInfo) -> None:
    """Call `hooks.on_connection_open`, logging (not raising) a crash."""
    if hooks is not None:
        try:
            hooks.on_connection_open(conn)
        except Exception:
            log.exception("connection hook failed hook=open conn=%r", conn)


def hook_close(
    hooks: ConnectionHooks | None, conn: ConnectionInfo, error: BaseException | None
) -> None:
    """Call `hooks.on_connection_close`, logging (not raising) a crash."""
    if hooks is not None:
        try:
            hooks.on_connection_close(conn, error)
        except Exception:
            log.exception("connection hook failed hook=close conn=%r", conn)


class TunnelEnd(Protocol):
    """One side of a spliced byte tunnel (`ResponseWriter.tunnel`): bytes that arrive on the
    other side are `send()` here, and each side pauses the other's reading when its own write
    buffer is full."""

    def send(self, data: bytes) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...


class UpstreamTunnel(TunnelEnd, Protocol):
    """The upstream end of a tunnel after its `101 Switching Protocols`, as
    `ResponseWriter.tunnel` splices it (`upgraded.UpgradedConnection` is the one there is)."""

    @property
    def response(self) -> UpstreamResponse:
        """The upstream's 101 response (its headers carry e.g. `Sec-WebSocket-Accept`)."""

    @property
    def protocol(self) -> str:
        """The `Upgrade` value the upstream agreed to ("websocket")."""

    def attach(self, peer: TunnelEnd) -> None:
        """Send everything the upstream sends (bytes it sent before, first) to `peer`."""

    async def wait_closed(self) -> None: ...


class UpstreamHandle(Protocol):
    """An exchange in flight (`UpstreamPool.send`), as its receiver controls it."""

    def cancel(self, receiver: ResponseReceiver, /) -> None:
        """Give the exchange up: the connection is closed unless the response is complete."""

    def pause_reading(self) -> None:
        """Stop reading the response (the client is slow); the upstream is held back too."""

    def resume_reading(self) -> None: ...


class ResponseReceiver(Protocol):
    """Where an upstream exchange reports (`UpstreamPool.send`): `on_head` once, then
    `on_body` per chunk, then `on_end`; or `on_error` at any point, once, instead of what is
    left. Called on the event loop, never from inside `send()`; they must not raise (a raise
    is logged and ends the exchange with an error)."""

    def on_head(
        self,
        conn: UpstreamHandle,
        status: int,
        headers: RawHeaders,
        content_length: int | None,
        /,
    ) -> None:
        """The response head: `headers` as received (framing and hop-by-hop included);
        `content_length` as for `UpstreamResponse.content_length`."""

    def on_body(self, chunk: bytes, /) -> None: ...

    def on_end(self) -> None:
        """The whole response has arrived (the connection is already back in the pool)."""

    def on_error(self, error: BaseException, /) -> None:
        """`UpstreamConnectError`, `UpstreamTimeout`, `UpstreamProtocolError`, or the
        exception of a failing iterator request body."""

    # Optional, not part of the Protocol (the HTTP/1 pool never calls it): a receiver with
    # `on_trailers(self, trailers: RawPairs) -> None` gets an HTTP/2 response's trailers
    # (`h2_client.H2Pool`) between its last `on_body` and `on_end`.


class RequestBody:
    """The body of an `IncomingRequest`, streamed from the client connection.

    Reading it for the first time sends `100 Continue` when the client asked for it. Reads
    wait at most `Limits.body_timeout_ms` for more bytes and raise `ClientError` (408 on a
    timeout, 400 on a malformed chunked body, 499 when the client went away).
    """

    __slots__ = ("_stream", "content_length")

    def __init__(self, stream: BodyStream, content_length: int | None) -> None:
        self._stream = stream
        self.content_length = content_length
        """`Content-Length` of the request; None for a chunked body or none at all."""

    async def read(self, limit: int) -> bytes | None:
        """The whole body if it is at most `limit` bytes, else None; the body then stays
        streamable with `chunks()` from its start. A request without a body reads b""."""
        if self.content_length is not None and self.content_length > limit:
            return None
        return await self._stream.read_all(limit)

    def take(self, limit: int) -> bytes | None:
        """`read(limit)` without waiting: the whole body when it has all arrived and is at
        most `limit` bytes (an HTTP/2 unary call: HEADERS and DATA in one read); else
        None and nothing is consumed (`read` or `chunks` then)."""
        if self.content_length is not None and self.content_length > limit:
            return None
        return self._stream.take_all(limit)

    def chunks(self) -> AsyncIterator[bytes]:
        """The (rest of the) body, chunk by chunk, once."""
        return _Chunks(self._stream)

    @property
    def complete(self) -> bool:
        """The whole body has been received from the client (it may still be buffered:
        a pipelined request's body often has arrived whole before its turn; `exhausted`
        says whether anything is left to read)."""
        return self._stream.at_eof

    @property
    def exhausted(self) -> bool:
        """Nothing is left to read: the request has no body, or it has all been read."""
        stream = self._stream
        return stream.at_eof and not stream.buffered


class _Chunks:
    """A plain async iterator (not an async generator: nothing to finalize, and cheaper)."""

    __slots__ = ("_stream",)

    def __init__(self, stream: BodyStream) -> None:
        self._stream = stream

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        data = await self._stream.read_chunk()
        if not data:
            raise StopAsyncIteration
        return data


class IncomingRequest:
    """A request received by `serve_http`, handed to the handler once its head is parsed.

    Headers stay as the parser gave them (`raw_headers`, bytes) until someone reads
    `headers`: a request routed by path and forwarded as it came is never decoded.
    """

    __slots__ = (
        "_headers",
        "authority",
        "body",
        "client_id",
        "conn",
        "host",
        "keep_alive",
        "local",
        "method",
        "path",
        "peer",
        "peer_tls",
        "query",
        "raw_headers",
        "require_id",
        "target",
        "tls",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        path: str,
        query: str,
        raw_headers: RawPairs,
        host: str,
        version: str,
        keep_alive: bool,
        body: RequestBody,
        peer: Address,
        local: Address,
        upgrade: str | None,
        tls: Chain | None = None,
        peer_tls: TlsStatus = TLS_DISABLED,
        conn: ConnectionInfo | None = None,
    ) -> None:
        self.method = method
        """Request method, as sent ("GET")."""
        self.target = target
        """Raw request-target ("/p?q")."""
        self.path = path
        """The target before "?" ("/p")."""
        self.query = query
        """The target after "?" ("q"; "" when none)."""
        self.raw_headers = raw_headers
        """As received, undecoded: `(name, value)` bytes, checked by the parser."""
        self.host = self.authority = host
        """The Host header ("" when absent); `authority` too, as routing calls it."""
        self.version = version
        """HTTP version, "1.1" or "1.0"."""
        self.keep_alive = keep_alive
        """The connection stays open after this exchange (no `Connection: close`, or
        HTTP/1.0 with `Connection: keep-alive`)."""
        self.body = body
        """The request body; reads as b"" when there is none."""
        self.peer = peer
        """The client's address."""
        self.local = local
        """The listener's address."""
        self.upgrade = upgrade
        """The `Upgrade` header value when the request asks for one (`Connection: upgrade`)."""
        self.tls = tls
        """Received over TLS: the listener its handshake chose (`tls.py`); None: plain."""
        self.client_id = ""
        """Received over mesh TLS from a client whose certificate names this identity; the
        transport has then also put it in `l5d-client-id` (and dropped any the client sent)."""
        self.peer_tls = peer_tls
        """The connection's mesh TLS status (`TlsStatus`): the metrics and tap labels."""
        self.require_id: str | None = None
        """Linkerd's ``l5d-require-id``: the identity the outbound proxy must prove the
        endpoint has (mTLS to it, or a 502); the transport takes the header out of the
        request, so it is never forwarded. None: not asked."""
        self.conn = conn
        """The connection it arrived on (inbound listeners)."""
        self._headers: Headers | None = None

    @property
    def headers(self) -> Headers:
        """As received: names in their case, order kept, values latin-1 (decoded once, on
        first use)."""
        headers = self._headers
        if headers is None:
            headers = self._headers = [
                (n.decode("latin-1"), v.decode("latin-1")) for n, v in self.raw_headers
            ]
        return headers

    def replace_headers(self, raw: RawPairs) -> None:
        """Forward `raw` instead of what was received (the JWT filter's output headers);
        `headers` decodes them again on next use."""
        self.raw_headers[:] = raw
        self._headers = None

    def add_header(self, name: bytes, value: bytes) -> None:
        """Forward one more header (``traceparent`` on a request that carried no trace
        context: cheaper than `replace_headers`)."""
        self.raw_headers.append((name, value))
        self._headers = None

    def __repr__(self) -> str:
        return f"IncomingRequest({self.method} {self.target!r} host={self.host!r})"


class ResponseWriter(Protocol):
    """How a handler answers. Either `respond()` once, or `start()`, `write()`..., `end()`,
    or (for an upgrade request) `tunnel()`. Writes wait while the client is slow to read.

    A handler in callback mode (it returned None instead of an awaitable) uses the
    synchronous twins instead, which never wait: `send()` (as `respond`), or `begin()`,
    `push()`... and `close_body()`; then `complete()`, once, when it is done. When `push()`
    returns False the client's buffer is full: stop and wait for `on_writable`.
    """

    on_cancel: Callable[[], None] | None
    """Callback mode: called once if the client disconnects before `complete()`."""
    on_writable: Callable[[], None] | None
    """Callback mode: called when the client has read enough after `push()` said stop."""

    @property
    def started(self) -> bool:
        """The status line has been sent: no retry and no error page is possible any more."""

    async def respond(self, status: int, headers: Headers | RawHeaders, body: bytes) -> None:
        """Send a whole response (one socket write for head and body). The transport writes
        Content-Length; only when answering HEAD is a Content-Length in `headers` kept."""

    async def start(
        self, status: int, headers: Headers, *, content_length: int | None = None
    ) -> None:
        """Send the head of a streamed response. With `content_length` the body is sent as
        is, else chunked (HTTP/1.1) or delimited by closing the connection (HTTP/1.0)."""

    async def write(self, chunk: bytes) -> None:
        """Send a piece of the body started with `start()`."""

    async def end(self) -> None:
        """Finish the body started with `start()`."""

    async def tunnel(self, upstream: UpstreamTunnel, headers: Headers | None = None) -> None:
        """Answer `101 Switching Protocols` with `headers` (default: the upstream's 101
        headers) and splice bytes both ways until either side closes; returns then."""

    def send(self, status: int, headers: Headers | RawHeaders, body: bytes) -> None:
        """`respond()` without waiting for the client to read."""

    def begin(
        self, status: int, headers: Headers | RawHeaders, *, content_length: int | None = None
    ) -> None:
        """`start()` without waiting for the client to read."""

    def push(self, chunk: bytes) -> bool:
        """`write()` without waiting; False: the client's buffer is full (see `on_writable`).
        Raises `ClientError(499)` when the client is gone."""

    def close_body(self, trailers: RawPairs | None = None) -> None:
        """`end()` (it never waits). `trailers` (lower-case names) end the body: HTTP/2
        sends them in a last HEADERS frame (gRPC's grpc-status); HTTP/1.1 in the chunked
        body's trailer section when the client said `TE: trailers`, else they are dropped."""

    def complete(self) -> None:
        """Callback mode: the handler is done with this request (a response not started is
        answered 500; one not finished is ended)."""

    def abort(self) -> None:
        """Reset the client connection: a half-sent response that cannot be completed."""


Handler = Callable[[IncomingRequest, ResponseWriter], Awaitable[None] | None]
"""Answers one request through the writer, in one of two ways. It returns an awaitable (an
`async def` handler): the server runs it as a task, cancelled when the client disconnects;
if it raises before starting the response, the server answers 500 (`ClientError`: its
status) and logs. Or it returns None: it answers through the writer's synchronous calls
from callbacks of its own and calls `writer.complete()` at the end; `writer.on_cancel` is
called if the client disconnects first."""


class MeshTls(Protocol):
    """The proxy's identity as an inbound listener with TLS detection sees it
    (`detect.serve_detecting`; the proxy's `identity.IdentityState` is one)."""

    @property
    def server_context(self) -> ssl.SSLContext | None:
        """The context for the next handshake (None: no certificate yet, TLS refused)."""
        ...

    @property
    def client_context(self) -> ssl.SSLContext | None:
        """The context mesh TLS to an upstream uses (None: no certificate yet)."""
        ...

    def peer_identity(self, ssl_object: object) -> str:
        """The verified client identity of a handshake's ``ssl_object`` ("": none)."""
        ...

    @property
    def identity(self) -> str:
        """This proxy's identity: the SNI mesh clients send (another SNI is the app's own
        TLS, passed through: `detect.py`)."""
        ...


class PortGate(Protocol):
    """What an inbound port with detection asks of its policy per accepted connection
    (`detect.serve_detecting`; `inbound_guard.InboundGuard` is one)."""

    @property
    def mode(self) -> Literal["STRICT", "PERMISSIVE", "DISABLE"]:
        """STRICT: plaintext is refused; DISABLE: no detection, plaintext only."""
        ...

    @property
    def opaque(self) -> bool:
        """Forward the connection's bytes to the app as they are (no detection, no HTTP)."""
        ...

    def connection_allowed(self, conn: ConnectionInfo) -> bool:
        """An opaque connection's authorization (False: it is closed)."""
        ...

    def plaintext_refused(self, conn: ConnectionInfo) -> None:
        """STRICT closed a plaintext connection (for the metrics)."""
        ...


Accept = Callable[[ConnectionInfo], bool]
"""The inbound policy check of `serve_http`: once per connection, before any byte is read;
False (or a raise, logged) closes the connection."""


class UpstreamResponse:
    """A response from an upstream (`UpstreamPool.request`): the head, and the body streamed
    from the connection. The connection goes back to the pool as soon as the whole body has
    arrived; call `release()` in a `finally` to give up a body you do not read to the end."""

    __slots__ = ("_release", "_stream", "content_length", "headers", "status", "version")

    def __init__(
        self,
        *,
        status: int,
        headers: Headers,
        version: str,
        content_length: int | None,
        stream: BodyStream,
        release: Callable[[], None],
    ) -> None:
        self.status = status
        """Status code."""
        self.headers = headers
        """Headers as received, framing and hop-by-hop ones included (the writer drops
        those)."""
        self.version = version
        """HTTP version of the response, "1.1" or "1.0"."""
        self.content_length = content_length
        """Body length when known in advance (Content-Length; 0 for 204/304/101); None for
        chunked or close-delimited bodies. For a HEAD request: the length the upstream
        announced (None if it did not), while the body itself is empty."""
        self._stream = stream
        self._release = release

    def chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk, once. Raises `UpstreamProtocolError` when the
        connection breaks mid-body and `UpstreamTimeout` when the request deadline expires."""
        return _Chunks(self._stream)

    async def read(self) -> bytes:
        """The whole body."""
        data = await self._stream.read_all()
        assert data is not None
        return data

    def release(self) -> None:
        """Give up the rest of the body: if it has not fully arrived the connection is closed
        (never reused). Safe to call more than once, and after the body was read."""
        self._release()
