"""RFC 9112 strictness through the whole proxy: heads nginx refuses are refused with
`l5d-proxy-error` and never reach a backend, and an `Upgrade: h2c` request is routed as
plain HTTP/1.1, never tunnelled on a backend's 101 (which would carry the connection's
later requests past routing)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import pytest

from tests.proxy.e2e.backends import RawBackend
from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded
from tests.proxy.e2e.manifests import SMOKE_ROUTE
from tests.proxy.transport.helpers import connect, read_response

H2C = (
    b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
)


@dataclass
class H2cBackend(RawBackend):
    """A backend that takes an h2c upgrade when offered one (101, then it owns the
    connection: whatever follows is `tunnelled`), and answers anything else 200."""

    heads: list[bytes] = field(default_factory=list)
    tunnelled: bytes = b""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                if b"\r\nupgrade: h2c" in head.lower():
                    writer.write(b"HTTP/1.1 101 Switching Protocols\r\n")
                    writer.write(b"connection: upgrade\r\nupgrade: h2c\r\n\r\n")
                    while data := await reader.read(65536):
                        self.tunnelled += data
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nx-backend: h2c\r\ncontent-length: 5\r\n\r\nplain")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@bounded(15)
async def test_an_h2c_upgrade_is_routed_as_plain_http_and_never_tunnelled(lab: Lab) -> None:
    v2 = await lab.backend("v2")
    h2c = H2cBackend()
    await h2c.start()
    lab.backends.append(h2c)  # stopped with the lab
    mesh = await lab.mesh({"web": [], "web-v1": [h2c], "web-v2": [v2]}, SMOKE_ROUTE)
    async with connect(("127.0.0.1", mesh.outbound)) as (reader, writer):
        # the h2c request goes to web-v1; the next one, on the same connection, is routed
        # by its own path to web-v2, not sent down a tunnel to web-v1
        writer.write(
            b"GET /h2c HTTP/1.1\r\nHost: web\r\n" + H2C + b"\r\n"
            b"GET /v2/echo HTTP/1.1\r\nHost: web\r\n\r\n"
        )
        async with asyncio.timeout(5):
            first = await read_response(reader)
            second = await read_response(reader)
    assert (first[0], first[1]["x-backend"], first[2]) == (200, "h2c", b"plain")
    assert (second[0], second[1]["x-backend"]) == (200, "v2")
    assert json.loads(second[2])["path"] == "/v2/echo"
    assert len(h2c.heads) == 1 and h2c.tunnelled == b""
    got = h2c.heads[0].lower()
    assert b"upgrade" not in got and b"http2-settings" not in got


@bounded(15)
async def test_an_h2c_upgrade_with_a_body_reaches_the_backend_with_it(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, SMOKE_ROUTE)
    status, headers, body = await mesh.get(
        "web",
        "/echo",
        method="POST",
        data=b"hello",
        headers=[
            ("Upgrade", "h2c"),
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("HTTP2-Settings", "AAMAAABk"),
        ],
    )
    assert (status, headers["x-backend"]) == (200, "v1")
    echo = json.loads(body)
    assert echo["body"] == "hello"
    assert "upgrade" not in echo["headers"] and "http2-settings" not in echo["headers"]


@pytest.mark.parametrize(
    ("request_bytes", "status", "cause"),
    [
        (b"GET /echo HTTP/1.1\r\nHost: web\r\nHost: other\r\n\r\n", 400, "malformed request"),
        (b"GET /echo HTTP/1.1\r\nHost: other\r\nHost: web\r\n\r\n", 400, "malformed request"),
        (
            b"POST /echo HTTP/1.0\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            400,
            "malformed request",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            501,
            "transfer coding not implemented",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            501,
            "transfer coding not implemented",
        ),
        (b"GET /echo HTTP/2.0\r\nHost: web\r\n\r\n", 505, "http version not supported"),
    ],
    ids=[
        "two-hosts",
        "two-hosts-reversed",
        "chunked-in-http-1.0",
        "gzip-chunked",
        "chunked-gzip",
        "http-2.0",
    ],
)
@bounded(10)
async def test_a_head_nginx_refuses_is_refused_before_any_backend(
    lab: Lab, request_bytes: bytes, status: int, cause: str
) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, SMOKE_ROUTE)
    answer = await mesh.raw(request_bytes)  # read until the proxy closes
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    assert head.startswith(f"http/1.1 {status} "), answer
    assert f"\r\nl5d-proxy-error: {cause}\r\n" in head
    assert v1.total == 0
    status_ok, _, _ = await mesh.get("web", "/echo")  # the proxy still serves
    assert status_ok == 200
