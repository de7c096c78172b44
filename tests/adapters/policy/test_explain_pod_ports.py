"""`mesh routes explain --from-identity/--from-ip` with a Pod among the files: its named
container ports resolve the Service's named `targetPort` and the Server's `port: http`,
and its HTTP probes are Linkerd's default probe route (as the proxy's `--port-name` and
`--probe`)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.adapters.policy.test_validate_cli import INGRESS, run

SEED_NAMED = """
apiVersion: v1
kind: Service
metadata: {name: web-svc, namespace: emojivoto}
spec:
  selector: {app: web-svc}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: emojivoto, labels: {app: web-svc}}
spec:
  serviceAccountName: web
  containers:
  - name: web-svc
    image: web:1
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {path: /ready, port: http}}
---
apiVersion: policy.linkerd.io/v1beta1
kind: Server
metadata: {name: web-http, namespace: emojivoto}
spec:
  podSelector: {matchLabels: {app: web-svc}}
  port: http
  proxyProtocol: HTTP/1
---
apiVersion: policy.linkerd.io/v1beta1
kind: ServerAuthorization
metadata: {name: web-ingress, namespace: emojivoto}
spec:
  server: {name: web-http}
  client:
    meshTLS:
      serviceAccounts: [{name: ingress-nginx, namespace: ingress-nginx}]
"""


def explain(tmp_path: Path, path: str, *who: str) -> dict[str, object]:
    f = tmp_path / "seed.yaml"
    f.write_text(SEED_NAMED)
    code, out, err = run(
        "routes", "explain", "-f", str(f), "--via", "service/emojivoto/web-svc:80",
        "--url", f"http://web-svc.emojivoto{path}", *who, "-o", "json",
    )  # fmt: skip
    assert code == 0, err
    decision: dict[str, object] = json.loads(out)["authorization"]
    return decision


def test_a_named_server_port_is_resolved_through_the_pods_container_ports(tmp_path: Path) -> None:
    ok = explain(tmp_path, "/", "--from-identity", INGRESS)
    assert ok["allowed"] is True and ok["port"] == 8080
    assert ok["server"] == "server/emojivoto/web-http"
    stranger = "web.emojivoto.serviceaccount.identity.cluster.local"
    assert explain(tmp_path, "/", "--from-identity", stranger)["allowed"] is False


def test_the_pods_probe_path_is_allowed_from_anyone(tmp_path: Path) -> None:
    probe = explain(tmp_path, "/ready", "--from-ip", "10.0.0.1")
    assert probe["allowed"] is True and probe["decided_by"] == "default/probe"
    assert explain(tmp_path, "/other", "--from-ip", "10.0.0.1")["allowed"] is False
