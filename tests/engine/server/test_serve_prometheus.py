"""`mesh serve --prometheus :0 --prometheus-sd FILE` as a real process: it starts Debian's
`prometheus`, which scrapes a proxy that connects over ADS and the control plane's admin
port, and SIGTERM stops both and removes Prometheus' temp dir. Bad flags are one line.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import aiohttp
import pytest

from tests.engine.server.builders import manifest, mk_service
from tests.proxy.e2e.harness import bounded
from tests.support.serving import lines_until_serving
from turnout.cli.main import main
from turnout.proxy.process import Address, ProxyConfig, XdsSource
from turnout.proxy.runner import start_proxy, stop_proxy
from turnout.proxy.xds_client import NodeInfo

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT_S = 20.0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def up(session: aiohttp.ClientSession, url: str, job: str) -> bool:
    query = urllib.parse.urlencode({"query": f'up{{job="{job}"}} == 1'})
    async with session.get(f"{url}/api/v1/query?{query}") as resp:
        return bool((await resp.json())["data"]["result"])


@pytest.mark.slow
@bounded(45)
async def test_serve_prometheus_scrapes_a_connected_proxy_and_stops_with_sigterm(
    tmp_path: Path,
) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed: `make tools` installs Debian's package")
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "mesh.yaml").write_text(manifest(mk_service("web")))
    sd = tmp_path / "targets.json"
    argv = ["serve", "--dir", str(manifests), "--xds", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "turnout",
        *argv,
        "--prometheus",
        "127.0.0.1:0",
        "--prometheus-sd",
        str(sd),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    try:
        lines = await lines_until_serving(proc, timeout_s=TIMEOUT_S)
        xds = lines[0].rsplit(" ", 1)[1]
        assert f"prometheus targets in {sd}" in lines
        [started] = [x for x in lines if x.startswith("prometheus listening on ")]
        url, pid_field = started.removeprefix("prometheus listening on ").split()
        pid = int(pid_field.removeprefix("pid="))
        assert json.loads(sd.read_text()) == []

        config = ProxyConfig(
            namespace="shop",
            workload_name="web",
            outbound=Address(host="127.0.0.1", port=0),
            admin=Address(host="127.0.0.1", port=0),
        )
        node = NodeInfo(id="shop/web/p", cluster="shop", namespace="shop", workload="web", pod="p")
        proxy, task = await start_proxy(config, XdsSource(target=xds, node=node))
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                async with asyncio.timeout(TIMEOUT_S):
                    while not (
                        await up(session, url, "turnout-proxies")
                        and await up(session, url, "turnout-control-plane")
                    ):
                        await asyncio.sleep(0.2)
            [group] = json.loads(sd.read_text())
            assert group["labels"] == {"namespace": "shop", "workload": "web", "pod": "p"}
        finally:
            await stop_proxy(proxy, task)

        workdir = Path(f"/proc/{pid}/cwd").resolve()  # Prometheus runs in its temp dir
        assert (workdir / "prometheus.yml").exists()
        proc.terminate()
        async with asyncio.timeout(TIMEOUT_S):
            assert await proc.wait() == 0
        assert not alive(pid)  # Prometheus stopped with the control plane
        assert not workdir.exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_bad_prometheus_flags_and_no_binary_are_one_line_naming_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first through a real `python -m turnout` process, the rest through the same
    `main` in this process (a process each cost 2 s of imports)."""
    no_binary = "error: --prometheus: no prometheus executable (make tools installs Debian's)"
    argv = ["serve", "--dir", str(tmp_path), "--xds", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
    done = subprocess.run(
        [sys.executable, "-m", "turnout", *argv, "--prometheus", "nowhere"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == "error: --prometheus: want HOST:PORT, got 'nowhere'\n", done.stderr
    for flags, path, message in [
        (["--prometheus-sd", str(tmp_path / "no" / "t.json")], None, "error: --prometheus-sd:"),
        (["--prometheus", "127.0.0.1:0"], str(tmp_path), no_binary),  # PATH without it
        (["--prometheus-url", "prom:9090"], None, "error: --prometheus-url: not an http(s) URL"),
        (
            ["--prometheus-url", "http://prom:9090", "--prometheus", "127.0.0.1:0"],
            None,
            "error: --prometheus-url names a Prometheus; --prometheus starts one: not both",
        ),
    ]:
        with monkeypatch.context() as env:
            if path is not None:
                env.setenv("PATH", path)
            out, err = io.StringIO(), io.StringIO()
            assert main([*argv, *flags], stdout=out, stderr=err) == 2, err.getvalue()
        assert err.getvalue().startswith(message), err.getvalue()
        assert err.getvalue().count("\n") == 1, err.getvalue()
