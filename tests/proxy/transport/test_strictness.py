"""RFC 9112 strictness of the listener on request heads, answered as nginx answers the same
bytes, each answer with `l5d-proxy-error` and the connection closed; and the h2c upgrade
taken out of a request (as Envoy does), so it is served as plain HTTP/1.1.

The handler here echoes what it was given (method, path, upgrade, headers and body), so a
test sees what a request that got through looked like to the proxy's request path.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.proxy.transport.helpers import connect, raw, read_response, running
from turnout.proxy.transport import IncomingRequest, ResponseWriter

HOST = b"Host: a\r\n"


async def echo(req: IncomingRequest, writer: ResponseWriter) -> None:
    body = await req.body.read(1 << 20)
    seen = {
        "path": req.path,
        "host": req.host,
        "upgrade": req.upgrade,
        "headers": [[n.lower(), v] for n, v in req.headers],
        "body": (body or b"").decode("latin-1"),
    }
    await writer.respond(200, [], json.dumps(seen).encode())


def _answer(reply: bytes) -> tuple[int, str]:
    """Status and `l5d-proxy-error` of the first answer in `reply`."""
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    cause = next((h.split(":", 1)[1].strip() for h in head if h.startswith("l5d-proxy-error:")), "")
    return int(head[0].split()[1]), cause


CHUNKED_BODY = b"5\r\nhello\r\n0\r\n\r\n"


def coded(*codings: bytes, version: bytes = b"1.1") -> bytes:
    """A POST with one Transfer-Encoding header per coding, and a chunked body."""
    head = b"POST / HTTP/" + version + b"\r\nHost: a\r\n"
    head += b"".join(b"Transfer-Encoding: " + c + b"\r\n" for c in codings)
    return head + b"\r\n" + CHUNKED_BODY


REFUSED = [
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, id="two-hosts"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: b\r\nHost: a\r\n\r\n", 400, id="two-hosts-reversed"),
    pytest.param(b"GET / HTTP/1.1\r\nHost:\r\nHost: a\r\n\r\n", 400, id="empty-host-then-host"),
    pytest.param(b"GET / HTTP/1.1\r\nhost: a\r\nHOST: a\r\n\r\n", 400, id="same-host-twice"),
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", 400, id="no-host-in-1.1"),
    pytest.param(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 400, id="no-host-in-1.1-close"),
    pytest.param(coded(b"chunked", version=b"1.0"), 400, id="chunked-in-http-1.0"),
    pytest.param(coded(b"gzip, chunked"), 501, id="gzip-then-chunked"),
    pytest.param(coded(b"chunked, gzip"), 501, id="chunked-then-gzip"),
    pytest.param(coded(b"gzip"), 501, id="gzip-alone"),
    pytest.param(coded(b"identity"), 501, id="identity"),
    pytest.param(coded(b",chunked"), 501, id="empty-coding-then-chunked"),
    pytest.param(coded(b"chunked", b"chunked"), 400, id="chunked-twice"),
    pytest.param(coded(b"gzip", b"chunked"), 400, id="gzip-header-then-chunked-header"),
    pytest.param(coded(b"chunked, gzip", version=b"1.0"), 400, id="chunked-gzip-in-http-1.0"),
    pytest.param(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, id="http-2.0"),
    pytest.param(b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505, id="http-3.0"),
    pytest.param(b"GET / HTTP/9.9\r\nHost: a\r\n\r\n", 505, id="http-9.9"),
    pytest.param(b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505, id="http-0.9"),
    pytest.param(b"GET / HTTP/2.0\r\nConnection: keep-alive\r\n\r\n", 505, id="http-2.0-keep"),
    pytest.param(coded(b"chunked", version=b"2.0"), 505, id="http-2.0-chunked"),
    pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, id="http2-preface"),
    pytest.param(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 400, id="http-1.2"),
]


@pytest.mark.parametrize(("request_bytes", "status"), REFUSED)
async def test_a_refused_head_is_answered_with_its_cause_and_closed(
    request_bytes: bytes, status: int
) -> None:
    async with running(echo) as addr:
        async with asyncio.timeout(5):
            reply = await raw(addr, request_bytes)  # until the server closes
        got, cause = _answer(reply)
        assert got == status, reply
        assert cause, reply  # l5d-proxy-error says why
        assert reply.count(b"HTTP/1.1 ") == 1, reply  # nothing else was answered


@pytest.mark.parametrize(
    "request_bytes",
    [
        coded(b"chunked"),
        coded(b"Chunked "),
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        b"POST / HTTP/1.0\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    ],
    ids=["chunked", "chunked-any-case-and-spaces", "content-length", "http-1.0-content-length"],
)
async def test_the_framings_nginx_takes_still_pass(request_bytes: bytes) -> None:
    async with running(echo) as addr, connect(addr) as (reader, writer):
        writer.write(request_bytes)
        async with asyncio.timeout(5):
            status, _, body = await read_response(reader)
    assert (status, json.loads(body)["body"]) == (200, "hello")


async def test_a_refusal_behind_a_good_request_answers_that_one_first() -> None:
    async with running(echo) as addr:
        async with asyncio.timeout(5):
            reply = await raw(
                addr,
                b"GET /first HTTP/1.1\r\nHost: a\r\n\r\nGET /second HTTP/2.0\r\nHost: a\r\n\r\n",
            )
    first, rest = reply.split(b"HTTP/1.1 505", 1)
    assert first.startswith(b"HTTP/1.1 200") and b'"path": "/first"' in first
    assert b"l5d-proxy-error: http version not supported" in rest


async def test_transport_answers_carry_l5d_proxy_error() -> None:
    async with running(echo) as addr:
        async with asyncio.timeout(5):
            reply = await raw(addr, b"\x00garbage\r\n\r\n")
    assert _answer(reply) == (400, "malformed request")
    assert reply.endswith(b"\r\n\r\nmalformed request\n")


# -- h2c ---------------------------------------------------------------------------------

H2C = b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"


def _seen(body: bytes) -> dict[str, Any]:
    """What the echo handler was given."""
    seen: dict[str, Any] = json.loads(body)
    return seen


async def _echoed(request_bytes: bytes) -> dict[str, Any]:
    """What the echo handler was given for the one request in `request_bytes`."""
    async with running(echo) as addr, connect(addr) as (reader, writer):
        writer.write(request_bytes)
        async with asyncio.timeout(5):
            return _seen((await read_response(reader))[2])


@pytest.mark.parametrize(
    ("framing", "body"),
    [
        (b"", b""),
        (b"Content-Length: 5\r\n", b"hello"),
        (b"Transfer-Encoding: chunked\r\n", CHUNKED_BODY),
    ],
    ids=["no-body", "content-length", "chunked"],
)
async def test_an_h2c_upgrade_is_served_as_plain_http_1_1(framing: bytes, body: bytes) -> None:
    async with running(echo) as addr, connect(addr) as (reader, writer):
        # the h2c request, then a pipelined one: both answered on this connection
        writer.write(
            b"POST /h2c HTTP/1.1\r\n"
            + HOST
            + H2C
            + framing
            + b"\r\n"
            + body
            + b"GET /next HTTP/1.1\r\n"
            + HOST
            + b"\r\n"
        )
        async with asyncio.timeout(5):
            status, headers, got = await read_response(reader)
            next_status, _, next_body = await read_response(reader)
    assert status == 200 and "upgrade" not in headers
    seen = _seen(got)
    assert seen["path"] == "/h2c" and seen["upgrade"] is None
    names = [n for n, _ in seen["headers"]]
    assert "upgrade" not in names and "http2-settings" not in names
    assert ["connection", "Upgrade, HTTP2-Settings"] not in seen["headers"]
    assert seen["body"] == ("hello" if body else "")
    assert (next_status, _seen(next_body)["path"]) == (200, "/next")


async def test_connection_keeps_the_tokens_that_are_not_h2c_ones() -> None:
    seen = await _echoed(
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: H2C\r\nConnection: keep-alive, upgrade, "
        b"http2-settings\r\nHTTP2-Settings: AAMAAABk\r\n\r\n"
    )
    assert ["connection", "keep-alive"] in seen["headers"]


async def test_an_upgrade_offering_h2c_and_websocket_keeps_websocket_only() -> None:
    seen = await _echoed(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: h2c, websocket\r\n"
        b"Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABk\r\n\r\n"
    )
    assert seen["upgrade"] == "websocket"
    assert "http2-settings" not in [n for n, _ in seen["headers"]]


async def test_two_h2c_upgrades_in_a_row_are_both_served_plain() -> None:
    one = b"GET /%d HTTP/1.1\r\n" + HOST + H2C + b"\r\n"
    async with running(echo) as addr, connect(addr) as (reader, writer):
        writer.write(one % 1 + one % 2)
        async with asyncio.timeout(5):
            paths = [_seen((await read_response(reader))[2])["path"] for _ in range(2)]
    assert paths == ["/1", "/2"]


async def test_a_bad_request_after_an_h2c_one_is_still_refused() -> None:
    async with running(echo) as addr:
        async with asyncio.timeout(5):
            reply = await raw(
                addr,
                b"GET /1 HTTP/1.1\r\n"
                + HOST
                + H2C
                + b"\r\nGET /2 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            )
    assert reply.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 400 Bad Request" in reply
