"""`mesh tap|top|diagnostics` against a real control plane and real proxies.

```
mesh serve --dir (Service emoji -> 127.0.0.1:<app>)  <──ADS──  mesh proxy web-a, web-b (deploy/web)
   admin /tap ── fan-in ── each proxy's admin /tap         curl ─> proxy outbound ─> app
mesh tap deploy/web -n shop ─> the control plane's /tap
```
One module-scoped mesh; each test drives its own requests and reads its own tap stream.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.proxy.e2e.harness import NS, dead_port, service_yaml

pytestmark = pytest.mark.slow
TIMEOUT_S = 30.0


class App(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 500 if self.path.startswith("/fail") else 200
        self.send_response(status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Mesh:
    xds: str
    admin: str
    outbound: dict[str, int]
    """pod -> its proxy's outbound port."""
    app_port: int


def mesh_cmd(*args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnout", *args], capture_output=True, text=True, timeout=timeout
    )


def until(check: object, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not callable(check) or not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    app = http.server.ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    app_port = app.server_address[1]
    manifests = tmp_path_factory.mktemp("manifests")
    (manifests / "mesh.yaml").write_text(service_yaml("emoji", [app_port]))
    procs: list[subprocess.Popen[str]] = []
    try:
        serve = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "turnout",
                "serve",
                "--dir",
                str(manifests),
                "--xds",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(serve)
        assert serve.stdout is not None
        lines: dict[str, str] = {}
        while "serving" not in lines:
            line = serve.stdout.readline()
            assert line, f"mesh serve exited: {lines}"
            lines[line.split()[0]] = line.split()[-1] if "listening" in line else line
        xds, admin = lines["xds"], lines["admin"]
        outbound = {}
        for pod in ("web-a", "web-b"):
            port = dead_port()
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "turnout",
                        "proxy",
                        "--xds",
                        xds,
                        "--namespace",
                        NS,
                        "--workload",
                        "deployment/web",
                        "--pod",
                        pod,
                        "--outbound",
                        f"127.0.0.1:{port}",
                        "--admin",
                        "127.0.0.1:0",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            outbound[pod] = port
        until(lambda: len(proxies(admin)) == 2, "two proxies on the control plane")
        yield Mesh(xds=xds, admin=admin, outbound=outbound, app_port=app_port)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)
            if p.stdout is not None:
                p.stdout.close()
        app.shutdown()
        app.server_close()


def proxies(admin: str) -> list[dict[str, object]]:
    with urllib.request.urlopen(f"http://{admin}/debug/proxies", timeout=5) as resp:
        found: list[dict[str, object]] = json.loads(resp.read())["proxies"]
        return [p for p in found if p["admin"]]


