"""What the pool tolerates from an upstream's response head: at most `max_header_bytes` and
`max_header_count` (the listener's limits, mirrored), else an `UpstreamProtocolError` and
the connection closed, having read little more than the cap; and how long it waits for a
silent upstream when the exchange has no deadline (`read_timeout_ms`). Raw asyncio
upstreams on 127.0.0.1 write the exact bytes."""

from __future__ import annotations

import asyncio

import pytest

from tests.proxy.transport.helpers import Address, CountingHooks, raw_upstream, read_request
from turnout.proxy.errors import UpstreamProtocolError, UpstreamReadTimeout, UpstreamTimeout
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


async def _never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    await read_request(reader)
    await reader.read()  # silent until the pool closes


async def _stalls_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int):
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    await writer.drain()
    await reader.read()


async def test_a_silent_upstream_times_out_without_a_deadline() -> None:
    async with raw_upstream(_never) as (addr, _):
        pool = UpstreamPool(read_timeout_ms=300)
        try:
            with pytest.raises(UpstreamReadTimeout, match="no response head"):
                await pool.request(
                    addr, method="GET", target="/", headers=[], body=b"", timeout_ms=None
                )
            async with asyncio.timeout(2):
                while pool.open_count:  # closed, not pooled
                    await asyncio.sleep(0.005)
        finally:
            await pool.close()


async def test_a_body_that_stops_times_out_without_a_deadline() -> None:
    async with raw_upstream(_stalls_mid_body) as (addr, _):
        pool = UpstreamPool(read_timeout_ms=300)
        try:
            resp = await pool.request(
                addr, method="GET", target="/", headers=[], body=b"", timeout_ms=None
            )
            with pytest.raises(UpstreamReadTimeout, match="more of the response body"):
                await resp.read()
        finally:
            await pool.close()


async def test_the_read_timeout_is_a_silence_not_a_total() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n")
        for _ in range(40):  # 0.8 s in all, never more than 20 ms without a byte
            await asyncio.sleep(0.02)
            writer.write(b"x")
            await writer.drain()
        await reader.read()

    async with raw_upstream(trickle) as (addr, _):
        pool = UpstreamPool(read_timeout_ms=400)
        try:
            resp = await pool.request(
                addr, method="GET", target="/", headers=[], body=b"", timeout_ms=None
            )
            assert await resp.read() == b"x" * 40
        finally:
            await pool.close()


async def test_an_exchange_with_a_deadline_is_not_cut_by_the_read_timeout() -> None:
    async def late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int):
        await read_request(reader)
        await asyncio.sleep(0.6)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    async with raw_upstream(late) as (addr, _):
        pool = UpstreamPool(read_timeout_ms=200)
        try:
            assert await get(pool, addr) == (200, b"ok")  # timeout_ms=10_000: its own
        finally:
            await pool.close()


async def test_deadlines_share_one_timer_that_a_sooner_deadline_moves_up() -> None:
    """Exchanges with a deadline are expired by one pool timer, due at the earliest: a
    shorter deadline sent after a longer one still fails first, none fails before its own
    deadline, and the timer is gone once no exchange has one."""
    async with raw_upstream(_never) as (addr, _):
        pool = UpstreamPool(read_timeout_ms=None)
        loop = asyncio.get_running_loop()

        async def timed(timeout_ms: int) -> float:
            start = loop.time()
            with pytest.raises(UpstreamTimeout):
                await pool.request(
                    addr, method="GET", target="/", headers=[], body=b"", timeout_ms=timeout_ms
                )
            return loop.time() - start

        try:
            slow = asyncio.create_task(timed(600))
            await asyncio.sleep(0.05)
            fast = asyncio.create_task(timed(100))
            assert await fast >= 0.1
            assert not slow.done()  # the sooner deadline was not held up by the later one
            assert await slow >= 0.6
            assert pool._deadline_sweeper is None and not pool._timed
        finally:
            await pool.close()


async def test_many_exchanges_waiting_out_their_deadlines_space_the_sweeps_out() -> None:
    """A sweep walks every exchange with a deadline: with 2,000 in flight, the next one is
    20 ms away at the soonest, whatever deadline is next (about 1 % of the loop)."""

    class Waiting:  # what the sweep reads of a connection whose exchange has a deadline
        def __init__(self, due: float) -> None:
            self.due = due

    pool = UpstreamPool()
    loop = asyncio.get_running_loop()
    now = loop.time()
    waiting = [Waiting(now + 1 + i / 1000) for i in range(2000)]
    pool._timed.update(waiting)  # type: ignore[arg-type]
    try:
        pool._deadline_sweep(loop)
        assert pool._deadline_at >= now + 1  # nothing due yet: the earliest deadline
        waiting[0].due = loop.time() + 0.0001  # one due almost at once
        pool._deadline_sweep(loop)
        assert pool._deadline_at - loop.time() >= 2000 * 0.000_01 * 0.9
    finally:
        await pool.close()
