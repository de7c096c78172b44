"""The control plane's objects: namespace, RBAC, the controller Deployment, its Services.

```
Namespace turnout
ServiceAccount ──ClusterRoleBinding──> ClusterRole turnout-controller = rbac.controller_rules()
Deployment turnout-controller (mesh serve --kubernetes ... --leader-elect)
   ├── :8086 xDS + identity <── Service turnout-xds, Service turnout-identity
   ├── :9990 admin          <── Service turnout-admin       (/ready, /live probes)
   ├── :8443 injector       <── Service turnout-injector:443
   └── :50750 dashboard     <── Service turnout-dashboard     (viz.dashboard; port-forward)
PodDisruptionBudget (maxUnavailable 1)                       with podDisruptionBudget
```

The pod runs as `names.PROXY_UID` (the image's user), non-root, with a read-only root
filesystem, no privilege escalation and no capabilities; the two Secrets are mounted
read-only where `mesh serve --identity-dir` and `--injector-cert-dir` read them, and an
emptyDir backs /tmp. Deliberately not here: the Secrets' contents (`identity`, `webhook`).
"""

from __future__ import annotations

from typing import Any

from turnout.cluster import names
from turnout.cluster.install.labels import labels, metadata, selector
from turnout.cluster.install.values import Values
from turnout.engine.sources.k8s.rbac import controller_rules

Raw = dict[str, Any]

COMPONENT = "controller"
RBAC = "rbac.authorization.k8s.io/v1"


def serve_args(values: Values) -> list[str]:
    """`mesh serve` as every controller replica runs it (the image's entrypoint is `mesh`)."""
    viz = []
    if values.viz.dashboard:
        viz += ["--dashboard", f"0.0.0.0:{names.DASHBOARD_PORT}"]
    if values.viz.prometheus_url is not None:
        viz += ["--prometheus-url", values.viz.prometheus_url]
    return [
        "serve",
        "--kubernetes",
        "--xds",
        f"0.0.0.0:{names.XDS_PORT}",
        "--admin",
        f"0.0.0.0:{names.ADMIN_PORT}",
        "--identity-dir",
        names.IDENTITY_DIR,
        "--injector",
        f"0.0.0.0:{names.INJECTOR_PORT}",
        "--injector-cert-dir",
        names.INJECTOR_CERT_DIR,
        "--leader-elect",
        *viz,
    ]


def namespace(values: Values) -> Raw:
    meta = metadata(values.namespace, None, COMPONENT)
    meta["annotations"] = {names.INJECT_ANNOTATION: "disabled"}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def service_account(values: Values) -> Raw:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(names.CONTROLLER, values.namespace, COMPONENT),
    }


def cluster_role() -> Raw:
    return {
        "apiVersion": RBAC,
        "kind": "ClusterRole",
        "metadata": metadata(names.CONTROLLER, None, COMPONENT),
        "rules": [rule.to_raw() for rule in controller_rules()],
    }


def cluster_role_binding(values: Values) -> Raw:
    return {
        "apiVersion": RBAC,
        "kind": "ClusterRoleBinding",
        "metadata": metadata(names.CONTROLLER, None, COMPONENT),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": names.CONTROLLER,
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": names.CONTROLLER, "namespace": values.namespace}
        ],
    }


def _resources(values: Values) -> Raw:
    out: Raw = {}
    for which in ("requests", "limits"):
        q = getattr(values.resources, which)
        got = {k: v for k, v in (("cpu", q.cpu), ("memory", q.memory)) if v is not None}
        if got:
            out[which] = got
    return out


def _affinity(values: Values) -> Raw | None:
    term = {
        "labelSelector": {"matchLabels": selector(COMPONENT)},
        "topologyKey": "kubernetes.io/hostname",
    }
    if values.anti_affinity == "required":
        return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    if values.anti_affinity == "preferred":
        weighted = {"weight": 100, "podAffinityTerm": term}
        return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [weighted]}}
    return None


