"""The attack set, as data: request bytes, what the proxy must answer, what may reach the
backend. FRAMING (RFC 9112 message framing), PATHS (RFC 3986 normalization against a route
on ``/admin``); the cases that need a scenario (sloppy backends, many Hosts, the control
plane) are in `attack_backends.py` and joined here in `CASES`.

```
Case(id, group, send=b"...", answers=("400", "close"), reached=(), nginx="400")
      answers: the proxy's statuses in order, "close" when it must then close
      reached: Recorded.summary() of each request the backend must get ("GET /admin [admin]",
               [route] from the x-route header the route sets, then the body if any)
```

Expected values are what RFC 9112/9110 require and nginx (1.22) answers; `nginx` records
nginx's own answer to the same bytes where it differs (e.g. nginx decodes ``%2F``, the
proxy refuses it). Every request names ``Host: web`` unless the Host is the attack.
"""

from __future__ import annotations

from typing import Any

from tests.reliability.attack_backends import BACKEND_CASES, CONTROL_PLANE_CASES, HOST_CASES
from tests.reliability.attacks import Case
from tests.reliability.wire import get

H = b"Host: web\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"
HELLO = b"5\r\nhello\r\n0\r\n\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"
H2C = (
    b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
)
REFUSED = ("400", "close")


def post(path: str, headers: bytes, body: bytes, *, version: bytes = b"1.1") -> bytes:
    return b"POST " + path.encode() + b" HTTP/" + version + b"\r\n" + H + headers + b"\r\n" + body


def framing(id: str, send: bytes, answers: tuple[str, ...] = REFUSED, **kw: Any) -> Case:
    return Case(id=id, group="framing", send=send, answers=answers, **kw)


def paths(id: str, target: str, answers: tuple[str, ...], **kw: Any) -> Case:
    return Case(id=id, group="paths", send=get(target), answers=answers, **kw)


