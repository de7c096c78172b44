"""A route with a CORS filter no longer stops `mesh proxy -f` at start-up: the translator's
`FilterConfig`-wrapped `CorsPolicy` is read back and the proxy serves the route."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import (
    bounded,
    httproute,
    service_yaml,
    start_cli_proxy,
    wait_admin_ready,
)

CORS_ROUTE = httproute("""
  - filters:
    - type: CORS
      cors:
        allowOrigins: ["https://*.example.com"]
        allowMethods: [GET, PUT]
        allowCredentials: true
        maxAge: 60
    backendRefs: [{name: web-v1, port: 80}]
""")


@bounded(40)
async def test_mesh_proxy_f_with_a_cors_route_starts_and_answers(lab: Lab, tmp_path: Path) -> None:
    v1 = await lab.backend("v1")
    manifests = tmp_path / "mesh.yaml"
    docs = [service_yaml("web", []), service_yaml("web-v1", [v1]), CORS_ROUTE]
    manifests.write_text("\n---\n".join(docs))
    proc = await start_cli_proxy(
        *("-f", str(manifests), "--namespace", "shop", "--workload", "deployment/client"),
        *("--outbound", ":0", "--admin", ":0"),
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=30)).decode()
        assert "outbound 127.0.0.1:" in line, line
        outbound = int(line.split("outbound 127.0.0.1:")[1].split(",")[0])
        admin = int(line.split("admin 127.0.0.1:")[1].split()[0].rstrip(","))
        await wait_admin_ready(admin)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            url = f"http://127.0.0.1:{outbound}/x"
            async with session.get(url, headers={"Host": "web.shop"}) as resp:
                assert (resp.status, resp.headers["x-backend"]) == (200, "v1")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=15)
    assert proc.returncode == 0, err.decode()
