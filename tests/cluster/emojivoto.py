"""What the walkthrough (test_walkthrough.py) meshes: emojivoto's namespace and `web`
(as its repository ships them), the pods a ReplicaSet sends to admission and the kubelet
reports, and the HTTPRoute it applies."""

from __future__ import annotations

import copy
from typing import Any

import yaml

Obj = dict[str, Any]
APP = "emojivoto"
HASH = "5d4f8c7b9"
"""The pod-template-hash of every ReplicaSet here."""


def pod_of(template: Obj, *, namespace: str, owner: str) -> Obj:
    """The pod a ReplicaSet of Deployment `owner` sends to admission (no name yet)."""
    meta = copy.deepcopy(template["metadata"])
    meta["labels"] = {**meta.get("labels", {}), "pod-template-hash": HASH}
    meta.update(
        generateName=f"{owner}-{HASH}-",
        namespace=namespace,
        ownerReferences=[
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{owner}-{HASH}",
             "uid": "rs-uid", "controller": True}
        ],
    )  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": copy.deepcopy(template["spec"]),
    }


def scheduled(pod: Obj, name: str) -> Obj:
    """`pod` as the API server names it and as the kubelet reports it once it runs (there is
    none here: the test says so)."""
    pod = copy.deepcopy(pod)
    pod["metadata"]["name"] = name
    containers = [c["name"] for c in pod["spec"]["containers"]]
    pod["status"] = {
        "phase": "Running",
        "podIP": "10.0.0.7",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": c, "ready": True} for c in containers],
    }
    return pod


def deployment(name: str, labels: dict[str, str]) -> Obj:
    """An emojivoto Deployment, as its repository ships it."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": APP, "labels": {"app.kubernetes.io/name": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": name,
                    "containers": [
                        {"name": labels["app"], "image": f"buoyantio/emojivoto-{name}:v11",
                         "env": [{"name": "WEB_PORT", "value": "8080"}],
                         "ports": [{"containerPort": 8080, "name": "http"}]}
                    ],
                },
            },
        },
    }  # fmt: skip


def web_manifest() -> str:
    """emojivoto's namespace and web (a ServiceAccount, a Deployment, a Service)."""
    deploy = deployment("web", {"app": "web-svc", "version": "v11"})
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web-svc", "namespace": APP},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.0.20",
            "selector": {"app": "web-svc"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }
    sa = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "web", "namespace": APP},
    }
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP}}
    return yaml.safe_dump_all([ns, sa, deploy, svc])


def redirect_route(path: str) -> Obj:
    parent = {"group": "", "kind": "Service", "name": "web-svc", "port": 80}
    redirect = {
        "type": "RequestRedirect",
        "requestRedirect": {
            "path": {"type": "ReplaceFullPath", "replaceFullPath": path},
            "statusCode": 302,
        },
    }
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web-redirect", "namespace": APP},
        "spec": {"parentRefs": [parent], "rules": [{"filters": [redirect]}]},
    }
