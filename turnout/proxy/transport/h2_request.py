"""The request side of an HTTP/2 stream: its `IncomingRequest`, made from the HEADERS the
client sent, and its body (`AckedBody`), acknowledged to the client as the handler reads it.

```
RequestReceived headers ─► request_from_headers, one pass: :method, :path; :authority (else
                           Host) as the host; the rest as raw_headers (pseudo-headers out,
                           cookies joined); gRPC? malformed (400)? over max_header_bytes /
                           max_header_count (431)?
DataReceived ─► AckedBody.take ─► the handler reads ─► conn.ack(stream, n): WINDOW_UPDATE
    never read (discarded, failed) ─► acknowledged at once, so the connection's window
    does not shrink for good
```

Not here: frames and events (`h2_server`), the response (`h2_stream`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from turnout.proxy.errors import ClientError
from turnout.proxy.transport.heads import H2_BAD_NAME, H2_BAD_VALUE, H2_CONNECTION_SPECIFIC
from turnout.proxy.transport.messages import (
    ConnectionInfo,
    IncomingRequest,
    Limits,
    RawPairs,
    RequestBody,
)
from turnout.proxy.transport.server import CLIENT_ID_HEADER, REQUIRE_ID_HEADER
from turnout.proxy.transport.streams import BodyStream

_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}


class Acknowledger(Protocol):
    """Who hands the window back (`h2_server.H2ServerConnection`)."""

    loop: asyncio.AbstractEventLoop
    limits: Limits

    def ack(self, stream_id: int, size: int) -> None:
        """`size` body bytes of the stream were read (or dropped)."""


def request_from_headers(
    headers: Iterable[tuple[bytes, bytes]],
    stream: BodyStream,
    info: ConnectionInfo,
    limits: Limits,
    *,
    mesh: bool = False,
) -> tuple[IncomingRequest, bool, int | None]:
    """The stream's request: pseudo-headers out, `:authority` as the Host, cookies joined
    (RFC 9113 §8.2.3); whether it is gRPC; and the status to refuse it with (None: none):
    431 when its headers are over the listener's limits, 400 when it is malformed (RFC 9113
    §8.2, §8.3: checked here in one pass, h2's own checks are off) or CONNECT (no tunnels
    over HTTP/2, as over HTTP/1). On a `mesh` TLS listener, `l5d-client-id` is the verified
    client identity (the client's own is dropped), as for HTTP/1; `l5d-require-id` is
    noted and never forwarded."""
    method = target = scheme = b""
    host: bytes | None = None
    authority: bytes | None = None
    raw: RawPairs = []
    cookies: list[bytes] = []
    size = 0
    grpc = malformed = regular = False
    pseudo: set[bytes] = set()
    require_id: str | None = None
    for name, value in headers:
        size += len(name) + len(value)
        if H2_BAD_VALUE.search(value) is not None:
            malformed = True
        if name[:1] == b":":
            if regular or name in pseudo:
                malformed = True  # pseudo-headers come first, each once
            pseudo.add(name)
            if name == b":method":
                method = value
            elif name == b":path":
                target = value
            elif name == b":authority":
                authority = value
            elif name == b":scheme":
                scheme = value
            else:
                malformed = True  # :status, :protocol (no extended CONNECT), unknown
            continue
        regular = True
        if not name or H2_BAD_NAME.search(name) is not None or name in H2_CONNECTION_SPECIFIC:
            malformed = True  # upper case, not a token, or a connection-specific field
            continue
        if name == b"host":
            host = value
            continue
        if name == b"cookie":
            cookies.append(value)
            continue
        if name == b"te":
            if value != b"trailers":
                malformed = True
        elif name == b"content-type" and value.startswith(b"application/grpc"):
            grpc = True
        elif name == REQUIRE_ID_HEADER:
            require_id = value.decode("latin-1").strip()
            continue
        elif name == CLIENT_ID_HEADER and mesh:
            continue  # the client's own is never believed (`server.HttpServerProtocol`)
        raw.append((name, value))
    if cookies:
        raw.append((b"cookie", b"; ".join(cookies)))
    if authority is not None:
        if host is not None and host != authority:
            malformed = True
        host = authority
    refusal = None
    if size > limits.max_header_bytes or len(raw) > limits.max_header_count:
        refusal = 431
    elif malformed or method == b"CONNECT" or not (method and scheme and target):
        refusal = 400
    text = target.decode("latin-1")
    path, _, query = text.partition("?")
    length = next((v for n, v in raw if n == b"content-length"), None)
    body = RequestBody(stream, int(length) if length and length.isdigit() else None)
    request = IncomingRequest(
        _METHODS.get(method) or method.decode("latin-1"),
        text,
        path,
        query,
        raw,
        "" if host is None else host.decode("latin-1"),
        "2",
        True,
        body,
        info.peer,
        info.local,
        None,
    )
    request.peer_tls = info.tls_status
    request.conn = info
    request.require_id = require_id
    if mesh and info.client_id:
        raw.append((CLIENT_ID_HEADER, info.client_id.encode("ascii")))
        request.client_id = info.client_id
    return request, grpc, refusal


class AckedBody(BodyStream):
    """A request body whose DATA is acknowledged (WINDOW_UPDATE) as the handler reads it,
    so a slow reader fills the client's window (`Limits.h2_initial_window`), not our memory."""

    __slots__ = ("_conn", "_reread", "_sid")

    def __init__(self, conn: Acknowledger, stream_id: int) -> None:
        limits = conn.limits
        timeout = limits.body_timeout_ms
        super().__init__(
            conn.loop,
            high_water=1 << 62,  # never pauses the transport: the window bounds it
            pause=_nothing,
            resume=_nothing,
            timeout_s=None if timeout is None else timeout / 1000,
            timeout_error=_body_timeout,
        )
        self._conn = conn
        self._sid = stream_id
        self._reread = 0  # bytes put back (`unread`): acknowledged once already

    async def read_chunk(self) -> bytes:
        data = await super().read_chunk()
        if data:
            size, again = len(data), min(len(data), self._reread)
            self._reread -= again
            self._conn.ack(self._sid, size - again)
        return data

    def take_all(self, limit: int) -> bytes | None:
        data = super().take_all(limit)
        if data:
            size, again = len(data), min(len(data), self._reread)
            self._reread -= again
            self._conn.ack(self._sid, size - again)
        return data

    def take(self, data: bytes) -> bool:
        """`feed`; False when nobody will read it (acknowledge it at once then)."""
        if self.discarding or self._exc is not None or self.at_eof:
            return False
        self.feed(data)
        return True

    def unread(self, data: bytes) -> None:
        super().unread(data)
        self._reread += len(data)

    def discard(self) -> None:
        self._give_back()
        super().discard()

    def fail(self, exc: BaseException) -> None:
        if not self.at_eof:
            self._give_back()
        super().fail(exc)

    def _give_back(self) -> None:
        """What is buffered will never be read: its bytes go back to the connection's
        window (the stream's own no longer matters)."""
        left, self._reread = self.buffered - self._reread, 0
        self._conn.ack(self._sid, left)


def _body_timeout() -> ClientError:
    return ClientError(408, "request body timed out")


def _nothing() -> None:
    pass
