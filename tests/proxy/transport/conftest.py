"""Fixtures for the transport tests: a backend, a pool, and the proxy between them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.proxy.transport.helpers import (
    Address,
    Backend,
    CountingHooks,
    aiohttp_backend,
    forwarder,
    running,
)
from turnout.proxy.transport import UpstreamPool


@pytest.fixture
async def backend() -> AsyncIterator[tuple[Address, Backend]]:
    async with aiohttp_backend() as found:
        yield found


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    pool = UpstreamPool(hooks=CountingHooks())
    yield pool
    await pool.close()


@pytest.fixture
async def proxy(backend: tuple[Address, Backend], pool: UpstreamPool) -> AsyncIterator[Address]:
    async with running(forwarder(pool, backend[0])) as addr:
        yield addr