def call(mesh: Mesh, pod: str, path: str) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{mesh.outbound[pod]}{path}",
        headers={"host": f"emoji.{NS}.svc.cluster.local"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def tap(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "turnout", "tap", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def traffic_until_done(mesh: Mesh, proc: subprocess.Popen[str], paths: list[str]) -> None:
    """Send `paths` through both proxies until the tap process exits (its --limit)."""
    deadline = time.monotonic() + TIMEOUT_S
    while proc.poll() is None:
        assert time.monotonic() < deadline, "tap never reached its --limit"
        for pod in mesh.outbound:
            for path in paths:
                call(mesh, pod, path)


def test_tap_by_workload_fans_in_both_proxies_with_real_dst(mesh: Mesh) -> None:
    proc = tap("deploy/web", "-n", NS, "--control-plane", mesh.admin, "--limit", "12", "-o", "json")
    traffic_until_done(mesh, proc, ["/tapped"])
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert {e["proxy"]["pod"] for e in events} == {"web-a", "web-b"}
    reqs = [e for e in events if e["type"] == "req"]
    assert reqs and all(e["dst"] == f"127.0.0.1:{mesh.app_port}" for e in reqs)
    assert all(e["dst_service"] == "emoji" and e["path"] == "/tapped" for e in reqs)


def test_a_proxy_joining_mid_tap_is_fanned_in_and_one_leaving_ends_nothing(mesh: Mesh) -> None:
    proc = tap(*("deploy/web", "-n", NS, "--control-plane", mesh.admin, "--limit", "6"))
    until(lambda: call(mesh, "web-a", "/before") == 200, "the tap stream open")
    port = dead_port()
    late = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "turnout",
            "proxy",
            "--xds",
            mesh.xds,
            "--namespace",
            NS,
            "--workload",
            "deployment/web",
            "--pod",
            "web-c",
            "--outbound",
            f"127.0.0.1:{port}",
            "--admin",
            "127.0.0.1:0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        until(lambda: len(proxies(mesh.admin)) == 3, "the third proxy on the control plane")
        mesh.outbound["web-c"] = port
        deadline = time.monotonic() + TIMEOUT_S
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the joining proxy's events never came"
            call(mesh, "web-c", "/late")
    finally:
        mesh.outbound.pop("web-c", None)
        late.terminate()
        late.wait(timeout=20)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert ":path=/late" in out
    until(lambda: len(proxies(mesh.admin)) == 2, "the third proxy gone")
    assert call(mesh, "web-a", "/after") == 200


def test_a_request_answered_without_an_endpoint_names_the_listener_not_0000(mesh: Mesh) -> None:
    proc = tap(*("po/web-a", "-n", NS, "--control-plane", mesh.admin, "--limit", "1", "-o", "json"))
    deadline = time.monotonic() + TIMEOUT_S
    while proc.poll() is None:
        assert time.monotonic() < deadline
        req = urllib.request.Request(
            f"http://127.0.0.1:{mesh.outbound['web-a']}/nowhere", headers={"host": "nope.example"}
        )
        try:
            urllib.request.urlopen(req, timeout=10).close()
        except urllib.error.HTTPError as exc:
            exc.close()
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    [event] = [json.loads(line) for line in out.splitlines()]
    assert event["path"] == "/nowhere" and event["dst"] == f"127.0.0.1:{mesh.outbound['web-a']}"


def test_tap_filters_text_and_wide_lines(mesh: Mesh) -> None:
    proc = tap("deploy/web", "-n", NS, "--control-plane", mesh.admin, "--limit", "3")
    proc2 = tap(
        *("deploy/web", "-n", NS, "--control-plane", mesh.admin, "--limit", "3", "-o", "wide"),
        *("--path", "/only", "--to", "svc/emoji", "--method", "GET"),
    )
    deadline = time.monotonic() + TIMEOUT_S
    while proc.poll() is None or proc2.poll() is None:
        assert time.monotonic() < deadline
        call(mesh, "web-a", "/other")
        call(mesh, "web-a", "/only/this")
    out, _ = proc.communicate()
    wide, err = proc2.communicate()
    assert proc2.returncode == 0, err
    first = out.splitlines()[0]
    assert first.startswith("req id=") and " proxy=out src=127.0.0.1:" in first
    assert f"dst=127.0.0.1:{mesh.app_port} tls=" in first and ":method=GET" in first
    lines = wide.splitlines()
    assert [line.split()[0] for line in lines] == ["req", "rsp", "end"]
    assert ":path=/only/this" in lines[0] and "/other" not in wide
    assert "dst_ns=shop dst_res=svc/emoji src_ns=shop src_pod=web-a src_res=deploy/web" in lines[0]
    assert ":status=200 latency=" in lines[1]


def test_top_aggregates_the_tap_stream(mesh: Mesh) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "turnout",
            "top",
            "deploy/web",
            "-n",
            NS,
            "--control-plane",
            mesh.admin,
            "--duration",
            "3",
            "--hide-sources",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while proc.poll() is None:
        call(mesh, "web-b", "/top")
        call(mesh, "web-b", "/fail")
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    head, *rows = out.strip().splitlines()
    assert head.split() == [
        *("Destination", "Method", "Path", "Count", "Best", "Worst", "Last", "Success", "Rate")
    ]
    by_path = {r.split()[2]: r.split() for r in rows}
    assert by_path["/top"][0] == "emoji" and by_path["/top"][-1] == "100.00%"
    assert int(by_path["/top"][3]) >= 1 and by_path["/fail"][-1] == "0.00%"


def test_diagnostics_proxy_metrics_and_endpoints(mesh: Mesh) -> None:
    res = mesh_cmd(
        "diagnostics", "proxy-metrics", "deploy/web", "-n", NS, "--control-plane", mesh.admin
    )
    assert res.returncode == 0, res.stderr
    heads = [line for line in res.stdout.splitlines() if line.startswith("# POD ")]
    assert sorted(h.split()[2] for h in heads) == ["web-a", "web-b"]
    assert "request_total{" in res.stdout or "# TYPE" in res.stdout
    res = mesh_cmd("diagnostics", "endpoints", "svc/emoji", "-n", NS, "--control-plane", mesh.admin)
    assert res.returncode == 0, res.stderr
    head, row = res.stdout.strip().splitlines()
    assert head.split()[:5] == ["NAMESPACE", "IP", "PORT", "POD", "SERVICE"]
    assert row.split()[:3] == [NS, "127.0.0.1", str(mesh.app_port)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("tap", "foo/bar"), "error: unknown target kind 'foo'"),
        (("tap", "deploy"), "error: target must be KIND/NAME"),
        (("diagnostics", "endpoints", "deploy/web"), "error: target must be svc/NAME"),
    ],
)
def test_bad_targets_are_one_line_exit_2(argv: tuple[str, ...], message: str) -> None:
    res = mesh_cmd(*argv, "--control-plane", f"127.0.0.1:{dead_port()}")
    assert res.returncode == 2 and res.stderr.startswith(message), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_an_unreachable_control_plane_is_one_line(tmp_path: Path) -> None:
    res = mesh_cmd("tap", "deploy/web", "--control-plane", f"127.0.0.1:{dead_port()}")
    assert res.returncode == 2, res.stderr
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach the control plane at 127.0.0.1:")
