"""`mesh proxy -f` as users run it: a process that compiles the manifests in a child,
serves the route, answers /ready, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import (
    bounded,
    dead_port,
    start_cli_proxy,
    wait_admin_ready,
)
from tests.proxy.e2e.manifests import smoke_manifests


@bounded(30)
async def test_mesh_proxy_from_manifests_routes_and_stops_on_sigterm(
    lab: Lab, tmp_path: Path
) -> None:
    manifests = await smoke_manifests(lab, tmp_path)
    outbound, admin = dead_port(), dead_port()
    proc = await start_cli_proxy(
        *("-f", str(manifests), "--namespace", "shop", "--workload", "deployment/client"),
        *("--outbound", f"127.0.0.1:{outbound}", "--admin", f"127.0.0.1:{admin}"),
    )
    try:
        await wait_admin_ready(admin)  # the child compile and the listeners take a moment
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            url = f"http://127.0.0.1:{outbound}/v2/x"
            async with session.get(url, headers={"Host": "web.shop"}) as resp:
                assert resp.status == 200 and resp.headers["x-backend"] == "v2"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=10)
    assert proc.returncode == 0, err.decode()
