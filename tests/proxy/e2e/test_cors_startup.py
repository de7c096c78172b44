"""A route with a CORS filter no longer stops `mesh proxy -f` at start-up (the translator's
`FilterConfig`-wrapped `CorsPolicy` is read back), and the proxy does CORS: a preflight is
answered by the proxy, an actual request's response gains the headers when its Origin matches."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

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
        exposeHeaders: [x-backend]
    backendRefs: [{name: web-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /open}}]
    filters:
    - type: CORS
      cors:
        allowOrigins: ["*"]
        allowMethods: [GET]
    backendRefs: [{name: web-v1, port: 80}]
""")
GOOD, EVIL = "https://a.example.com", "https://example.com.evil.test"
PREFLIGHT = {"Access-Control-Request-Method": "PUT"}


def cors_of(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("access-control-")}


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
                assert cors_of(resp.headers) == {}
            hdrs = {"Host": "web.shop", "Origin": GOOD}
            async with session.options(url, headers={**hdrs, **PREFLIGHT}) as resp:
                assert resp.status == 200 and "x-backend" not in resp.headers  # not forwarded
                assert cors_of(resp.headers) == {
                    "access-control-allow-origin": GOOD,
                    "access-control-allow-methods": "GET, PUT",
                    "access-control-allow-credentials": "true",
                    "access-control-max-age": "60",
                }
                assert resp.headers["vary"] == "Origin"
            async with session.get(url, headers=hdrs) as resp:
                assert resp.headers["x-backend"] == "v1"
                assert cors_of(resp.headers) == {
                    "access-control-allow-origin": GOOD,
                    "access-control-allow-credentials": "true",
                    "access-control-expose-headers": "x-backend",
                }
                assert resp.headers["vary"] == "Origin"
            for origin in (EVIL, "https://example.com", "http://a.example.com"):
                bad = {"Host": "web.shop", "Origin": origin}
                async with session.options(url, headers={**bad, **PREFLIGHT}) as resp:
                    assert resp.status == 200 and "x-backend" not in resp.headers
                    assert cors_of(resp.headers) == {}
                async with session.get(url, headers=bad) as resp:
                    assert resp.headers["x-backend"] == "v1"
                    assert cors_of(resp.headers) == {}
            open_url = f"http://127.0.0.1:{outbound}/open"
            async with session.get(open_url, headers={"Host": "web.shop", "Origin": EVIL}) as resp:
                assert resp.headers["x-backend"] == "v1"
                assert cors_of(resp.headers) == {"access-control-allow-origin": "*"}
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=15)
    assert proc.returncode == 0, err.decode()
