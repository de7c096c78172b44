"""An endpoint's expected identity comes from the Pod its EndpointSlice entry names (the
pod's service account, as Linkerd's destination service derives it); the annotation
`identity.turnout.dev/name` on the slice still wins; an unknown Pod gives none (plaintext)."""

from __future__ import annotations

from pathlib import Path

from turnout.engine.pipeline import compile_files

MANIFESTS = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 8080}]
endpoints:
- addresses: [10.0.0.5]
  targetRef: {kind: Pod, name: web-abc, namespace: shop}
- addresses: [10.0.0.6]
  targetRef: {kind: Pod, name: web-gone, namespace: shop}
- addresses: [10.0.0.7]
---
apiVersion: v1
kind: Pod
metadata: {name: web-abc, namespace: shop, labels: {app: web}}
spec:
  serviceAccountName: web
  containers: [{name: app, image: web:1, ports: [{containerPort: 8080}]}]
"""


def identities(tmp: Path, text: str) -> dict[str, str | None]:
    f = tmp / "m.yaml"
    f.write_text(text)
    table = compile_files([f]).result.table
    return {e.address: e.identity for c in table.clusters for e in c.endpoints}


def test_endpoints_take_their_pods_service_account(tmp_path: Path) -> None:
    assert identities(tmp_path, MANIFESTS) == {
        "10.0.0.5": "web.shop.serviceaccount.identity.cluster.local",
        "10.0.0.6": None,
        "10.0.0.7": None,
    }


def test_the_slice_annotation_wins(tmp_path: Path) -> None:
    text = MANIFESTS.replace(
        "labels: {kubernetes.io/service-name: web}}",
        "labels: {kubernetes.io/service-name: web},"
        " annotations: {identity.turnout.dev/name: x.shop.serviceaccount.identity.cluster.local}}",
    )
    assert set(identities(tmp_path, text).values()) == {
        "x.shop.serviceaccount.identity.cluster.local"
    }
