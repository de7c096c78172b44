"""Transparent capture for real: `mesh proxy-init` and `mesh proxy --transparent` in network
namespaces this test creates (root only; nothing leaves them).

```
ns "pod" (lo holds the ClusterIPs 10.96.0.1x and the pods 10.0.0.1x; veth 10.0.1.2)
  mesh proxy-init --proxy-uid 0 --skip-outbound-ports 9999 --skip-inbound-ports 7071
  mesh proxy -f manifests --transparent  (root, the uid proxy-init lets through)
  servers: v1 10.0.0.11:8080, v2 10.0.0.12:8080, 10.0.0.11:9999 (skipped),
           10.0.0.99:9000 (no Service), app 0.0.0.0:7070, app2 0.0.0.0:7071 (skipped),
           db 10.0.0.13:3306 (speaks first; Service 10.96.0.13:3306 marked opaque)
  client: python http.client as uid 2103 (the app's user): http://10.96.0.10/ etc.
ns "client" (veth 10.0.1.1) ── http://10.0.1.2:7070/ ──► PREROUTING ─► inbound 4143
```

The proxy runs as root rather than 2102: the suite's interpreter lives under /root (0700),
so a proxy of another user cannot start `-f`'s compile child. The rules are the same but
for the uid they let through.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
APPS = Path(__file__).with_name("netns_apps.py")
PY = sys.executable
CLIENT_UID = "2103"
POD_IP, CLIENT_IP = "10.0.1.2", "10.0.1.1"
LOCAL = [
    *("10.96.0.10", "10.96.0.11", "10.96.0.12", "10.96.0.13"),
    *("10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.99"),
]
SKIP_OUT, SKIP_IN = 9999, 7071
METRICS = "http://127.0.0.1:4191/metrics"

pytestmark = pytest.mark.slow  # about 6 s: namespaces, a proxy compiling its manifests


def service(name: str, ip: str, endpoint: str | None) -> str:
    docs = [
        f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: shop}}
spec: {{clusterIP: {ip}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}"""
    ]
    if endpoint is not None:
        docs.append(f"""apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-a, namespace: shop, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints: [{{addresses: [{endpoint}], conditions: {{ready: true}}}}]""")
    return "\n---\n".join(docs)


DB = """apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop, annotations: {config.linkerd.io/opaque-ports: "3306"}}
spec: {clusterIP: 10.96.0.13, ports: [{name: mysql, port: 3306}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-a, namespace: shop, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{name: mysql, port: 3306}]
endpoints: [{addresses: [10.0.0.13], conditions: {ready: true}}]"""

MANIFESTS = "\n---\n".join(
    [
        DB,
        service("web", "10.96.0.10", None),
        service("web-v1", "10.96.0.11", "10.0.0.11"),
        service("web-v2", "10.96.0.12", "10.0.0.12"),
        """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-split, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - backendRefs: [{name: web-v1, port: 80, weight: 3}, {name: web-v2, port: 80, weight: 1}]""",
    ]
)


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=check, env=env)


@dataclass
class Pod:
    ns: str
    client_ns: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def exec(self, *argv: str, ns: str | None = None, uid: str | None = None) -> str:
        user = ["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups"] if uid else []
        return run("ip", "netns", "exec", ns or self.ns, *user, *argv).stdout

    def get(self, url: str, n: int = 1, *, from_client: bool = False) -> dict[str, object]:
        if from_client:
            out = self.exec(PY, str(APPS), "get", url, str(n), ns=self.client_ns)
        else:
            out = self.exec(PY, str(APPS), "get", url, str(n), uid=CLIENT_UID)
        result: dict[str, object] = json.loads(out)
        return result

    def metrics(self) -> str:
        return self.exec(PY, str(APPS), "fetch", METRICS)

    def nat(self) -> str:
        """The nat table without its timestamps and counters."""
        saved = self.exec("iptables-save", "-t", "nat")
        return re.sub(r"\[\d+:\d+\]", "", "\n".join(x for x in saved.splitlines() if x[:1] != "#"))

    def start(self, *argv: str) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.procs.append(proc)
        return proc


