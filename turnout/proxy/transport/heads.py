"""The bytes of HTTP/1.1 heads: request heads for upstreams, status lines and the transport's
own error answers. Pure functions and constants; no I/O, no connection state.

```
handler ──encode_forward_head(parsed request)──┐  a request going on as it came
        ──encode_request_head(headers)─────────┼─► head bytes ─► UpstreamPool.send(head=...)
        ──request_framing(method, body)────────┘  (its Content-Length / chunked lines)
upstream ──without_connection_options(lines, hop)──► a response's end-to-end headers, less
                                                those its Connection header names
writer  ──STATUS_BYTES / status_line(status)──► the first line of a response head
server  ──ERRORS[status] / error_response()───► a whole answer the transport makes itself
                                                (400, 408, 414, 431, 501, 505, 500...; then
                                                close), with `l5d-proxy-error`
```

Request heads drop the hop-by-hop and framing headers (`messages.HOP_BY_HOP`) they are
given and take `framing` instead; values from the request parser are free of CR and LF
already, anything else is checked in one scan of the whole head.

Not here: response heads, whose lines depend on the exchange (HEAD, keep-alive, a request
body still coming: `writer.ExchangeWriter`), and parsing (httptools, in `server` and
`upstream`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from http import HTTPStatus

from turnout.proxy.transport.messages import (
    HOP_BY_HOP,
    HOP_BY_HOP_BYTES,
    Address,
    Headers,
    RawPairs,
)

log = logging.getLogger(__name__)

# -- requests -------------------------------------------------------------------------------

_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
_NOT_FORWARDED = HOP_BY_HOP_BYTES | {b"host"}
_NOT_FORWARDED_LENGTHS = frozenset(len(name) for name in _NOT_FORWARDED)
ORDINARY_NAMES = frozenset(
    spelling
    for name in (b"user-agent", b"accept", b"cookie", b"origin", b"referer")
    for spelling in (name, name.title())
)
"""Common request headers as long as a header the proxy reads or drops (`User-Agent` and
Connection are 10 bytes, `Accept` and Expect 6), in their usual spellings exactly: the
listener (`server.on_header`) and `encode_forward_head` pass them on without lower-casing
them and comparing them with each such name. None of those names is in it (a test checks),
so a header spelled otherwise only goes the longer way."""


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
    named: frozenset[bytes] = frozenset()
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP:
            if lname == "connection":
                named |= _connection_options((value.encode("latin-1", "replace"),))
            continue
        if lname == "host":
            if host is not None:
                continue
            has_host = True
        parts += (name, ": ", value, "\r\n")
        lines += 1
    if named:  # headers the client's Connection header names are for this hop only
        return encode_request_head(
            method,
            target,
            tuple(
                (n, v)
                for n, v in headers
                if n.lower() != "connection" and n.lower().encode("latin-1") not in named
            ),
            framing=framing,
            host=host,
            endpoint=endpoint,
            parsed=parsed,
        )
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


def encode_forward_head(
    method: str, target: str, headers: RawPairs, host: str, framing: str
) -> bytes:
    """`encode_request_head` for a request going on as it came: `headers` as the request
    parser gave them (bytes, already free of CR and LF), Host set to `host` (from the
    parsed request too). Not keyword-only: the request path passes them in order."""
    parts = [f"{method} {target} HTTP/1.1\r\nhost: {host}\r\n{framing}".encode("latin-1")]
    connection: list[bytes] | None = None
    for name, value in headers:
        if (
            len(name) in _NOT_FORWARDED_LENGTHS
            and name not in ORDINARY_NAMES
            and name.lower() in _NOT_FORWARDED
        ):
            if len(name) == 10 and name.lower() == b"connection":
                connection = [*(connection or ()), value]
            continue
        parts += (name, b": ", value, b"\r\n")
    if connection is not None and (named := _connection_options(connection)):
        # headers the client's Connection header names are for this hop only (RFC 9110 §7.6.1)
        dropped = named | {b"connection"}
        kept = [(n, v) for n, v in headers if n.lower() not in dropped]
        return encode_forward_head(method, target, kept, host=host, framing=framing)
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


# -- responses ------------------------------------------------------------------------------

STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n" for s in HTTPStatus}
"""Status code -> "HTTP/1.1 200 OK\\r\\n", for every code `http.HTTPStatus` names."""
STATUS_BYTES = {code: line.encode() for code, line in STATUS_LINES.items()}
NO_BODY_STATUS = frozenset({204, 304})
"""Statuses that never carry a body (RFC 9110 §15.3.5, §15.4.5)."""
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


_CONNECTION_KEYWORDS = frozenset({b"", b"close", b"keep-alive", b"upgrade"})
"""Connection tokens that name no end-to-end header (the last two are hop-by-hop already)."""


def without_connection_options(lines: list[bytes], hop: RawPairs) -> list[bytes]:
    """A response's end-to-end header `lines` (`RawHeaders.lines`) less every header its
    `Connection` headers (in `hop`) name: those are hop-by-hop too (RFC 9110 §7.6.1), e.g.
    `Connection: x-secret` makes `X-Secret` the upstream's business only. `lines` itself
    when nothing is named (`Connection: keep-alive`, `close`, none at all)."""
    named = _connection_options(
        value for name, value in hop if len(name) == 10 and name.lower() == b"connection"
    )
    if not named:
        return lines
    kept: list[bytes] = []
    for i in range(0, len(lines), 4):
        if lines[i].lower() not in named:
            kept += lines[i : i + 4]
    return kept


def _connection_options(values: Iterable[bytes]) -> frozenset[bytes]:
    """The lower-cased header names that `Connection` header `values` name (its keywords
    `close`, `keep-alive` and `upgrade` left out)."""
    named = {token.strip().lower() for value in values for token in value.split(b",")}
    return frozenset(named - _CONNECTION_KEYWORDS)


def status_line(status: int) -> str:
    """The status line of `status`, "Unknown" for a code without a name; `ValueError` for
    a code outside 100..999."""
    line = STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise ValueError(f"invalid status code {status}")
        line = f"HTTP/1.1 {status} Unknown\r\n"
    return line


_CAUSES = {
    400: "malformed request",
    408: "request timeout",
    414: "uri too long",
    431: "request header too large",
    500: "unexpected error",
    501: "transfer coding not implemented",
    502: "upstream protocol error",
    505: "http version not supported",
}
"""The `l5d-proxy-error` of the transport's own answers (other statuses: their phrase)."""


