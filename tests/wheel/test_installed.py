"""The `mesh` a non-editable install gives, run from outside the clone: every core command
works with nothing but the wheel (package data for the built-in CRDs, the demo's sample app
and the canary steps; the clone's `examples/` are only the user's input files here).

Each command runs as its own process with a timeout, in an empty working directory, so the
clone's `turnout/` cannot be imported by accident (`test_the_wheel_is_what_runs` checks).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EMOJIVOTO = EXAMPLES / "emojivoto"
TIMEOUT_S = 60


def mesh(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "mesh"), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def test_the_wheel_is_what_runs(wheel_venv: Path, tmp_path: Path) -> None:
    code = "import turnout, turnout.cli.main; print(turnout.__file__)"
    got = subprocess.run(
        [str(wheel_venv / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=tmp_path,
        check=True,
    )
    where = Path(got.stdout.strip())
    assert "site-packages" in where.parts, where
    assert not where.is_relative_to(ROOT / "turnout")
    assert not list((wheel_venv / "lib").glob("python*/site-packages/__editable__*"))
    for data in ("engine/crds", "demo/examples/emojivoto/mesh", "demo/examples/canary/linkerd"):
        folder = where.parent / data
        assert folder.is_dir() and not folder.is_symlink(), folder
    grafana = sorted(p.name for p in (where.parent / "viz/grafana").glob("*.json"))
    assert grafana == ["control-plane.json", "namespace.json", "route.json", "workload.json"]


def test_grafana_dashboards_come_from_the_wheel(wheel_venv: Path, tmp_path: Path) -> None:
    got = mesh(wheel_venv, "install", "--grafana-json", str(tmp_path / "g"), cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    for name in ("control-plane", "namespace", "workload", "route"):
        shipped = (ROOT / "turnout/viz/grafana" / f"{name}.json").read_text()
        assert (tmp_path / "g" / f"turnout-{name}.json").read_text() == shipped


def test_version_and_python_dash_m(wheel_venv: Path, tmp_path: Path) -> None:
    got = mesh(wheel_venv, "version", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert re.fullmatch(r"mesh \d+\.\d+\.\d+\S*\n", got.stdout)
    other = subprocess.run(
        [str(wheel_venv / "bin" / "python"), "-m", "turnout", "version"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=tmp_path,
    )
    assert other.stdout == got.stdout


def test_validate_routes_explain_and_test(wheel_venv: Path, tmp_path: Path) -> None:
    got = mesh(wheel_venv, "validate", "-f", str(EMOJIVOTO), cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert re.search(r"\d+ object\(s\) valid", got.stdout)

    got = mesh(wheel_venv, "routes", "-f", str(EMOJIVOTO), cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert "HTTPRoute/emojivoto/web" in got.stdout

    via = ("--via", "service/emojivoto/web:80", "--url", "http://web.emojivoto/")
    got = mesh(wheel_venv, "routes", "explain", "-f", str(EMOJIVOTO), *via, "-H", "x-canary: true", cwd=tmp_path)  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert "web-v2" in got.stdout

    contracts = sorted(str(p) for p in (EXAMPLES / "contracts").glob("*.yaml"))
    got = mesh(wheel_venv, "test", "-f", str(EMOJIVOTO), *contracts, cwd=tmp_path)
    assert got.returncode == 0, got.stdout + got.stderr
    assert re.search(r"\b[1-9]\d* passed, 0 failed", got.stdout)


def test_demo_offline(wheel_venv: Path, tmp_path: Path) -> None:
    got = mesh(wheel_venv, "demo", "--offline", cwd=tmp_path)
    assert got.returncode == 0, got.stdout[-2000:] + got.stderr[-2000:]
    assert "$ mesh validate" in got.stdout
    assert re.search(r"\b[1-9]\d* passed, 0 failed", got.stdout)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def poll(url: str, *, until: float, want: int = 200) -> tuple[int, str]:
    got = (0, "")
    while time.monotonic() < until:
        got = get(url)
        if got[0] == want:
            return got
        time.sleep(0.05)
    return got


@contextlib.contextmanager
def running(argv: list[str], *, cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_line(log: Path, pattern: str, *, proc: subprocess.Popen[bytes], until: float) -> str:
    while time.monotonic() < until:
        m = re.search(pattern, log.read_text(errors="replace"), re.MULTILINE)
        if m:
            return m.group(1)
        assert proc.poll() is None, log.read_text(errors="replace")
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} in:\n{log.read_text(errors='replace')}")


def test_serve_dir_reaches_ready_with_a_table_mesh_routes_reads(
    wheel_venv: Path, tmp_path: Path
) -> None:
    manifests = tmp_path / "manifests"
    shutil.copytree(EMOJIVOTO, manifests)
    argv = [str(wheel_venv / "bin" / "mesh"), "serve", "--dir", str(manifests)]
    argv += ["--xds", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
    log = tmp_path / "serve.log"
    until = time.monotonic() + TIMEOUT_S
    with running(argv, cwd=tmp_path, log=log) as proc:
        admin = wait_line(log, r"^admin listening on (\S+)$", proc=proc, until=until)
        status, body = poll(f"http://{admin}/ready", until=until)
        assert status == 200 and body.startswith("ok version="), (status, body)
        status, table = get(f"http://{admin}/debug/table")
        assert status == 200
        assert "httproute/emojivoto/web" in table
        got = mesh(wheel_venv, "routes", "--control-plane", admin, cwd=tmp_path)
        assert got.returncode == 0, got.stderr
        assert "HTTPRoute/emojivoto/web" in got.stdout
        assert f"control plane {admin}: serving version" in got.stderr


def test_serve_dashboard_serves_its_page_and_the_packaged_static_files(
    wheel_venv: Path, tmp_path: Path
) -> None:
    """`mesh serve --dashboard` of the installed wheel: the page, htmx and the stylesheet
    come from the package data (nothing from a CDN), the routes view reads the table."""
    manifests = tmp_path / "manifests"
    shutil.copytree(EMOJIVOTO, manifests)
    argv = [str(wheel_venv / "bin" / "mesh"), "serve", "--dir", str(manifests)]
    argv += ["--xds", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--dashboard", "127.0.0.1:0"]
    log = tmp_path / "serve.log"
    until = time.monotonic() + TIMEOUT_S
    with running(argv, cwd=tmp_path, log=log) as proc:
        url = wait_line(log, r"^dashboard listening on (\S+)$", proc=proc, until=until)
        admin = wait_line(log, r"^admin listening on (\S+)$", proc=proc, until=until)
        poll(f"http://{admin}/ready", until=until)
        status, page = get(url)
        assert status == 200 and '<script src="/static/htmx.min.js">' in page, page
        assert "https://" not in page and "//unpkg" not in page
        status, js = get(url + "static/htmx.min.js")
        assert status == 200 and "htmx" in js and len(js) > 40_000
        status, css = get(url + "static/dashboard.css")
        assert status == 200 and "failing" in css
        status, licence = get(url + "static/htmx.LICENSE")
        assert status == 200 and "BSD" in licence
        status, routes = get(url + "routes")
        assert status == 200 and "HTTPRoute/emojivoto/web" in routes, routes


ROUTED = """\
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web-v2, namespace: shop}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-v2-1
  namespace: shop
  labels: {{kubernetes.io/service-name: web-v2}}
