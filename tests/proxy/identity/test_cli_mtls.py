"""`mesh proxy --identity` as real processes (uvloop, as users run it): a client proxy and
a server proxy get leaves from a real Certify service and talk mTLS; the app sees the
verified `l5d-client-id`, a plaintext client on the same port cannot forge it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import bounded, dead_port, start_cli_proxy, wait_admin_ready
from tests.proxy.identity.kit import API, WEB, identity_service
from tests.proxy.identity.test_mtls_e2e import service

pytestmark = pytest.mark.slow


async def stop(proc: asyncio.subprocess.Process) -> str:
    if proc.returncode is None:
        proc.terminate()
    _, err = await proc.communicate()
    return err.decode()


@bounded(60)
async def test_two_mesh_proxy_processes_talk_mtls(tmp_path: Path) -> None:
    async with identity_service(tmp_path) as ca:
        app = await Backend("api").start()
        inbound, outbound, admin_s, admin_c = (dead_port() for _ in range(4))
        manifests = tmp_path / "mesh.yaml"
        manifests.write_text(service("api", inbound, API))
        common = ("-f", str(manifests), "--namespace", "shop", "--identity-addr", ca.target)
        server = await start_cli_proxy(
            *common, "--workload", "deployment/api",
            "--inbound", f"127.0.0.1:{inbound}", "--app", f"127.0.0.1:{app.port}",
            "--admin", f"127.0.0.1:{admin_s}",
            "--identity", API, "--identity-token-file", str(ca.token_file("api")),
        )  # fmt: skip
        client = await start_cli_proxy(
            *common, "--workload", "deployment/web",
            "--outbound", f"127.0.0.1:{outbound}", "--admin", f"127.0.0.1:{admin_c}",
            "--identity", WEB, "--identity-token-file", str(ca.token_file("web")),
        )  # fmt: skip
        try:
            await wait_admin_ready(admin_s)
            await wait_admin_ready(admin_c)
            async with aiohttp.ClientSession() as session:
                host = {"Host": "api.shop.svc.cluster.local", "l5d-client-id": "forged"}
                async with session.get(f"http://127.0.0.1:{outbound}/", headers=host) as resp:
                    assert resp.status == 200, await resp.text()
                    echo = json.loads(await resp.read())
                assert echo["headers"]["l5d-client-id"] == WEB
                async with session.get(f"http://127.0.0.1:{inbound}/", headers=host) as resp:
                    assert resp.status == 200
                    echo = json.loads(await resp.read())
                assert "l5d-client-id" not in echo["headers"]
        finally:
            errs = [await stop(p) for p in (client, server)]
            await app.stop()
        assert not any("Traceback" in e for e in errs), errs