def error_cause(status: int) -> str:
    """The `l5d-proxy-error` of the transport's own answer `status` (HTTP/1 and HTTP/2)."""
    cause = _CAUSES.get(status)
    if cause is None:
        cause = HTTPStatus(status).phrase.lower() if status in STATUS_LINES else "error"
    return cause


def error_response(status: int) -> bytes:
    """A whole answer the transport makes itself, then close: its cause in
    `l5d-proxy-error` and as a text body, like the proxy's answers (`proxy/answers.py`)."""
    cause = error_cause(status)
    body = f"{cause}\n".encode()
    return (
        f"{status_line(status)}content-type: text/plain; charset=utf-8\r\n"
        f"l5d-proxy-error: {cause}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


ERRORS = {s: error_response(s) for s in (400, 405, 408, 414, 431, 500, 501, 502, 503, 505)}
"""The transport's answers, made once: its refusals of a request head (400, 408, 414, 431,
501, 505, `refusals.py`) and a handler's failures (500, 502, or a `ClientError`'s status)."""


# -- HTTP/2 requests --------------------------------------------------------------------------

_H2_DROPPED = HOP_BY_HOP_BYTES | {b"host"}
UNSAFE = re.compile(rb"[\r\n\x00]")
"""CR, LF or NUL: never in a field sent on (response splitting, request smuggling)."""
H2_BAD_NAME = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9a-z]")
"""A byte no HTTP/2 field name may hold (RFC 9113 §8.2.1: names are lower-case tokens)."""
H2_BAD_VALUE = re.compile(rb"[\x00\r\n]|^[ \t]|[ \t]$")
"""NUL, CR, LF anywhere, or whitespace at either end: a malformed HTTP/2 value (RFC 9113
§8.2.1), and what an HTTP/1.1 peer must never receive."""
H2_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
"""Fields HTTP/2 forbids (RFC 9113 §8.2.2; `te` only as "trailers")."""


def h2_request_headers(
    method: str,
    target: str,
    authority: str,
    headers: RawPairs,
    *,
    scheme: str = "http",
    content_length: int | None = None,
) -> RawPairs:
    """An HTTP/2 request's header list (`h2_client.H2Pool.send`): the pseudo-headers
    (`:authority` from the Host), then `headers` with lowercase names less the hop-by-hop
    and framing ones and those a `Connection` header names, `te` kept only as `trailers`
    (gRPC needs it), and `content-length` when the body is bytes. Raises `ValueError` for
    a CR, LF or NUL in a value (headers a filter made; the parser refuses them already)."""
    out: RawPairs = [
        (b":method", method.encode("latin-1")),
        (b":scheme", scheme.encode("latin-1")),
        (b":authority", authority.encode("latin-1")),
        (b":path", target.encode("latin-1")),
    ]
    named: frozenset[bytes] = frozenset()
    append = out.append
    for name, value in headers:  # one pass; what a `Connection` header names goes after
        lname = name.lower()
        if lname in _H2_DROPPED:
            if lname == b"te":
                if b"trailers" in value.lower():
                    append((b"te", b"trailers"))
            elif lname == b"connection":
                named |= _connection_options((value,))
            continue
        append((lname, value))
    if named:
        out = [(n, v) for n, v in out if n not in named or n == b"te"]
    if content_length is not None:
        out.append((b"content-length", str(content_length).encode()))
    if UNSAFE.search(b"".join([v for _, v in out])) is not None:
        raise ValueError("CR, LF or NUL inside a header")
    return out


def raw_pairs(headers: Headers | tuple[tuple[str, str], ...]) -> RawPairs:
    """Decoded headers (a request filter's output) back to bytes, for `h2_request_headers`."""
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
