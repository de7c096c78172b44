"""RFC 9112 strictness of the listener on request heads, answered as nginx answers the same
bytes, each answer with `l5d-proxy-error` and the connection closed.

The handler here echoes what it was given (method, path, upgrade, headers and body), so a
test sees what a request that got through looked like to the proxy's request path.
"""

from __future__ import annotations

import asyncio
import json

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

REFUSED = [
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, id="two-hosts"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: b\r\nHost: a\r\n\r\n", 400, id="two-hosts-reversed"),
    pytest.param(b"GET / HTTP/1.1\r\nHost:\r\nHost: a\r\n\r\n", 400, id="empty-host-then-host"),
    pytest.param(b"GET / HTTP/1.1\r\nhost: a\r\nHOST: a\r\n\r\n", 400, id="same-host-twice"),
    pytest.param(
        b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY,
        400,
        id="chunked-in-http-1.0",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + CHUNKED_BODY,
        501,
        id="gzip-then-chunked",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n" + CHUNKED_BODY,
        501,
        id="chunked-then-gzip",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        501,
        id="gzip-alone",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\nhello",
        501,
        id="identity",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n" + CHUNKED_BODY,
        501,
        id="empty-coding-then-chunked",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY,
        400,
        id="chunked-twice",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY,
        400,
        id="gzip-header-then-chunked-header",
    ),
    pytest.param(
        b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n" + CHUNKED_BODY,
        400,
        id="chunked-then-gzip-in-http-1.0",
    ),
    pytest.param(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, id="http-2.0"),
    pytest.param(b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505, id="http-3.0"),
    pytest.param(b"GET / HTTP/9.9\r\nHost: a\r\n\r\n", 505, id="http-9.9"),
    pytest.param(b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505, id="http-0.9"),
    pytest.param(b"GET / HTTP/2.0\r\nConnection: keep-alive\r\n\r\n", 505, id="http-2.0-keep"),
    pytest.param(
        b"POST / HTTP/2.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY,
        505,
        id="http-2.0-chunked",
    ),
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
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked \r\n\r\n" + CHUNKED_BODY,
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
