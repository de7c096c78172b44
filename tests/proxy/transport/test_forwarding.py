"""Normal traffic through server -> handler -> pool -> aiohttp backend, checked with
aiohttp's client (an independent implementation) and a raw socket where framing matters."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.proxy.transport.helpers import Address, Backend, connect, read_response
from turnout.proxy.transport import UpstreamPool


def url(addr: Address, path: str) -> str:
    return f"http://{addr[0]}:{addr[1]}{path}"


async def test_keepalive_reuses_one_upstream_connection(
    proxy: Address, backend: tuple[Address, Backend], pool: UpstreamPool
) -> None:
    async with aiohttp.ClientSession() as session:
        for i in range(20):
            async with session.post(url(proxy, "/echo"), data=f"hello {i}".encode()) as resp:
                assert resp.status == 200
                assert await resp.read() == f"hello {i}".encode()
                assert resp.headers["x-method"] == "POST"
    assert backend[1].connections == 1
    assert len(backend[1].peers) == 20
    assert pool.idle_count(backend[0]) == 1


async def test_pipelined_requests_are_answered_in_order(proxy: Address) -> None:
    async with connect(proxy) as (reader, writer):
        # /delay/150 first: a later, faster request must not overtake it
        writer.write(
            b"GET /delay/150 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\none"
            b"GET /status/204 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n"
        )
        async with asyncio.timeout(5):
            assert (await read_response(reader))[::2] == (200, b"late")
            assert (await read_response(reader))[::2] == (200, b"one")
            assert (await read_response(reader))[0] == 204
            assert (await read_response(reader))[::2] == (200, b"two")


async def test_chunked_both_ways(proxy: Address) -> None:
    async def body() -> object:
        for i in range(4):
            yield f"piece{i}-".encode()
            await asyncio.sleep(0.01)

    async with aiohttp.ClientSession() as session:
        async with session.post(url(proxy, "/stream"), data=body()) as resp:
            assert resp.status == 200
            assert resp.headers.get("Transfer-Encoding") == "chunked"
            assert await resp.read() == b"piece0-piece1-piece2-piece3-"
        async with session.get(url(proxy, "/chunked")) as resp:
            assert await resp.read() == b"part0;part1;part2;part3;part4;"


async def test_large_body_streams_both_ways_with_backpressure(proxy: Address) -> None:
    size = 10 * 1024 * 1024
    block = bytes(range(256)) * 256  # 64 KiB

    async def body() -> object:
        for _ in range(size // len(block)):
            yield block

    got = 0
    async with aiohttp.ClientSession() as session:
        async with session.post(url(proxy, "/stream"), data=body()) as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_chunked(256 * 1024):
                got += len(chunk)
                if got < 2 * 1024 * 1024:
                    await asyncio.sleep(0.001)  # a slow reader first: writes must wait
        async with session.get(url(proxy, f"/big/{size}")) as resp:
            assert resp.headers["Content-Length"] == str(size)
            assert len(await resp.read()) == size
    assert got == size


async def test_expect_100_continue_is_answered_when_the_body_is_read(proxy: Address) -> None:
    async with connect(proxy) as (reader, writer):
        writer.write(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        async with asyncio.timeout(5):
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"hello")
            status, _, body = await read_response(reader)
        assert (status, body) == (200, b"hello")


async def test_http10_and_connection_close(proxy: Address) -> None:
    for request in (
        b"GET /status/200 HTTP/1.0\r\n\r\n",
        b"GET /status/200 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ):
        async with connect(proxy) as (reader, writer):
            writer.write(request)
            async with asyncio.timeout(5):
                status, headers, _ = await read_response(reader)
                assert status == 200
                assert headers["connection"] == "close"
                assert await reader.read() == b""  # and the server closed
    # HTTP/1.0 with keep-alive stays open
    async with connect(proxy) as (reader, writer):
        for _ in range(2):
            writer.write(
                b"POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi"
            )
            async with asyncio.timeout(5):
                status, headers, body = await read_response(reader)
            assert (status, headers["connection"], body) == (200, "keep-alive", b"hi")


async def test_head_request_gets_no_body(proxy: Address) -> None:
    async with connect(proxy) as (reader, writer):
        writer.write(
            b"HEAD /big/1000 HTTP/1.1\r\nHost: a\r\n\r\nGET /big/3 HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"content-length: 1000" in head.lower()
            assert (await read_response(reader))[::2] == (200, b"xxx")


async def test_websocket_upgrade_tunnels_both_ways(proxy: Address) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(url(proxy, "/ws")) as ws:
        for i in range(3):
            await ws.send_str(f"m{i}")
            msg = await asyncio.wait_for(ws.receive(), 5)
            assert msg.data == f"echo:m{i}"


async def test_concurrent_clients_share_pooled_connections(
    proxy: Address, backend: tuple[Address, Backend], pool: UpstreamPool
) -> None:
    # A connection goes back to the pool while the coroutine that used it has not resumed
    # yet; the next request taking it must not be confused with the previous one.
    async def client(n: int) -> None:
        async with aiohttp.ClientSession() as session:
            for i in range(20):
                async with session.post(url(proxy, "/echo"), data=b"%d-%d" % (n, i)) as resp:
                    assert await resp.read() == b"%d-%d" % (n, i)

    async with asyncio.timeout(10):
        await asyncio.gather(*(client(n) for n in range(20)))
    assert len(backend[1].peers) == 400
    assert backend[1].connections <= 20
