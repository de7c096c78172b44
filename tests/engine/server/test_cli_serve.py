"""`mesh serve` as a real process (ADS + admin on port 0, SIGTERM to stop) and `mesh bootstrap`."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.engine.server.ads_kit import FAST, Tables, backends, node
from tests.engine.server.builders import manifest, mk_route, mk_service, weighted
from tests.support.serving import lines_until_serving
from turnout.cli.main import build_parser, main
from turnout.engine.config import DEFAULT_ADMIN_ADDRESS, DEFAULT_XDS_ADDRESS
from turnout.proxy.xds_client import XdsClient

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT_S = 10.0


def test_bootstrap_prints_the_grpc_xds_bootstrap() -> None:
    out = io.StringIO()
    argv = ["bootstrap", "--xds", "10.0.0.1:18000", "--namespace", "shop"]
    assert main([*argv, "--workload", "deployment/web"], stdout=out) == 0
    assert json.loads(out.getvalue()) == {
        "xds_servers": [
            {
                "server_uri": "10.0.0.1:18000",
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {
            "id": "grpc~shop~deployment/web",
            "cluster": "web",
            "metadata": {"namespace": "shop", "workload": "deployment/web"},
        },
        "server_listener_resource_name_template": "grpc/server?xds.resource.listening_address=%s",
    }


def test_bootstrap_labels_are_node_metadata() -> None:
    out = io.StringIO()
    argv = ["bootstrap", "--xds", "10.0.0.1:18000", "--workload", "deployment/web"]
    labels = ["--label", "app=web", "--label", "app.kubernetes.io/tier=front"]
    assert main([*argv, *labels], stdout=out) == 0
    meta = json.loads(out.getvalue())["node"]["metadata"]
    assert meta["labels"] == {"app": "web", "app.kubernetes.io/tier": "front"}
    err = io.StringIO()
    assert main([*argv, "--label", "app"], stdout=io.StringIO(), stderr=err) == 2
    assert "want KEY=VALUE" in err.getvalue()
    err = io.StringIO()
    assert main([*argv, "--label", "tier=a=b"], stdout=io.StringIO(), stderr=err) == 2
    assert "not a label value: 'a=b'" in err.getvalue()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_serve_watches_serves_ads_and_admin_and_stops_on_sigterm(tmp_path: Path) -> None:
    docs = (mk_service("web"), mk_service("web-v2"))
    (tmp_path / "mesh.yaml").write_text(
        manifest(*docs, mk_route("web", rules=weighted(("web", 70), ("web-v2", 30))))
    )
    code = "import sys; from turnout.cli.main import main; sys.exit(main(sys.argv[1:]))"
    argv = ["serve", "--dir", str(tmp_path), "--xds", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    try:
        lines = await lines_until_serving(proc, timeout_s=TIMEOUT_S)
        xds = lines[0].rsplit(" ", 1)[1]
        admin = "http://" + lines[1].rsplit(" ", 1)[1]
        assert lines[2].endswith("version=1")

        assert await asyncio.to_thread(get, admin + "/live") == (200, "ok\n")
        assert await asyncio.to_thread(get, admin + "/ready") == (200, "ok version=1\n")
        status, text = await asyncio.to_thread(get, admin + "/debug/table")
        assert status == 200 and "service/shop/web:80" in text
        status, text = await asyncio.to_thread(get, admin + "/debug/diagnostics")
        assert status == 200 and json.loads(text)["version"] == 1

        tables = Tables()
        async with XdsClient(xds, node=node(), on_table=tables, settings=FAST):
            table, _ = await tables.next()
            assert backends(table) == {"shop/web:80": 70, "shop/web-v2:80": 30}

        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(TIMEOUT_S):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_serve_listens_on_the_default_addresses_unless_told() -> None:
    args = build_parser().parse_args(["serve", "--dir", "x"])
    assert (args.xds, args.admin) == (DEFAULT_XDS_ADDRESS, DEFAULT_ADMIN_ADDRESS)
    routes = build_parser().parse_args(["routes"])
    assert routes.files is None and routes.control_plane is None  # -> DEFAULT_ADMIN_ADDRESS


@pytest.mark.parametrize("flag", ["--xds", "--admin"])
def test_a_port_in_use_is_one_line_naming_the_flag_and_exit_2(flag: str, tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(manifest(mk_service("web")))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        ports = {"--xds": "127.0.0.1:0", "--admin": "127.0.0.1:0", flag: busy}
        argv = ["serve", "--dir", str(tmp_path), *(x for kv in ports.items() for x in kv)]
        done = subprocess.run(
            [sys.executable, "-m", "turnout", *argv],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S * 3,
            cwd=ROOT,
        )
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: {flag}: cannot listen on {busy}: address already in use\n"