FRAMING = [
    framing(
        "cl-te",
        post("/", b"Content-Length: 4\r\n" + CHUNKED, b"0\r\n\r\n" + SMUGGLED),
        nginx="400",
    ),
    framing(
        "te-cl",
        post("/", CHUNKED + b"Content-Length: 4\r\n", b"0\r\n\r\n" + SMUGGLED),
        nginx="400",
    ),
    framing(
        "two-cl",
        post("/", b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
        nginx="400",
    ),
    framing(
        "two-cl-equal",
        post("/", b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
        nginx="400",
    ),
    framing("cl-plus-sign", post("/", b"Content-Length: +5\r\n", b"hello"), nginx="400"),
    framing("cl-inner-space", post("/", b"Content-Length: 5 5\r\n", b"hello"), nginx="400"),
    framing(
        "obs-fold",
        b"GET /fold HTTP/1.1\r\n" + H + b"X-Folded: a\r\n b\r\n\r\n",
        nginx="400",
    ),
    framing(
        "bare-lf",
        b"GET /lf HTTP/1.1\n" + H[:-2] + b"\n\n",
        nginx="200 (RFC 9112 §2.2: MAY)",
    ),
    framing(
        "chunk-size-overflow",
        post("/", CHUNKED, b"FFFFFFFFFFFFFFFFF1\r\nhello\r\n0\r\n\r\n"),
        nginx="400",
    ),
    framing(
        "chunk-extensions",
        post("/ext", CHUNKED, b"5;name=value;x\r\nhello\r\n0\r\n\r\n"),
        ("200",),
        reached=("POST /ext [main] b'hello'",),
        nginx="200, body hello",
    ),
    framing("te-in-http10", post("/", CHUNKED, HELLO, version=b"1.0"), nginx="400"),
    framing(
        "te-gzip-chunked",
        post("/", b"Transfer-Encoding: gzip, chunked\r\n", HELLO),
        ("501", "close"),
        nginx="501",
    ),
    framing(
        "te-chunked-gzip",
        post("/", b"Transfer-Encoding: chunked, gzip\r\n", HELLO),
        ("501", "close"),
        nginx="501",
    ),
    framing(
        "te-xchunked",
        post("/", b"Transfer-Encoding: xchunked\r\n", HELLO),
        ("501", "close"),
        nginx="501",
    ),
    framing("two-host", b"GET / HTTP/1.1\r\n" + H + b"Host: other\r\n\r\n", nginx="400"),
    framing("two-host-reversed", b"GET / HTTP/1.1\r\nHost: other\r\n" + H + b"\r\n", nginx="400"),
    framing("no-host-http11", b"GET / HTTP/1.1\r\n\r\n", nginx="400"),
    framing(
        "http2-request-line", b"GET / HTTP/2.0\r\n" + H + b"\r\n", ("505", "close"), nginx="505"
    ),
    framing(
        "h2c-upgrade",
        b"GET /h2c HTTP/1.1\r\n" + H + H2C + b"\r\n",
        ("200",),
        reached=("GET /h2c [main]",),
        absent=("upgrade", "http2-settings"),
        nginx="200, no Upgrade forwarded",
    ),
    framing(
        "connection-named-request-header",
        b"GET /hop HTTP/1.1\r\n" + H + b"Connection: x-secret, keep-alive\r\nX-Secret: 1\r\n\r\n",
        ("200",),
        reached=("GET /hop [main]",),
        absent=("x-secret",),
        nginx="(RFC 9110 §7.6.1: removed)",
    ),
    framing(
        "pipelined-get-then-post",
        get("/first") + post("/second", b"Content-Length: 11\r\n", b"hello world"),
        ("200", "200"),
        reached=("GET /first [main]", "POST /second [main] b'hello world'"),
        nginx="200 200, bodies intact",
    ),
    framing(
        "pipelined-chunked",
        get("/first") + post("/second", CHUNKED, b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"),
        ("200", "200"),
        reached=("GET /first [main]", "POST /second [main] b'hello world'"),
        nginx="200 200",
    ),
    framing(
        "pipelined-4-posts",
        b"".join(
            post(f"/p{i}", b"Content-Length: 7\r\n", f"body p{i}"[:7].encode()) for i in range(1, 5)
        ),
        ("200", "200", "200", "200"),
        reached=tuple(f"POST /p{i} [main] {f'body p{i}'[:7].encode()!r}" for i in range(1, 5)),
        nginx="200 x4, bodies intact",
    ),
]

PATHS = [
    paths("dotdot-above-root", "/a/../../etc/passwd", ("400",), nginx="400"),
    paths(
        "dotdot-into-admin",
        "/public/../admin",
        ("200",),
        reached=("GET /admin [admin]",),
        nginx="200 via /admin, forwarded as sent",
    ),
    paths(
        "double-slash-admin",
        "//admin",
        ("200",),
        reached=("GET /admin [admin]",),
        nginx="200 via /admin, forwarded as sent",
    ),
    paths(
        "pct-2e-dotdot",
        "/public/%2e%2e/admin",
        ("200",),
        reached=("GET /admin [admin]",),
        nginx="200 via /admin, forwarded as sent",
    ),
    paths("pct-2e-above-root", "/%2e%2e/%2e%2e/etc/passwd", ("400",), nginx="400"),
    paths(
        "pct-2f-slash",
        "/public%2F..%2Fadmin",
        ("400",),
        nginx="200 via /admin (decodes %2F)",
    ),
    paths(
        "backslash-dotdot",
        "/public\\..\\admin",
        ("200",),
        reached=("GET /admin [admin]",),
        nginx="200 via / (\\ is no slash)",
    ),
    paths(
        "query-kept",
        "/public/../admin?next=/../x",
        ("200",),
        reached=("GET /admin?next=/../x [admin]",),
        nginx="200 via /admin, forwarded as sent",
    ),
    paths("pct-00-nul", "/admin%00.txt", ("400",), nginx="400"),
    Case(
        id="raw-nul",
        group="paths",
        send=b"GET /admin\x00x HTTP/1.1\r\n" + H + b"\r\n",
        answers=REFUSED,
        nginx="400",
    ),
    paths(
        "over-long-path",
        "/" + "a" * 20_000,
        ("414", "close"),
        label="GET /aaaa… (20,000 bytes)",
        nginx="414",
    ),
]

CASES: list[Case] = [*FRAMING, *PATHS, *BACKEND_CASES, *HOST_CASES, *CONTROL_PLANE_CASES]