def needs() -> str | None:
    """Why this machine cannot run the test (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and iptables)"
    for tool in ("ip", "iptables-save", "iptables-restore", "setpriv"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"{tool} not installed (make tools installs iptables)"
    return None


def setup(pod: Pod) -> None:
    ns, cl = pod.ns, pod.client_ns
    for name in (ns, cl):
        run("ip", "netns", "add", name)
        run("ip", "-n", name, "link", "set", "lo", "up")
    for ip in LOCAL:
        run("ip", "-n", ns, "addr", "add", f"{ip}/32", "dev", "lo")
    run("ip", "-n", ns, "link", "add", "vp", "type", "veth", "peer", "name", "vc", "netns", cl)
    run("ip", "-n", ns, "addr", "add", f"{POD_IP}/24", "dev", "vp")
    run("ip", "-n", cl, "addr", "add", f"{CLIENT_IP}/24", "dev", "vc")
    run("ip", "-n", ns, "link", "set", "vp", "up")
    run("ip", "-n", cl, "link", "set", "vc", "up")


def proxy_init(pod: Pod, *more: str) -> str:
    return pod.exec(
        PY,
        "-m",
        "turnout",
        "proxy-init",
        "--proxy-uid",
        "0",
        "--skip-outbound-ports",
        str(SKIP_OUT),
        "--skip-inbound-ports",
        str(SKIP_IN),
        *more,
    )


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    reason = needs()
    if reason is not None:
        pytest.skip(reason)
    tag = f"{os.getpid() % 100000}"
    pod = Pod(ns=f"turnout-pod-{tag}", client_ns=f"turnout-cli-{tag}")
    manifests = tmp_path_factory.mktemp("capture") / "mesh.yaml"
    manifests.write_text(MANIFESTS)
    try:
        try:
            setup(pod)
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot make network namespaces here: {exc.stderr.strip()}")
        try:
            pod.exec("iptables-save", "-t", "nat")
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"iptables has no nat table here: {exc.stderr.strip()}")
        # the proxy compiles its manifests meanwhile: the rules only need to be in place
        # before the first client connects
        pod.start(
            PY,
            "-m",
            "turnout",
            "proxy",
            "-f",
            str(manifests),
            "-n",
            "shop",
            "--workload",
            "deploy/app",
            "--outbound",
            "127.0.0.1:4140",
            "--inbound",
            "0.0.0.0:4143",
            "--admin",
            "0.0.0.0:4191",
            "--transparent",
        )
        servers = pod.start(
            PY,
            str(APPS),
            "serve",
            "v1=10.0.0.11:8080",
            "v2=10.0.0.12:8080",
            f"skip=10.0.0.11:{SKIP_OUT}",
            "outside=10.0.0.99:9000",
            "greet:db=10.0.0.13:3306",
            "app=0.0.0.0:7070",
            f"app2=0.0.0.0:{SKIP_IN}",
        )
        proxy_init(pod)
        assert servers.stdout is not None and servers.stdout.readline() == "serving\n"
        pod.exec(PY, str(APPS), "wait", "http://127.0.0.1:4191/ready", "20")
        yield pod
    finally:
        for proc in pod.procs:
            proc.terminate()
        for proc in pod.procs:
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        for name in (pod.ns, pod.client_ns):
            run("ip", "netns", "del", name, check=False)


def test_a_plain_client_calling_a_cluster_ip_gets_the_routes_weighted_split(pod: Pod) -> None:
    got = pod.get("http://10.96.0.10/", 80)
    bodies = got["bodies"]
    assert isinstance(bodies, dict) and got["errors"] == []
    assert set(bodies) == {"v1", "v2"} and bodies["v1"] + bodies["v2"] == 80
    assert 45 <= bodies["v1"] <= 75  # weight 3:1 (60 expected)
    assert got["peers"] == ["10.0.0.11", "10.0.0.12"]  # the pods themselves
    metrics = pod.metrics()
    for backend in ("web-v1", "web-v2"):
        assert re.search(
            r'request_total\{direction="outbound",[^}]*authority="web.shop.svc.cluster.local:80"'
            rf'[^}}]*dst_service="{backend}"\}} \d+',
            metrics,
        )


def test_a_call_to_a_pod_address_passes_through_to_that_pod(pod: Pod) -> None:
    got = pod.get("http://10.0.0.12:8080/", 3)
    assert got["bodies"] == {"v2": 3} and got["peers"] == ["10.0.0.12"]
    assert re.search(
        r'request_total\{direction="outbound",[^}]*authority="10.0.0.12:8080"[^}]*'
        r'dst_namespace="passthrough",dst_service="10.0.0.12"\} 3',
        pod.metrics(),
    )


def test_an_address_the_table_does_not_know_is_forwarded_untouched(pod: Pod) -> None:
    assert pod.get("http://10.0.0.99:9000/", 2)["bodies"] == {"outside": 2}
    metrics = pod.metrics()
    assert re.search(
        r'tcp_open_total\{direction="outbound",[^}]*"10.0.0.99:9000"[^}]*\} 2', metrics
    )
    assert 'authority="10.0.0.99:9000"' not in metrics  # bytes, not requests


def test_a_server_first_protocol_behind_an_opaque_service_port_greets_at_once(pod: Pod) -> None:
    out = pod.exec(PY, str(APPS), "greeted", "10.96.0.13", "3306", uid=CLIENT_UID)
    assert json.loads(out) == {"greeting": "db\n"}  # within 3 s: no 10 s detection wait
    assert re.search(
        r'tcp_open_total\{direction="outbound",[^}]*target_addr="10.96.0.13:3306"[^}]*'
        r'dst_namespace="shop",dst_service="db"\} 1',
        pod.metrics(),
    )


def test_skip_ports_bypass_the_proxy(pod: Pod) -> None:
    assert pod.get(f"http://10.0.0.11:{SKIP_OUT}/", 2)["bodies"] == {"skip": 2}
    got = pod.get(f"http://{POD_IP}:{SKIP_IN}/", 2, from_client=True)
    assert got["bodies"] == {"app2": 2} and got["peers"] == [CLIENT_IP]  # no proxy between
    metrics = pod.metrics()
    assert f":{SKIP_OUT}" not in metrics and f'"{SKIP_IN}"' not in metrics


def test_inbound_goes_through_the_proxy_to_the_apps_port_on_localhost(pod: Pod) -> None:
    got = pod.get(f"http://{POD_IP}:7070/", 3, from_client=True)
    assert got["bodies"] == {"app": 3} and got["peers"] == ["127.0.0.1"]  # from the proxy
    metrics = pod.metrics()
    assert re.search(
        r'request_total\{direction="inbound",[^}]*target_addr="127.0.0.1:7070"[^}]*\} 3', metrics
    )
    assert re.search(rf'tcp_open_total\{{direction="inbound",[^}}]*"{POD_IP}:7070"', metrics)
    # the admin port is never captured: reachable as itself from outside
    assert pod.get(f"http://{POD_IP}:4191/ready", from_client=True)["bodies"] == {"ready\n": 1}


def test_proxy_init_twice_gives_the_same_rules_and_dry_run_prints_them(pod: Pod) -> None:
    before = pod.nat()
    out = proxy_init(pod)
    assert out.startswith("proxy-init: nat table updated")
    assert pod.nat() == before
    dry = proxy_init(pod, "--dry-run")
    assert pod.nat() == before
    ours = [x for x in before.splitlines() if "TURNOUT-PROXY-INIT" in x and x.startswith("-A")]
    assert [x for x in dry.splitlines() if x.startswith("-A")] == ours