addressType: IPv4
ports: [{{port: {port}}}]
endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: shop}}
spec:
  parentRefs: [{{group: "", kind: Service, name: web, port: 80}}]
  rules:
  - backendRefs: [{{name: web-v2, port: 80}}]
"""


class _Backend(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"web-v2 saw {self.path}".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_proxy_f_answers_a_routed_request(wheel_venv: Path, tmp_path: Path) -> None:
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    try:
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTED.format(port=backend.server_address[1]))
        outbound, admin = free_port(), free_port()
        argv = [str(wheel_venv / "bin" / "mesh"), "proxy", "-f", str(routes)]
        argv += ["--namespace", "shop", "--outbound", f"127.0.0.1:{outbound}"]
        argv += ["--admin", f"127.0.0.1:{admin}"]
        until = time.monotonic() + TIMEOUT_S
        with running(argv, cwd=tmp_path, log=tmp_path / "proxy.log") as proc:
            status, _ = poll(f"http://127.0.0.1:{admin}/ready", until=until)
            assert status == 200, (tmp_path / "proxy.log").read_text()
            request = urllib.request.Request(
                f"http://127.0.0.1:{outbound}/hello", headers={"Host": "web.shop"}
            )
            with urllib.request.urlopen(request, timeout=5) as resp:
                assert resp.status == 200
                assert resp.read() == b"web-v2 saw /hello"
            assert proc.poll() is None
    finally:
        backend.shutdown()
        backend.server_close()


@pytest.mark.parametrize("missing", ["validate", "routes", "proxy"])
def test_a_missing_file_is_one_line_not_a_traceback(
    wheel_venv: Path, tmp_path: Path, missing: str
) -> None:
    got = mesh(wheel_venv, missing, "-f", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert got.returncode == 2, got
    assert "Traceback" not in got.stderr
    assert got.stderr.count("\n") == 1 and "nope.yaml" in got.stderr, got.stderr


def test_proxy_terminates_tls_on_an_https_gateway_port(wheel_venv: Path, tmp_path: Path) -> None:
    """The example's HTTPS listener, from the wheel: its certificate by SNI, 421 for a Host
    that is not the listener's."""
    outbound, admin = free_port(), free_port()
    argv = [str(wheel_venv / "bin" / "mesh"), "proxy", "-f", str(EMOJIVOTO)]
    argv += ["--gateway", "emojivoto/public:443", "--outbound", f"127.0.0.1:{outbound}"]
    argv += ["--admin", f"127.0.0.1:{admin}"]
    until = time.monotonic() + TIMEOUT_S
    with running(argv, cwd=tmp_path, log=tmp_path / "proxy.log"):
        status, _ = poll(f"http://127.0.0.1:{admin}/ready", until=until)
        assert status == 200, (tmp_path / "proxy.log").read_text()
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the example's is self-signed
        with (
            socket.create_connection(("127.0.0.1", outbound), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="www.emojivoto.example") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
            assert der is not None and b"emojivoto.example" in der
            tls.sendall(b"GET / HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 421 "), answer[:200]


def test_install_renders_the_control_plane_and_the_packaged_crds(
    wheel_venv: Path, tmp_path: Path
) -> None:
    """`mesh install` and `mesh install --crds` read only what the wheel ships (the CRDs are
    package data), and stdout is nothing but the manifest."""
    import yaml

    got = mesh(wheel_venv, "install", "--ha", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(got.stdout)]
    assert kinds[0] == "Namespace" and kinds[-1] == "MutatingWebhookConfiguration"
    assert {"Deployment", "PodDisruptionBudget", "ClusterRole", "Secret"} <= set(kinds)
    got = mesh(wheel_venv, "install", "--crds", "--ignore-cluster", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    crds = [d["metadata"]["name"] for d in yaml.safe_load_all(got.stdout)]
    assert len(crds) == len(list((ROOT / "crds").glob("*.yaml")))
    assert "standard-install.yaml" in got.stderr
    got = mesh(wheel_venv, "uninstall", "--ha", cwd=tmp_path)
    assert got.returncode == 0 and len(list(yaml.safe_load_all(got.stdout))) == len(kinds)


WEB_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: emojivoto}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: web
      containers:
      - name: web
        image: web:1
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /ready, port: http}}
"""


def test_inject_uninject_and_proxy_init_from_the_wheel(wheel_venv: Path, tmp_path: Path) -> None:
    """`kubectl get deploy -o yaml | mesh inject - | kubectl apply -f -` as the wheel runs
    it: the webhook's annotation, or (``--manual``) the sidecar and init container,
    idempotent, `uninject` gives back the input; `mesh proxy-init --dry-run` prints the
    iptables-restore rules without touching any."""
    import yaml

    src = tmp_path / "web.yaml"
    src.write_text(WEB_DEPLOYMENT)
    marked = mesh(wheel_venv, "inject", str(src), cwd=tmp_path)
    assert marked.returncode == 0, marked.stderr
    template = yaml.safe_load(marked.stdout)["spec"]["template"]
    assert template["metadata"]["annotations"] == {"turnout.dev/inject": "enabled"}
    injected = mesh(wheel_venv, "inject", "--manual", str(src), cwd=tmp_path)
    assert injected.returncode == 0, injected.stderr
    assert 'deployment "web" injected' in injected.stderr
    pod = yaml.safe_load(injected.stdout)["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["turnout-proxy", "web"]  # proxy first
    assert [c["name"] for c in pod["initContainers"]] == ["turnout-init"]
    assert "--port-name" in pod["containers"][0]["args"]
    (tmp_path / "injected.yaml").write_text(injected.stdout)
    again = mesh(wheel_venv, "inject", "--manual", "injected.yaml", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout == injected.stdout
    back = mesh(wheel_venv, "uninject", "injected.yaml", cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert yaml.safe_load(back.stdout) == yaml.safe_load(WEB_DEPLOYMENT)
    rules = mesh(
        wheel_venv, "proxy-init", "--dry-run", "--skip-outbound-ports", "443", cwd=tmp_path
    )
    assert rules.returncode == 0, rules.stderr
    lines = rules.stdout.splitlines()
    assert lines[0] == "*nat" and lines[-1] == "COMMIT"
    assert any("--dports 53,443 " in line and "RETURN" in line for line in lines)  # DNS too


async def test_check_pre_from_the_wheel_against_an_api_server(
    wheel_venv: Path, tmp_path: Path
) -> None:
    """`mesh check --pre` of the wheel against the fake API server (tests/engine/sources/
    k8s_fake_cluster.py; no real one runs here): the kubernetes client, the access reviews
    and the Gateway API CRD lookups all work from the installed package."""
    import asyncio

    from tests.cluster.check_kit import mk_crd, write_kubeconfig
    from tests.engine.sources.k8s_fake_cluster import ClusterFakeApiServer
    from turnout.cluster.check.pre import GATEWAY_API_KINDS

    async with ClusterFakeApiServer() as api:
        for spec in GATEWAY_API_KINDS:
            api.apply(mk_crd(spec))
        kc = write_kubeconfig(tmp_path / "kc", api.url)
        proc = await asyncio.create_subprocess_exec(
            str(wheel_venv / "bin" / "mesh"), "check", "--pre", "--kubeconfig", str(kc),
            cwd=tmp_path, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    text = out.decode()
    assert proc.returncode == 0, text + err.decode()
    assert "√ can query the Kubernetes API" in text
    assert "√ Gateway API CRDs are installed" in text
    assert "Status check results are √" in text


class _Collector(http.server.BaseHTTPRequestHandler):
    """OTLP/HTTP's ``POST /v1/traces`` (JSON): keeps each body on the server."""

    server: _CollectorServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.bodies.append((self.path, self.headers["content-type"], json.loads(body)))
        self.server.received.set()
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _CollectorServer(http.server.ThreadingHTTPServer):
    bodies: list[tuple[str, str, Any]]
    received: threading.Event


