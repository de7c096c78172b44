"""`mesh serve --kubernetes` as a real process against the fake API server (a kubeconfig
file naming the fake's URL): the admin port serves /live, /ready, /metrics and /debug/*,
the server's start-up 503/429 is waited out, and exactly the controller's ClusterRole
(enforced by the fake) is enough to serve and write status."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.engine.sources.k8s_fake import FakeApiServer
from tests.engine.sources.test_k8s import SERVED, every_kind, mk_route
from tests.support.serving import lines_until_serving
from turnout.engine.sources.k8s.rbac import controller_rules

ROOT = Path(__file__).resolve().parents[3]
CODE = "import sys; from turnout.cli.main import main; sys.exit(main(sys.argv[1:]))"


def kubeconfig(path: Path, url: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "turnout-controller", "user": {"token": "not-checked"}}],
        "contexts": [
            {"name": "fake", "context": {"cluster": "fake", "user": "turnout-controller"}}
        ],
        "current-context": "fake",
    }
    path.write_text(json.dumps(config))
    return path


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def until(url: str, status: int, timeout: float = 15.0) -> str:
    async with asyncio.timeout(timeout):
        while True:
            got, text = await asyncio.to_thread(get, url)
            if got == status:
                return text
            await asyncio.sleep(0.05)


async def test_serve_kubernetes_answers_on_its_admin_port_with_only_the_controller_rules(
    tmp_path: Path,
) -> None:
    async with FakeApiServer(SERVED.values()) as fake:
        for obj in every_kind("shop"):
            fake.apply(obj)
        fake.enforce(controller_rules())
        fake.start_up(unavailable_s=0.5, initializing_s=0.5)
        config = kubeconfig(tmp_path / "kubeconfig", fake.url)
        argv = ["serve", "--kubernetes", "--kubeconfig", str(config)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CODE,
            *argv,
            "--xds",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            stderr = proc.stderr

            async def why() -> str:
                return (await stderr.read()).decode()

            lines = await lines_until_serving(proc, timeout_s=15, why=why)
            admin = "http://" + lines[1].rsplit(" ", 1)[1]
            assert await asyncio.to_thread(get, admin + "/live") == (200, "ok\n")
            assert (await until(admin + "/ready", 200)).startswith("ok version=")
            metrics = await until(admin + "/metrics", 200)
            assert "turnout_control_plane_table_version" in metrics
            assert "turnout_xds_connected_clients" in metrics
            diagnostics = json.loads(await until(admin + "/debug/diagnostics", 200))
            assert diagnostics["version"] >= 1 and diagnostics["error"] is None
            assert "service/shop/web:80" in await until(admin + "/debug/table", 200)
            async with asyncio.timeout(10):  # status written back, through the enforced role
                while not fake.get(SERVED["HTTPRoute"], "shop", "web").get("status"):
                    await asyncio.sleep(0.05)
            # An outage; a change made right after the server is back arrives within
            # Flagger's 5 s deadline (default settings: probed at least every 2.4 s).
            fake.start_up(unavailable_s=1.0, initializing_s=0.0)
            fake.close_watches()
            await asyncio.sleep(1.1)
            fake.apply(mk_route("shop", "web", {"web": 50, "web-canary": 50}))
            loop = asyncio.get_running_loop()
            back = loop.time()
            async with asyncio.timeout(5):
                while "weight: 50" not in (await asyncio.to_thread(get, admin + "/debug/table"))[1]:
                    await asyncio.sleep(0.05)
            assert loop.time() - back < 5.0  # measured: 0.8 s
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    # Both start-up answers waited out; no 403: the role suffices.
    assert {status for _, _, status in fake.refusals} == {503, 429}
