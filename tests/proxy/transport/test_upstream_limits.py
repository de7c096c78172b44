"""What the pool tolerates from an upstream's response head: at most `max_header_bytes` and
`max_header_count` (the listener's limits, mirrored), else an `UpstreamProtocolError` and
the connection closed, having read little more than the cap. Raw asyncio upstreams on
127.0.0.1 write the exact bytes."""

from __future__ import annotations

import asyncio

import pytest

from tests.proxy.transport.helpers import Address, CountingHooks, raw_upstream, read_request
from turnout.proxy.errors import UpstreamProtocolError
from turnout.proxy.transport import UpstreamPool

CAP = 16 * 1024
HUGE = 16 * 1024 * 1024


async def get(pool: UpstreamPool, addr: Address) -> tuple[int, bytes]:
    resp = await pool.request(
        addr, method="GET", target="/", headers=[("host", "up")], body=b"", timeout_ms=10_000
    )
    try:
        return resp.status, await resp.read()
    finally:
        resp.release()


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"x-big: " + b"a" * HUGE + b"\r\n", id="one-16MB-header"),
        pytest.param(b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 100) for i in range(200)),
                     id="many-headers-over-the-size"),
        pytest.param(b"".join(b"x-h%d: v\r\n" % i for i in range(101)), id="101-headers"),
        pytest.param(b"x-" + b"n" * HUGE + b": v\r\n", id="one-16MB-name"),
    ],
)  # fmt: skip
async def test_a_head_over_the_limits_is_a_protocol_error_read_no_further(head: bytes) -> None:
    async def big_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n" + head + b"content-length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    hooks = CountingHooks()
    async with raw_upstream(big_head) as (addr, _):
        pool = UpstreamPool(hooks=hooks, max_header_bytes=CAP, max_header_count=100)
        try:
            with pytest.raises(UpstreamProtocolError, match="max_header"):
                await get(pool, addr)
            async with asyncio.timeout(2):
                while not hooks.closed:
                    await asyncio.sleep(0.005)
            (info, _), *_ = hooks.closed
            # it stopped reading: the cap plus at most a few reads, not the 16 MB
            assert info.bytes_read < CAP + 1024 * 1024, info.bytes_read
            assert pool.open_count == 0
        finally:
            await pool.close()


async def test_a_head_at_the_limits_is_answered() -> None:
    lines = b"".join(b"x-h%02d: %s\r\n" % (i, b"v" * 100) for i in range(99))

    async def at_cap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n" + lines + b"content-length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    async with raw_upstream(at_cap) as (addr, _):
        pool = UpstreamPool(max_header_bytes=len(lines) + 20, max_header_count=100)
        try:
            assert await get(pool, addr) == (200, b"ok")
        finally:
            await pool.close()
