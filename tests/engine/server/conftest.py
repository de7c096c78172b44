"""Fixtures shared by the ADS server's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from turnout.engine.server import AdsServer, ServerSettings


@pytest.fixture
async def server() -> AsyncIterator[AdsServer]:
    """A real `AdsServer` on 127.0.0.1 (a port the kernel picks), stopped without grace."""
    srv = AdsServer(settings=ServerSettings(stop_grace_ms=0, stop_timeout_ms=2_000))
    await srv.start("127.0.0.1", 0)
    try:
        yield srv
    finally:
        await srv.stop()