def _probe(path: str, *, period: int, failures: int) -> Raw:
    return {
        "httpGet": {"path": path, "port": "admin"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def _env_from_pod(name: str, field_path: str) -> Raw:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def _container(values: Values) -> Raw:
    return {
        "name": COMPONENT,
        "image": values.image,
        "imagePullPolicy": values.image_pull_policy,
        "args": serve_args(values),
        "env": [
            _env_from_pod("POD_NAME", "metadata.name"),
            _env_from_pod("POD_NAMESPACE", "metadata.namespace"),
            # the injector writes the same image into the pods' sidecars
            {"name": names.PROXY_IMAGE_ENV, "value": values.image},
        ],
        "ports": [
            {"name": "grpc-xds", "containerPort": names.XDS_PORT, "protocol": "TCP"},
            {"name": "admin", "containerPort": names.ADMIN_PORT, "protocol": "TCP"},
            {"name": "injector", "containerPort": names.INJECTOR_PORT, "protocol": "TCP"},
            *(
                [{"name": "dashboard", "containerPort": names.DASHBOARD_PORT, "protocol": "TCP"}]
                if values.viz.dashboard
                else []
            ),
        ],
        "readinessProbe": _probe("/ready", period=5, failures=3),
        "livenessProbe": {**_probe("/live", period=10, failures=3), "initialDelaySeconds": 10},
        "resources": _resources(values),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": names.PROXY_UID,
            "runAsGroup": names.PROXY_UID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "identity", "mountPath": names.IDENTITY_DIR, "readOnly": True},
            {"name": "injector-tls", "mountPath": names.INJECTOR_CERT_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def deployment(values: Values) -> Raw:
    """One replica: surge first (no gap). Several: one at a time may go, since a required
    anti-affinity leaves no node for a surge pod when replicas = nodes."""
    pod_spec: Raw = {
        "serviceAccountName": names.CONTROLLER,
        "securityContext": {
            "runAsNonRoot": True,
            "fsGroup": names.PROXY_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(values)],
        "volumes": [
            {
                "name": "identity",
                "secret": {"secretName": names.IDENTITY_SECRET, "defaultMode": 0o440},
            },
            {
                "name": "injector-tls",
                "secret": {"secretName": names.INJECTOR_TLS_SECRET, "defaultMode": 0o440},
            },
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    affinity = _affinity(values)
    if affinity:
        pod_spec["affinity"] = affinity
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(names.CONTROLLER, values.namespace, COMPONENT),
        "spec": {
            "replicas": values.replicas,
            "selector": {"matchLabels": selector(COMPONENT)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1 if values.replicas > 1 else 0},
            },
            "template": {
                "metadata": {
                    "labels": labels(COMPONENT),
                    # the control plane is never meshed (the webhook skips its namespace too)
                    "annotations": {names.INJECT_ANNOTATION: "disabled"},
                },
                "spec": pod_spec,
            },
        },
    }


def pod_disruption_budget(values: Values) -> Raw:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(names.CONTROLLER, values.namespace, COMPONENT),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(COMPONENT)}},
    }


def service(values: Values, name: str, *, port: int, target: int, port_name: str) -> Raw:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, values.namespace, COMPONENT),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(COMPONENT),
            "ports": [{"name": port_name, "port": port, "targetPort": target, "protocol": "TCP"}],
        },
    }


def services(values: Values) -> list[Raw]:
    """xDS and identity (one port, two names), admin, the injector on 443, the dashboard."""
    dashboard = service(
        values,
        names.DASHBOARD_SERVICE,
        port=names.DASHBOARD_PORT,
        target=names.DASHBOARD_PORT,
        port_name="http",
    )
    return [
        service(
            values, names.XDS_SERVICE, port=names.XDS_PORT, target=names.XDS_PORT, port_name="grpc"
        ),
        service(
            values,
            names.IDENTITY_SERVICE,
            port=names.XDS_PORT,
            target=names.XDS_PORT,
            port_name="grpc",
        ),
        service(
            values,
            names.ADMIN_SERVICE,
            port=names.ADMIN_PORT,
            target=names.ADMIN_PORT,
            port_name="admin-http",
        ),
        service(
            values, names.INJECTOR_SERVICE, port=443, target=names.INJECTOR_PORT, port_name="https"
        ),
        *([dashboard] if values.viz.dashboard else []),
    ]