class _SeesTraceparent(_Backend):
    def do_GET(self) -> None:
        self.server.traceparents.append(self.headers.get("traceparent", ""))  # type: ignore[attr-defined]
        super().do_GET()


def test_proxy_exports_its_span_over_otlp_http(wheel_venv: Path, tmp_path: Path) -> None:
    """`--trace-otlp` from the wheel alone (no opentelemetry-proto; xds-protos' older copy
    of it is never imported): the span reaches a collector, child of the caller's span, and
    the backend's traceparent names it."""
    collector = _CollectorServer(("127.0.0.1", 0), _Collector)
    collector.bodies, collector.received = [], threading.Event()
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SeesTraceparent)
    backend.traceparents = []  # type: ignore[attr-defined]
    for server in (collector, backend):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    trace_id, caller = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    try:
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTED.format(port=backend.server_address[1]))
        outbound, admin = free_port(), free_port()
        argv = [str(wheel_venv / "bin" / "mesh"), "proxy", "-f", str(routes)]
        argv += ["--namespace", "shop", "--outbound", f"127.0.0.1:{outbound}"]
        argv += ["--admin", f"127.0.0.1:{admin}", "--workload", "deployment/client"]
        argv += ["--trace-otlp", f"127.0.0.1:{collector.server_address[1]}"]
        until = time.monotonic() + TIMEOUT_S
        with running(argv, cwd=tmp_path, log=tmp_path / "proxy.log") as proc:
            status, _ = poll(f"http://127.0.0.1:{admin}/ready", until=until)
            assert status == 200, (tmp_path / "proxy.log").read_text()
            headers = {"Host": "web.shop", "traceparent": f"00-{trace_id}-{caller}-01"}
            request = urllib.request.Request(f"http://127.0.0.1:{outbound}/hi", headers=headers)
            with urllib.request.urlopen(request, timeout=5) as resp:
                assert resp.status == 200
            assert proc.poll() is None
        # stopping (SIGTERM) flushes the queued span
        assert collector.received.wait(TIMEOUT_S), (tmp_path / "proxy.log").read_text()
    finally:
        for server in (collector, backend):
            server.shutdown()
            server.server_close()
    ((path, content_type, body),) = collector.bodies
    assert (path, content_type) == ("/v1/traces", "application/json")
    (resource_spans,) = body["resourceSpans"]
    resource = {a["key"]: a["value"] for a in resource_spans["resource"]["attributes"]}
    assert resource["service.name"] == {"stringValue": "client"}
    ((span,),) = [s["spans"] for s in resource_spans["scopeSpans"]]
    assert (span["traceId"], span["parentSpanId"]) == (trace_id, caller)
    assert backend.traceparents == [f"00-{trace_id}-{span['spanId']}-01"]  # type: ignore[attr-defined]
