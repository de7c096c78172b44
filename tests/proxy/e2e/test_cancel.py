"""A client that gives up is not the endpoint's fault."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded, route_to

ROUTE = route_to("web-v1")


@bounded(15)
async def test_abandoned_requests_do_not_back_the_endpoint_off(lab: Lab) -> None:
    """Ten clients in a row hang up while the backend is still answering (more than the
    failure-accrual limit of 7); the next request must still be served, not 503."""
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, ROUTE)
    url = f"http://127.0.0.1:{mesh.outbound}/delay/300"
    for _ in range(10):
        async with aiohttp.ClientSession() as session:
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                async with session.get(
                    url, headers={"Host": "web"}, timeout=aiohttp.ClientTimeout(total=0.05)
                ) as resp:
                    await resp.read()
    status, headers, _ = await mesh.get("web", "/echo")
    assert status == 200 and headers["x-backend"] == "v1"
