"""The viz commands against the Kubernetes source: `mesh serve --kubernetes` (a real process,
the fake API server behind a kubeconfig, only the controller's ClusterRole) with a real
`mesh proxy` of deployment/web connected over ADS, and `mesh stat`, `mesh tap`, `mesh top`
and `mesh diagnostics` reading it the way they read the embedded mode's control plane.

```
FakeApiServer (Service web, EndpointSlice web-abc: 10.0.0.1:8080) <── list+watch ── mesh serve --kubernetes
mesh proxy -n shop --workload deployment/web --inbound ... --app <app> ──ADS──> mesh serve
client ─> proxy inbound ─> app            mesh stat|tap|top|diagnostics --control-plane <admin>
```

`--prometheus-url` names the cluster's Prometheus (here a dead port): `mesh stat` without
`--prometheus` asks it, and says so in one line when it is not there.

The proxy's traffic is inbound (the fake refuses loopback endpoint addresses, as a real API
server does, so nothing outbound could reach a local app); the endpoints shown are the
EndpointSlice's.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.engine.sources.k8s_fake import FakeApiServer
from tests.engine.sources.test_k8s import SERVED, every_kind
from tests.engine.sources.test_k8s_serve import kubeconfig
from tests.proxy.e2e.harness import bounded, dead_port
from tests.support.serving import lines_until_serving
from turnout.engine.sources.k8s.rbac import controller_rules

pytestmark = pytest.mark.slow
POLICY_GROUPS = ("policy.linkerd.io", "security.istio.io")
NO_PROMETHEUS = f"http://127.0.0.1:{dead_port()}"
"""What `--prometheus-url` names: the cluster's Prometheus, here one that is not there."""


class App(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(500 if self.path.startswith("/fail") else 200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def app_server() -> Iterator[int]:
    app = http.server.ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    try:
        yield int(app.server_address[1])
    finally:
        app.shutdown()
        app.server_close()


@dataclass
class Cluster:
    admin: str
    inbound: int


def mesh(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnout", *args], capture_output=True, text=True, timeout=timeout
    )


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@asynccontextmanager
async def cluster(tmp_path: Path, app_port: int) -> AsyncIterator[Cluster]:
    async with FakeApiServer(SERVED.values()) as fake:
        for obj in every_kind("shop"):
            if obj["apiVersion"].split("/")[0] not in POLICY_GROUPS:  # web's inbound is open
                fake.apply(obj)
        fake.enforce(controller_rules())
        config = kubeconfig(tmp_path / "kubeconfig", fake.url)
        serve = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "turnout", "serve", "--kubernetes", "--kubeconfig", str(config),
            "--xds", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--prometheus-url", NO_PROMETHEUS,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        procs = [serve]
        try:
            assert serve.stderr is not None
            err = serve.stderr

            async def why() -> str:
                return (await err.read()).decode()

            lines = await lines_until_serving(serve, timeout_s=20, why=why)
            listening = {ln.split()[0]: ln.rsplit(" ", 1)[1] for ln in lines if "listening" in ln}
            inbound = dead_port()
            proxy = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "turnout", "proxy", "--xds", listening["xds"],
                "--namespace", "shop", "--workload", "deployment/web", "--pod", "web-1",
                "--inbound", f"127.0.0.1:{inbound}", "--app", f"127.0.0.1:{app_port}",
                "--admin", "127.0.0.1:0",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            procs.append(proxy)
            admin = listening["admin"]

            def connected() -> bool:
                with urllib.request.urlopen(f"http://{admin}/debug/proxies", timeout=5) as r:
                    return any(p["admin"] for p in json.loads(r.read())["proxies"])

            async with asyncio.timeout(20):
                while not await asyncio.to_thread(connected):
                    assert proxy.returncode is None, (await proxy.stderr.read()).decode()
                    await asyncio.sleep(0.1)
            async with asyncio.timeout(20):
                while await asyncio.to_thread(get, f"http://127.0.0.1:{inbound}/") != 200:
                    assert proxy.returncode is None, "mesh proxy exited"
                    await asyncio.sleep(0.1)
            yield Cluster(admin=admin, inbound=inbound)
        finally:
            for p in procs:
                if p.returncode is None:
                    p.terminate()
            for p in procs:
                await p.wait()


async def traffic(inbound: int, until: asyncio.Event) -> None:
    while not until.is_set():
        for path in ("/ok", "/ok", "/ok", "/fail"):
            await asyncio.to_thread(get, f"http://127.0.0.1:{inbound}{path}")


@bounded(90)
async def test_stat_tap_top_and_diagnostics_read_a_kubernetes_control_plane(
    tmp_path: Path,
) -> None:
    with app_server() as app_port:
        async with cluster(tmp_path, app_port) as c:
            done = asyncio.Event()
            load = asyncio.create_task(traffic(c.inbound, done))
            try:
                cp = ("--control-plane", c.admin)
                tap = asyncio.to_thread(
                    mesh, "tap", "deploy/web", "-n", "shop", *cp, "--limit", "8", "-o", "json"
                )
                stat = asyncio.to_thread(
                    mesh, "stat", "deploy/web", "-n", "shop", *cp, "--prometheus", "",
                    "-t", "2s", "-o", "json",
                )  # fmt: skip
                top = asyncio.to_thread(
                    mesh, "top", "deploy/web", "-n", "shop", *cp, "--duration", "2"
                )
                tapped, stated, topped = await asyncio.gather(tap, stat, top)
            finally:
                done.set()
                await load
            endpoints = await asyncio.to_thread(
                mesh, "diagnostics", "endpoints", "svc/web", "-n", "shop", *cp
            )
            # Without --prometheus, stat asks the Prometheus the control plane names.
            advertised = await asyncio.to_thread(mesh, "stat", "deploy/web", "-n", "shop", *cp)

    assert tapped.returncode == 0, tapped.stderr
    events = [json.loads(line) for line in tapped.stdout.splitlines()]
    assert len(events) == 8
    assert {e["proxy"]["pod"] for e in events} == {"web-1"}
    assert {e["proxy"]["workload"] for e in events} == {"web"}
    assert {e["path"] for e in events} <= {"/ok", "/fail"}
    assert all(e["dst"] != "0.0.0.0:0" for e in events)

    assert stated.returncode == 0, stated.stderr
    assert "no Prometheus: scraping 1 proxies directly over 2s" in stated.stderr
    [row] = json.loads(stated.stdout)
    assert (row["namespace"], row["name"], row["meshed"]) == ("shop", "web", "1/1")
    assert 0.6 < row["success"] < 0.9  # one request in four answered 500
    assert row["rps"] > 0

    assert topped.returncode == 0, topped.stderr
    ok, fail = (
        next(ln for ln in topped.stdout.splitlines() if f" {p} " in ln) for p in ("/ok", "/fail")
    )
    assert ok.endswith("100.00%") and fail.endswith("0.00%")

    assert endpoints.returncode == 0, endpoints.stderr
    [header, ep] = endpoints.stdout.splitlines()
    assert header.split()[:3] == ["NAMESPACE", "IP", "PORT"]
    assert ep.split()[:3] == ["shop", "10.0.0.1", "8080"]  # the EndpointSlice's, as served

    assert advertised.returncode == 2
    assert advertised.stderr.startswith(f"error: prometheus {NO_PROMETHEUS}"), advertised.stderr
    assert len(advertised.stderr.splitlines()) == 1
