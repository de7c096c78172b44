"""An upstream connection whose peer sends bytes no request asked for is closed, never
reused: bytes past the end of a response (in the same read), and bytes on an idle pooled
connection, and a 101 to a request that asked no upgrade. Raw asyncio upstreams on 127.0.0.1
write the exact bytes."""

from __future__ import annotations

import asyncio

import pytest

from tests.proxy.transport.helpers import Address, raw_upstream, read_request
from turnout.proxy.errors import UpstreamProtocolError
from turnout.proxy.transport import UpstreamPool

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
FRESH = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh"


async def get(pool: UpstreamPool, addr: Address, method: str = "GET") -> tuple[int, bytes]:
    resp = await pool.request(
        addr, method=method, target="/", headers=[("host", "up")], body=b"", timeout_ms=2000
    )
    try:
        return resp.status, await resp.read()
    finally:
        resp.release()


@pytest.mark.parametrize(
    ("method", "first", "body"),
    [
        pytest.param("GET", OK + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale", b"ok",
                     id="second-whole-response"),
        pytest.param("GET", OK + b"HTTP/1.1 200 OK\r\nContent-Le", b"ok",
                     id="start-of-a-second-response"),
        pytest.param("GET", OK + b"stale", b"ok", id="body-past-content-length"),
        pytest.param("GET", OK + b"\x00\x01", b"ok", id="garbage-after-the-response"),
        pytest.param("GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n", b"ok", id="after-a-chunked-body"),
        pytest.param("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale", b"",
                     id="a-body-after-a-head-response"),
        pytest.param("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" + OK, b"",
                     id="a-response-after-a-head-response"),
    ],
)  # fmt: skip
async def test_bytes_past_the_response_close_the_connection(
    method: str, first: bytes, body: bytes
) -> None:
    async def surplus_then_clean(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        while True:
            await read_request(reader)
            writer.write(first if n == 1 else FRESH)
            await writer.drain()

    async with raw_upstream(surplus_then_clean) as (addr, connections):
        pool = UpstreamPool()
        try:
            assert await get(pool, addr, method) == (200, body)  # the response itself stands
            assert pool.idle_count(addr) == 0
            for _ in range(3):
                assert await get(pool, addr) == (200, b"fresh")
            assert connections[0] == 2  # a new connection, and that one reused
        finally:
            await pool.close()


async def test_bytes_on_an_idle_connection_take_it_out_of_the_pool() -> None:
    unsolicited = asyncio.Event()

    async def speaks_unasked(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        if n == 1:
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")
            await writer.drain()
            unsolicited.set()
        await reader.read()

    async with raw_upstream(speaks_unasked) as (addr, connections):
        pool = UpstreamPool()
        try:
            assert await get(pool, addr) == (200, b"ok")
            assert pool.idle_count(addr) == 1
            await asyncio.wait_for(unsolicited.wait(), 2)
            async with asyncio.timeout(2):
                while pool.idle_count(addr):
                    await asyncio.sleep(0.005)
            assert await get(pool, addr) == (200, b"ok")
            assert connections[0] == 2
        finally:
            await pool.close()


async def test_a_connection_released_twice_is_pooled_once() -> None:
    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int):
        while True:
            await read_request(reader)
            writer.write(OK)
            await writer.drain()

    async with raw_upstream(keep_alive) as (addr, connections):
        pool = UpstreamPool()
        try:
            assert await get(pool, addr) == (200, b"ok")
            (conn,) = pool._idle[addr]
            pool._put_idle(conn)
            assert pool.idle_count(addr) == 1
            # two concurrent requests cannot share it: the second one opens its own
            assert await asyncio.gather(get(pool, addr), get(pool, addr)) == [(200, b"ok")] * 2
            assert connections[0] == 2
        finally:
            await pool.close()


async def test_a_101_to_a_request_that_asked_no_upgrade_is_refused_and_closed() -> None:
    async def switches(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int):
        await read_request(reader)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                     b"connection: upgrade\r\n\r\nwelcome")  # fmt: skip
        await writer.drain()
        await reader.read()

    async with raw_upstream(switches) as (addr, _):
        pool = UpstreamPool()
        try:
            with pytest.raises(UpstreamProtocolError, match="asked no upgrade"):
                await get(pool, addr)
            async with asyncio.timeout(2):
                while pool.open_count:
                    await asyncio.sleep(0.005)
        finally:
            await pool.close()
