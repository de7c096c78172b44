"""`started_unless_stopped`: the demo waits for its children, unless Ctrl-C comes first."""

from __future__ import annotations

import asyncio

import pytest

from turnout.demo.lifecycle import DemoError, started_unless_stopped


async def test_a_start_that_finishes_first_is_started() -> None:
    stop = asyncio.Event()
    assert await asyncio.wait_for(started_unless_stopped(asyncio.sleep(0), stop), 5)


async def test_a_stop_first_cancels_the_start_and_drops_its_demo_error() -> None:
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def start() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise DemoError("web not ready") from None

    asyncio.get_running_loop().call_later(0.01, stop.set)
    assert not await asyncio.wait_for(started_unless_stopped(start(), stop), 5)
    assert cancelled.is_set()


async def test_a_start_that_fails_raises_its_error() -> None:
    async def start() -> None:
        raise DemoError("emoji does not accept")

    with pytest.raises(DemoError, match="emoji does not accept"):
        await asyncio.wait_for(started_unless_stopped(start(), asyncio.Event()), 5)
