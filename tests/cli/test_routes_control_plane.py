"""`mesh routes`, `routes explain` and `routes --live` against a running control plane (no -f):
the same output as `-f` on the same manifests, the version on stderr, a rejected file and
why, an unreachable control plane in one line; and the demo's live table reading it.

```
tmp copy of examples/emojivoto ──watch──> DirectorySource -> ControlPlane -> AdsServer
                                                  └─ admin 127.0.0.1:0 <── mesh routes --control-plane
```

The control plane runs in the test's loop; each `mesh` command runs in a thread (it is
synchronous), so the admin port answers while it waits.
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from turnout.cli import demo
from turnout.cli.main import main
from turnout.engine.plane import ControlPlane
from turnout.engine.server import AdsServer, ServerSettings
from turnout.engine.server.admin import admin_app, start_admin
from turnout.engine.sources import DirectorySettings, DirectorySource

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "emojivoto"
ROUTE = Path("mesh") / "30-web-route.yaml"
TIMEOUT_S = 10.0
API_RULE = "httproute/emojivoto/web/rule/1"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@dataclass
class Served:
    directory: Path
    address: str
    plane: ControlPlane

    async def mesh(self, *argv: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(run, *argv)

    async def edit(self, path: Path, old: str, new: str) -> None:
        changes = self.plane.status.changes
        file = self.directory / path
        file.write_text(file.read_text().replace(old, new))
        async with asyncio.timeout(TIMEOUT_S):
            while self.plane.status.changes == changes:
                await asyncio.sleep(0.02)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    directory = tmp_path / "emojivoto"
    shutil.copytree(EXAMPLES, directory)
    server = AdsServer(settings=ServerSettings(stop_grace_ms=0))
    await server.start("127.0.0.1", 0)
    plane = ControlPlane(publish=server.publish)
    settings = DirectorySettings(debounce_ms=20, watch_tick_ms=100, stop_timeout_ms=2_000)
    source = DirectorySource(directory, plane=plane, settings=settings)
    await source.start()
    runner, port = await start_admin(admin_app(plane, server), "127.0.0.1", 0)
    try:
        await source.wait_watching(timeout_ms=int(TIMEOUT_S * 1000))
        yield Served(directory, f"127.0.0.1:{port}", plane)
    finally:
        await runner.cleanup()
        await source.stop()
        await server.stop()


@pytest.mark.parametrize("fmt", ["table", "wide", "json", "yaml"])
async def test_routes_shows_the_served_table_as_f_shows_the_files(served: Served, fmt: str) -> None:
    code, out, err = await served.mesh("routes", "--control-plane", served.address, "-o", fmt)
    assert code == 0, err
    assert err.splitlines()[0] == f"control plane {served.address}: serving version 1"
    _, want, _ = await served.mesh("routes", "-f", str(served.directory), "-o", fmt)
    assert out == want


async def test_a_rejected_file_is_shown_with_why_and_its_last_good_version_served(
    served: Served,
) -> None:
    _, before, _ = await served.mesh("routes", "--control-plane", served.address)
    await served.edit(ROUTE, "weight: 90", "weight: -90")
    code, out, err = await served.mesh("routes", "--control-plane", served.address)
    assert code == 1  # a finding: the control plane rejected a change
    assert out == before  # what traffic follows: the route's last good version
    lines = err.splitlines()
    assert lines[0] == (
        f"control plane {served.address}: serving version 1, 1 input(s) rejected"
        " (last change applied in full: version 1)"
    )
    assert lines[1] == f"rejected {served.directory / ROUTE} (its last good version is served):"
    bad = [line for line in lines if "30-web-route.yaml[0] spec.rules" in line]
    assert bad and all(line.endswith("(FieldValueInvalid)") for line in bad), err
    assert "-90" in bad[0]


async def test_explain_runs_on_the_served_table(served: Served) -> None:
    ask = ["--via", "service/emojivoto/web:80", "--url", "http://web.emojivoto/api/vote"]
    code, out, err = await served.mesh(
        "routes", "explain", "--control-plane", served.address, *ask, "-H", "x-canary: true"
    )
    assert code == 0, err
    _, want, _ = await served.mesh(
        "routes", "explain", "-f", str(served.directory), *ask, "-H", "x-canary: true"
    )
    assert out == want and "web-v2" in out


def test_an_unreachable_control_plane_is_one_line_and_exit_2() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    for argv in (
        ["routes", "--control-plane", address],
        [
            "routes",
            "explain",
            "--control-plane",
            address,
            "--via",
            "service/a/b:80",
            "--url",
            "http://b.a/",
        ],
    ):
        code, out, err = run(*argv)
        assert code == 2 and out == ""
        assert len(err.splitlines()) == 1, err
        assert err.startswith(f"error: cannot reach the control plane at {address}: ")


def test_files_and_a_control_plane_exclude_each_other() -> None:
    code, _, err = run("routes", "-f", str(EXAMPLES), "--control-plane", "127.0.0.1:1")
    assert code == 2 and err == "error: -f and --control-plane exclude each other\n"


@pytest.fixture
async def proxy_metrics() -> AsyncIterator[str]:
    """A proxy's /metrics in this loop: each GET has 10 more successes on web's /api rule."""
    hits = 0
    labels = f'direction="outbound",namespace="x",dst="web.emojivoto",rt_route="{API_RULE}"'

    async def metrics(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        line = f'route_response_total{{{labels},classification="success"}} {10 * hits}\n'
        return web.Response(text=line)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner, port = await start_admin(app, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def api_row(rows: list[dict[str, object]]) -> dict[str, object]:
    [row] = [r for r in rows if r["rule"] == API_RULE and r["view"] == ""]
    return row


async def test_live_json_from_files_and_from_the_control_plane(
    served: Served, proxy_metrics: str
) -> None:
    live = ["--live", "--metrics", proxy_metrics, "--window", "0.2", "-o", "json"]
    for source in (["-f", str(served.directory)], ["--control-plane", served.address]):
        code, out, err = await served.mesh("routes", *source, *live)
        assert code == 0, err
        rows = json.loads(out)
        row = api_row(rows)
        assert row["success_rate"] == 1.0 and isinstance(row["rps"], float) and row["rps"] > 0
        assert row["parent"] == "service/emojivoto/web:80" and "latency_ms_p99" in row
        quiet = [r for r in rows if r["rule"] != API_RULE]
        assert quiet and all(r["success_rate"] is None and r["rps"] is None for r in quiet)


async def test_the_demo_table_shows_what_is_served_and_what_was_rejected(
    served: Served,
) -> None:
    await served.edit(ROUTE, "weight: 90", "weight: -90")
    lines: list[str] = []
    got = await asyncio.to_thread(demo._served_or_error, served.address)
    demo.say_served(lines.append, got, {})
    text = "\n".join(lines)
    web = [line for line in text.splitlines() if line.startswith("service/emojivoto/web:80 ")]
    assert len(web) == 3 and any("emojivoto/web-v1:80 90" in line for line in web), text
    assert f"rejected {served.directory / ROUTE} (its last good version is served):" in text
    assert "(FieldValueInvalid)" in text
