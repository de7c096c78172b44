"""What the listener refuses in a request head and with which status (RFC 9112, answered as
nginx answers the same bytes), and the `h2c` upgrade it takes out of a request.

```
server's parser callbacks ─ a request-target over max_header_bytes ─────► Refused(414)
                          ─ a head over a limit ────────────────────────► Refused(431)
                          ─ a second Host, or none in HTTP/1.1 ─────────► Refused(400)
                          ─ HTTP/0.9, HTTP/2.0 (any major but 1) ───────► Refused(505)
   check_transfer_coding ─ a second Transfer-Encoding, or one in 1.0 ───► Refused(400)
                          ─ a value other than `chunked` ───────────────► Refused(501)
a httptools error ─ status_for(error, data, ...): a Refused's status; what llhttp itself
                    rejects: 505 for a major version but 1 (and the HTTP/2 preface), 501 for
                    a coding after `chunked` (400 in HTTP/1.0), 400 for anything else
Upgrade with h2c ─ without_h2c: the other tokens stay an upgrade (websocket); none left:
                   plain_head, the head again without Upgrade and HTTP2-Settings, parsed
                   by a new parser as a plain HTTP/1.1 request
```

Transfer codings: nginx accepts exactly `chunked` and answers 501 to every other value,
`gzip, chunked` and `chunked, gzip` alike (RFC 9112 §6.1 lets a server refuse a coding it
does not implement with 501; a proxy that does not decode codings must not forward a body
whose length it cannot tell). `h2c` is removed as Envoy does: a tunnel after the backend's
101 would carry later requests past per-request routing. The statuses' answers (with
`l5d-proxy-error`) are `heads.ERRORS`.

Not here: the parsing itself (httptools, `server`), Content-Length checks (llhttp refuses
a bad or doubled one, and one beside Transfer-Encoding), what the answers look like.
"""

from __future__ import annotations

import logging
import re

from turnout.proxy.transport.messages import RawPairs

log = logging.getLogger(__name__)


class Refused(Exception):
    """Raised from a parser callback: the request head is answered `status` and the
    connection closed (httptools re-raises it as the `__context__` of its own error, and
    no caller outside `server` sees it)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


# llhttp's reasons (`llhttp_get_error_reason`) for what it refuses itself
_BAD_VERSION = "Invalid HTTP version"
_H2_PREFACE = "Pause on PRI/Upgrade"  # "PRI * HTTP/2.0": an HTTP/2 connection preface
_CODING_AFTER_CHUNKED = "Invalid `Transfer-Encoding` header value"
_VERSION = re.compile(rb" HTTP/(\d)\.(\d)")


def is_http2_preface(error: Exception) -> bool:
    """llhttp stopped at the HTTP/2 connection preface (`PRI * HTTP/2.0`)."""
    return str(error) == _H2_PREFACE


def check_version(version: str) -> None:
    """Refuse (505) a request that claims a version other than HTTP/1.0 and 1.1 (llhttp
    takes 0.9 and 2.0 too): RFC 9110 §15.6.6, as nginx answers a major version above 1."""
    if version != "1.1" and version != "1.0":
        raise Refused(505, f"HTTP/{version} request on an HTTP/1 connection")


def check_transfer_coding(value: bytes, version: str) -> None:
    """Refuse a request's Transfer-Encoding unless it is `chunked` in HTTP/1.1: in 1.0
    400 (RFC 9112 §6.1: a 1.0 message with one is faulty framing), any other coding 501."""
    if version != "1.1":
        raise Refused(400, "Transfer-Encoding in an HTTP/1.0 request")
    if value.strip(b" \t").lower() != b"chunked":
        raise Refused(501, f"transfer coding {value[:64]!r} not implemented")


def status_for(error: Exception, data: bytes, *, coding_seen: bool, version: str) -> int:
    """The status answering a request httptools could not parse from `data` (the bytes
    of the failing `feed_data`): `coding_seen` says a Transfer-Encoding came before,
    `version` is the parser's (only read for a coding llhttp rejects)."""
    cause = error.__context__
    if isinstance(cause, Refused):
        return cause.status
    reason = str(error)
    if reason == _BAD_VERSION:
        return _version_status(data)
    if reason == _H2_PREFACE:
        return 505
    if reason == _CODING_AFTER_CHUNKED:
        # llhttp stops at a coding after `chunked` (or at a second Transfer-Encoding)
        # before the header reaches the callbacks: the answer check_transfer_coding gives
        if coding_seen or version != "1.1":
            return 400
        return 501
    return 400


def _version_status(data: bytes) -> int:
    """llhttp refused the version digits: 505 when its major is not 1, 400 for 1.2 to 1.9
    (a minor version we do not take, not another protocol). The failing request line is
    the first in `data` with a version other than 1.0 and 1.1; 400 if it is not there
    (its "HTTP/" came in an earlier read)."""
    for match in _VERSION.finditer(data):
        major, minor = match.groups()
        if major != b"1":
            return 505
        if minor not in (b"0", b"1"):
            return 400
    return 400


# -- h2c ---------------------------------------------------------------------------------

_H2C_DROPPED = frozenset({b"upgrade", b"http2-settings"})
"""Headers of an h2c upgrade left out of the plain request (Connection is rewritten)."""
_CONNECTION_TOKENS_DROPPED = frozenset({"upgrade", "http2-settings"})


def without_h2c(upgrade: str) -> str | None:
    """The `Upgrade` tokens but `h2c` (RFC 9110 §7.8, a comma-separated list), None when
    none is left."""
    tokens = [t.strip() for t in upgrade.split(",")]
    rest = [t for t in tokens if t and t.lower() != "h2c"]
    return ", ".join(rest) if rest else None


def drop_http2_settings(headers: RawPairs) -> None:
    """Remove `HTTP2-Settings` from `headers` in place (an upgrade that keeps other
    tokens: the h2c part of it goes)."""
    headers[:] = [(n, v) for n, v in headers if n.lower() != b"http2-settings"]


def plain_head(method: bytes, target: bytes, version: str, headers: RawPairs) -> bytes:
    """The request head again without its h2c upgrade: no Upgrade or HTTP2-Settings, and
    Connection without the `upgrade` and `http2-settings` tokens (left out when nothing
    else remains), as Envoy's HTTP/1 codec rewrites it. The parts come from the parser, so
    they hold no CR or LF."""
    parts = [method, b" ", target, b" HTTP/", version.encode(), b"\r\n"]
    for name, value in headers:
        lname = name.lower()
        if lname in _H2C_DROPPED:
            continue
        if lname == b"connection":
            tokens = [t.strip() for t in value.decode("latin-1").split(",")]
            kept = [t for t in tokens if t and t.lower() not in _CONNECTION_TOKENS_DROPPED]
            if not kept:
                continue
            value = ", ".join(kept).encode("latin-1")
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)
