"""Bodies and upgrades through the whole proxy: big and chunked responses under a slow
reader (the client's flow control reaches the upstream), HEAD, request bodies on both sides
of the retry buffer cap, and a WebSocket spliced through the route."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.proxy.e2e.backends import _pattern
from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import Mesh, bounded, route_to

ROUTE = route_to("web-v1")

BIG = 4 * 1024 * 1024


async def _mesh(lab: Lab) -> Mesh:
    v1 = await lab.backend("v1")
    return await lab.mesh({"web": [], "web-v1": [v1]}, ROUTE)


async def _slow_read(port: int, path: str, *, method: str = "GET") -> tuple[bytes, bytes]:
    """One request on a raw socket, the answer read 64 KiB at a time with pauses (a slow
    client): head and body (the body de-chunked when chunked)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: web\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").lower().split("\r\n")
        if method == "HEAD":
            return head, b""
        if "transfer-encoding: chunked" in lines:
            body = bytearray()
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    return head, bytes(body)
                body += chunk[:-2]
                await asyncio.sleep(0.001)
        length = next(int(x.split(":")[1]) for x in lines if x.startswith("content-length:"))
        body = bytearray()
        while len(body) < length:
            body += await reader.read(min(65536, length - len(body)))
            await asyncio.sleep(0.002)
        return head, bytes(body)
    finally:
        writer.close()


@bounded(30)
async def test_a_big_response_reaches_a_slow_reader_whole(lab: Lab) -> None:
    mesh = await _mesh(lab)
    head, body = await _slow_read(mesh.outbound, f"/big/{BIG}")
    assert head.startswith(b"HTTP/1.1 200") and f"content-length: {BIG}".encode() in head.lower()
    assert body == _pattern(BIG)


@bounded(30)
async def test_a_chunked_response_reaches_a_slow_reader_whole(lab: Lab) -> None:
    mesh = await _mesh(lab)
    head, body = await _slow_read(mesh.outbound, f"/chunked/{BIG}")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    assert body == _pattern(BIG)


@bounded(15)
async def test_head_keeps_the_length_a_get_would_get(lab: Lab) -> None:
    mesh = await _mesh(lab)
    head, _ = await _slow_read(mesh.outbound, "/big/12345", method="HEAD")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-length: 12345\r\n" in head.lower()
    # nothing follows the head: the next request on a fresh read gets its own answer
    status, _, body = await mesh.get("web", "/big/10")
    assert (status, body) == (200, _pattern(10))


@bounded(15)
async def test_request_bodies_below_and_above_the_retry_cap_arrive_whole(lab: Lab) -> None:
    mesh = await _mesh(lab)
    for size in (10, 10_000, 200_000):
        data = _pattern(size)
        status, _, body = await mesh.get("web", "/echo", method="POST", data=data)
        assert status == 200
        assert json.loads(body)["body"] == data.decode("latin-1"), size


@bounded(15)
async def test_a_client_leaving_mid_stream_does_not_disturb_the_next_request(lab: Lab) -> None:
    mesh = await _mesh(lab)
    reader, writer = await asyncio.open_connection("127.0.0.1", mesh.outbound)
    writer.write(f"GET /big/{BIG} HTTP/1.1\r\nHost: web\r\n\r\n".encode())
    await reader.readexactly(100_000)
    writer.transport.abort()
    for _ in range(5):
        status, _, body = await mesh.get("web", "/big/1000")
        assert (status, body) == (200, _pattern(1000))


@bounded(15)
async def test_a_websocket_is_routed_and_spliced(lab: Lab) -> None:
    mesh = await _mesh(lab)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{mesh.outbound}/ws", headers={"Host": "web"}) as ws,
    ):
        for text in ("hello", "again"):
            await ws.send_str(text)
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.TEXT and msg.data == f"v1: {text}"


RAW_ROUTE = route_to("raw")


@bounded(15)
async def test_an_interim_response_is_not_forwarded_and_the_final_one_is(lab: Lab) -> None:
    raw = await lab.raw_backend()
    mesh = await lab.mesh({"web": [], "raw": [raw]}, RAW_ROUTE)
    status, headers, body = await mesh.get("web", "/interim")
    assert (status, body, headers["x-backend"]) == (200, b"hinted\n", "raw")


@bounded(15)
async def test_a_close_delimited_body_is_relayed_whole(lab: Lab) -> None:
    raw = await lab.raw_backend()
    mesh = await lab.mesh({"web": [], "raw": [raw]}, RAW_ROUTE)
    head, body = await _slow_read(mesh.outbound, "/eof")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    assert body == b"y" * 100_000


@bounded(15)
async def test_pipelined_requests_are_answered_in_order(lab: Lab) -> None:
    mesh = await _mesh(lab)
    reader, writer = await asyncio.open_connection("127.0.0.1", mesh.outbound)
    try:
        writer.write(
            b"".join(f"GET /big/{n} HTTP/1.1\r\nHost: web\r\n\r\n".encode() for n in (30, 10, 20))
        )
        for n in (30, 10, 20):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and f"content-length: {n}\r\n".encode() in head
            assert await reader.readexactly(n) == _pattern(n)
    finally:
        writer.close()
