"""`UpstreamPool` against misbehaving upstreams (raw asyncio servers) and aiohttp's server:
stale keep-alive connections, refused connects, timeouts, resets and malformed answers."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from tests.proxy.transport.helpers import (
    Address,
    Backend,
    CountingHooks,
    raw_upstream,
    read_request,
)
from turnout.proxy.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from turnout.proxy.transport import UpstreamPool

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def get(pool: UpstreamPool, addr: Address, **kw: object) -> tuple[int, bytes]:
    resp = await pool.request(
        addr,
        method=str(kw.get("method", "GET")),
        target="/echo",
        headers=[("host", "up")],
        body=kw.get("body", b""),  # type: ignore[arg-type]
        timeout_ms=kw.get("timeout_ms", 2000),  # type: ignore[arg-type]
    )
    try:
        return resp.status, await resp.read()
    finally:
        resp.release()


async def test_requests_reuse_the_last_returned_connection(
    backend: tuple[Address, Backend],
) -> None:
    hooks = CountingHooks()
    pool = UpstreamPool(hooks=hooks)
    try:
        # two at once need two connections; afterwards both are idle and reused LIFO
        await asyncio.gather(get(pool, backend[0]), get(pool, backend[0]))
        assert pool.idle_count(backend[0]) == 2
        for _ in range(5):
            assert await get(pool, backend[0], method="POST", body=b"x") == (200, b"x")
        assert len(hooks.opened) == 2
        last = {info.requests for info in hooks.opened}
        assert last == {1, 6}  # LIFO: one connection took all five
    finally:
        await pool.close()
    assert len(hooks.closed) == 2
    assert all(info.bytes_read > 0 and info.bytes_written > 0 for info, _ in hooks.closed)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def test_a_request_the_backend_read_is_not_sent_again_by_the_pool() -> None:
    """The backend answers one request, then reads the next and resets: it saw that
    request, so the pool reports an error (a try for the retry policy), no silent resend."""
    seen = [0]

    async def one_then_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int):
        await read_request(reader)
        seen[0] += 1
        writer.write(OK)  # keep-alive...
        await writer.drain()
        await read_request(reader)  # ...but the next request is read, then reset
        seen[0] += 1
        reset(writer)

    async with raw_upstream(one_then_reset) as (addr, count):
        pool = UpstreamPool()
        try:
            assert await get(pool, addr) == (200, b"ok")
            with pytest.raises(UpstreamConnectError):
                await get(pool, addr, method="POST", body=b"replayable")
            assert seen[0] == 2  # not 3: the reset request was not sent a second time
            assert count[0] == 1
        finally:
            await pool.close()


async def test_idle_connection_closed_by_the_backend_is_replaced() -> None:
    """The benign case: the backend's keep-alive timeout closes an idle pooled connection;
    the next request goes on a fresh one and the backend sees it once."""
    seen = [0]

    async def one_then_idle_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        await read_request(reader)
        seen[0] += 1
        writer.write(OK)
        await writer.drain()
        if n == 1:
            writer.close()  # the keep-alive timeout, while the connection is idle

    async with raw_upstream(one_then_idle_close) as (addr, count):
        pool = UpstreamPool()
        try:
            assert await get(pool, addr) == (200, b"ok")
            for _ in range(100):  # until the pool has seen the close (bounded)
                if pool.idle_count(addr) == 0:
                    break
                await asyncio.sleep(0.01)
            assert await get(pool, addr, method="POST", body=b"x") == (200, b"ok")
            assert seen[0] == 2  # one each: nothing sent twice
            assert count[0] == 2
        finally:
            await pool.close()


async def test_connect_refused() -> None:
    sock = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = sock.sockets[0].getsockname()[1]
    sock.close()
    await sock.wait_closed()
    pool = UpstreamPool()
    with pytest.raises(UpstreamConnectError) as info:
        await get(pool, ("127.0.0.1", port))
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.endpoint == ("127.0.0.1", port)


async def test_upstream_timeout_closes_the_connection() -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        await asyncio.sleep(10)

    async with raw_upstream(never) as (addr, _):
        pool = UpstreamPool()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(UpstreamTimeout):
            await get(pool, addr, timeout_ms=100)
        assert loop.time() - started < 1
        assert pool.open_count == 0 or pool.idle_count(addr) == 0
        await pool.close()


async def test_timeout_covers_a_slow_body() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await asyncio.sleep(10)

    async with raw_upstream(trickle) as (addr, _):
        pool = UpstreamPool()
        with pytest.raises(UpstreamTimeout):
            await get(pool, addr, timeout_ms=150)
        await pool.close()


async def test_reset_mid_body_is_a_protocol_error() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.transport.abort()

    async with raw_upstream(cut) as (addr, _):
        pool = UpstreamPool()
        with pytest.raises(UpstreamProtocolError):
            await get(pool, addr)
        await pool.close()


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"NOT HTTP AT ALL\r\n\r\n", id="garbage"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", id="bad-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-", id="cut-in-head"),
    ],
)
async def test_malformed_response_is_a_protocol_error(answer: bytes) -> None:
    async def bad(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()

    async with raw_upstream(bad) as (addr, _):
        pool = UpstreamPool()
        with pytest.raises(UpstreamProtocolError):
            await get(pool, addr)
        await pool.close()


async def test_closed_before_any_answer_on_a_fresh_connection_is_a_connect_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)

    async with raw_upstream(hang_up) as (addr, _):
        pool = UpstreamPool()
        with pytest.raises(UpstreamConnectError):
            await get(pool, addr)
        await pool.close()


async def test_close_delimited_and_interim_responses() -> None:
    async def old_style(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int):
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil the end")
        await writer.drain()

    async with raw_upstream(old_style) as (addr, _):
        pool = UpstreamPool()
        assert await get(pool, addr) == (200, b"until the end")
        assert pool.open_count == 0
        await pool.close()


async def test_idle_connections_expire_and_are_capped(backend: tuple[Address, Backend]) -> None:
    pool = UpstreamPool(idle_timeout_ms=50, max_idle_per_endpoint=1)
    try:
        await asyncio.gather(*(get(pool, backend[0]) for _ in range(3)))
        assert pool.idle_count(backend[0]) == 1
        await asyncio.sleep(0.2)
        assert pool.idle_count(backend[0]) == 0
        assert pool.open_count == 0
    finally:
        await pool.close()


async def test_header_injection_is_refused(backend: tuple[Address, Backend]) -> None:
    pool = UpstreamPool()
    with pytest.raises(UpstreamError):
        await pool.request(
            backend[0],
            method="GET",
            target="/",
            headers=[("x-evil", "a\r\nx-injected: 1")],
            body=b"",
            timeout_ms=1000,
        )
    await pool.close()
