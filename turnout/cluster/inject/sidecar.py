"""One pod (a Pod or a workload's pod template) with the proxy added, or taken out again.

```
inject_pod(pod, workload, settings, namespace_annotations)
   annotations (namespace's config.turnout.dev/*, the pod's on top) -> ProxyConfig
   spec.containers[0]      turnout-proxy: mesh proxy --xds ... --transparent (PROXY_UID),
                           --port-name/--probe from the app containers (`pod_ports.py`),
                           --app-probes: their httpGet probes, now on the admin port's
                           /app-health/<container>/<kind> (turnout.dev/app-probes keeps the
                           originals; config.turnout.dev/rewrite-app-probes: "false" = off)
                           (native sidecar: spec.initContainers[-], restartPolicy: Always)
   spec.initContainers[-]  turnout-init:  mesh proxy-init ... (NET_ADMIN, NET_RAW, uid 0)
   spec.volumes[-]         the projected token (audience identity.turnout.dev), the
                           init container's xtables lock (an emptyDir on /run)
   metadata.annotations    turnout.dev/injected: <version>, kubectl's default-container
uninject_pod(pod)          all of that removed again (and turnout.dev/inject: enabled),
                           the original probes put back
```

`mesh inject --manual` and the webhook both call `inject_pod`; the webhook sends the
difference as a JSONPatch (`patch.py`), so the two give the same pod. The proxy is the
first container, as Linkerd's is, so the kubelet starts it before the app. A pod that
already has a `turnout-proxy` container is left as it is: inject twice = once.
`workload_of` names the pod's workload the way Linkerd's labels do: a pod of a ReplicaSet
of a Deployment is ``deployment/NAME`` (the ReplicaSet's name without its
``pod-template-hash``), so the proxy's metrics carry the label Flagger queries.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import turnout
from turnout.cluster import names
from turnout.cluster.inject.pod_ports import encode, pod_port_args, restore_probes, rewrite_probes
from turnout.cluster.inject.settings import (
    DEFAULT_TOKEN_EXPIRATION_S,
    InjectSettings,
    ProxyConfig,
    proxy_config,
)
from turnout.engine.identity.settings import TOKEN_AUDIENCE

Obj = dict[str, Any]

TOKEN_VOLUME = "turnout-identity-token"
XTABLES_VOLUME = "turnout-proxy-init-xtables-lock"
"""iptables takes its lock in /run; the init container's root filesystem is read-only."""
OUR_VOLUMES = frozenset({TOKEN_VOLUME, XTABLES_VOLUME})
TEMPLATE_HASH = "pod-template-hash"
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
THIRD_PARTY_SIDECARS = frozenset({"istio-proxy", "linkerd-proxy", "envoy", "envoy-sidecar"})
"""Another mesh's proxy: a pod with one of these containers is not injected."""
_OWNER_KINDS = {
    "ReplicaSet": "replicaset",
    "StatefulSet": "statefulset",
    "DaemonSet": "daemonset",
    "Job": "job",
    "CronJob": "cronjob",
    "ReplicationController": "replicationcontroller",
    "Deployment": "deployment",
}


def containers(spec: Mapping[str, Any], key: str = "containers") -> list[Obj]:
    value = spec.get(key)
    return [c for c in value if isinstance(c, dict)] if isinstance(value, list) else []


def is_injected(spec: Mapping[str, Any]) -> bool:
    """The pod has the proxy (a container, or a native sidecar among the init containers)."""
    return any(
        c.get("name") == names.PROXY_CONTAINER
        for c in (*containers(spec), *containers(spec, "initContainers"))
    )


def third_party_sidecar(spec: Mapping[str, Any]) -> str | None:
    for c in (*containers(spec), *containers(spec, "initContainers")):
        if c.get("name") in THIRD_PARTY_SIDECARS:
            return str(c["name"])
    return None


def workload_of(pod: Mapping[str, Any]) -> str:
    """``KIND/NAME`` of the workload a Pod belongs to (its controller, or the pod itself)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    template_hash = labels.get(TEMPLATE_HASH)
    owners = [o for o in meta.get("ownerReferences") or () if isinstance(o, dict)]
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if owner is not None and owner.get("name"):
        kind, name = str(owner.get("kind", "")), str(owner["name"])
        if kind == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
            return f"deployment/{name.removesuffix(f'-{template_hash}')}"
        return f"{_OWNER_KINDS.get(kind, kind.lower() or 'pod')}/{name}"
    name = meta.get("name") or ""
    generated = str(meta.get("generateName") or "").rstrip("-")
    if not name and template_hash and generated.endswith(f"-{template_hash}"):
        return f"deployment/{generated.removesuffix(f'-{template_hash}')}"
    return f"pod/{name or generated or 'unknown'}"


def inject_pod(
    pod: Mapping[str, Any],
    *,
    workload: str,
    settings: InjectSettings,
    namespace_annotations: Mapping[str, str] | None = None,
) -> tuple[Obj, list[str]]:
    """A copy of `pod` with the proxy and the init container, and warnings about its
    config annotations; `pod` itself if it already has the proxy."""
    out: Obj = copy.deepcopy(dict(pod))
    spec = out.setdefault("spec", {})
    if is_injected(spec):
        return out, []
    meta = out.get("metadata")
    if not isinstance(meta, dict):
        meta = out["metadata"] = {}
    own = meta.get("annotations") or {}
    merged = {**_config_only(namespace_annotations or {}), **own}
    config, warnings = proxy_config(merged, settings=settings)
    labels = {k: str(v) for k, v in (meta.get("labels") or {}).items() if k != TEMPLATE_HASH}
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    apps = containers(spec)
    proxy = proxy_container(
        config,
        settings=settings,
        workload=workload,
        account=str(account),
        labels=labels,
        apps=apps,
    )
    annotations = meta.get("annotations")
    if not isinstance(annotations, dict):
        annotations = meta["annotations"] = {}
    if config.rewrite_app_probes:
        # after proxy_container: --probe still names the app ports' own probe paths
        app_probes, originals = rewrite_probes(apps)
        if app_probes:
            proxy["args"] += ["--app-probes", encode(app_probes)]
            annotations[names.APP_PROBES_ANNOTATION] = encode(originals)
    inits = [*(spec.get("initContainers") or []), init_container(config)]
    if config.native_sidecar:
        # After turnout-init: the kubelet starts the app once the startup probe passed.
        proxy["restartPolicy"] = "Always"
        proxy["startupProbe"] = {
            "httpGet": {"path": "/ready", "port": names.PROXY_ADMIN_PORT},
            "periodSeconds": 1,
            "failureThreshold": 120,
        }
        spec["initContainers"] = [*inits, proxy]
    else:
        spec["containers"] = [proxy, *(spec.get("containers") or [])]
        spec["initContainers"] = inits
    spec["volumes"] = [*(spec.get("volumes") or []), *pod_volumes()]
    if not config.native_sidecar and apps and apps[0].get("name"):
        # kubectl logs / exec go to the app, not to the proxy listed first (as Linkerd does)
        annotations.setdefault(DEFAULT_CONTAINER, apps[0]["name"])
    annotations[names.INJECTED_ANNOTATION] = turnout.__version__
    return out, warnings


def uninject_pod(pod: Mapping[str, Any]) -> tuple[Obj, bool]:
    """A copy of `pod` without what `inject_pod` (or the inject annotation) added, and
    whether anything was removed."""
    out: Obj = copy.deepcopy(dict(pod))
    changed = False
    spec = out.get("spec")
    if isinstance(spec, dict):
        for key, ours in (
            ("containers", {names.PROXY_CONTAINER}),
            ("initContainers", {names.INIT_CONTAINER, names.PROXY_CONTAINER}),
            ("volumes", OUR_VOLUMES),
        ):
            changed |= _drop_named(spec, key, ours)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        annotations = meta.get("annotations") or {}
        apps = containers(spec) if isinstance(spec, dict) else []
        originals = annotations.pop(names.APP_PROBES_ANNOTATION, None)
        if isinstance(originals, str):
            restore_probes(apps, originals)
            changed = True
        if (
            names.INJECTED_ANNOTATION in annotations
            and apps
            and annotations.get(DEFAULT_CONTAINER) == apps[0].get("name")
        ):
            del annotations[DEFAULT_CONTAINER]
        changed |= drop_annotations(meta)
    return out, changed


def drop_annotations(meta: Obj) -> bool:
    """Take ``turnout.dev/injected`` and ``turnout.dev/inject: enabled`` out of `meta`
    (and the annotations, if nothing else is left); True when there was one."""
    annotations = meta.get("annotations")
    if not isinstance(annotations, dict):
        return False
    changed = annotations.pop(names.INJECTED_ANNOTATION, None) is not None
    if annotations.get(names.INJECT_ANNOTATION) == "enabled":
        del annotations[names.INJECT_ANNOTATION]
        changed = True
    if changed and not annotations:
        del meta["annotations"]
    return changed


def _drop_named(spec: Obj, key: str, ours: frozenset[str] | set[str]) -> bool:
    items = spec.get(key)
    if not isinstance(items, list):
        return False
    kept = [i for i in items if not (isinstance(i, dict) and i.get("name") in ours)]
    if len(kept) == len(items):
        return False
    if kept:
        spec[key] = kept
    else:
        del spec[key]
    return True


def _config_only(annotations: Mapping[str, str]) -> dict[str, str]:
    """A namespace's annotations a pod inherits: the ``config.turnout.dev/*`` ones."""
    return {k: v for k, v in annotations.items() if k.startswith(names.ANNOTATION_PREFIX)}


# ---------------------------------------------------------------- what is added


def _field_env(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def proxy_args(
    config: ProxyConfig,
    *,
    settings: InjectSettings,
    workload: str,
    account: str,
    labels: Mapping[str, str],
    apps: Sequence[Mapping[str, Any]] = (),
) -> list[str]:
    """`mesh proxy`'s command line in the pod (``$(VAR)``: the kubelet expands the env)."""
    verbosity = {"info": ["-v"], "debug": ["-vv"]}.get(config.log_level, [])
    identity = f"{account}.$(POD_NAMESPACE).serviceaccount.identity.{settings.trust_domain}"
    args = [
        *verbosity,
        "proxy",
        "--xds", settings.xds,
        "-n", "$(POD_NAMESPACE)",
        "--workload", workload,
        "--pod", "$(POD_NAME)",
        "--outbound", f"127.0.0.1:{names.PROXY_OUTBOUND_PORT}",
        "--inbound", f"0.0.0.0:{names.PROXY_INBOUND_PORT}",
        "--admin", f"0.0.0.0:{names.PROXY_ADMIN_PORT}",
        "--transparent",
        "--identity", identity,
        "--identity-token-file", names.IDENTITY_TOKEN_PATH,
        "--identity-addr", settings.identity_addr,
    ]  # fmt: skip
    for key in sorted(labels):
        args += ["--label", f"{key}={labels[key]}"]
    if config.opaque_ports:
        args += ["--opaque-ports", config.opaque_ports]
    return [*args, *pod_port_args(apps)]


def proxy_container(
    config: ProxyConfig,
    *,
    settings: InjectSettings,
    workload: str,
    account: str,
    labels: Mapping[str, str],
    apps: Sequence[Mapping[str, Any]] = (),
) -> Obj:
    resources: Obj = {"requests": {"cpu": config.cpu_request, "memory": config.memory_request}}
    limits = {k: v for k, v in (("cpu", config.cpu_limit), ("memory", config.memory_limit)) if v}
    if limits:
        resources["limits"] = limits
    admin = names.PROXY_ADMIN_PORT
    return {
        "name": names.PROXY_CONTAINER,
        "image": config.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["mesh"],
        "args": proxy_args(
            config, settings=settings, workload=workload, account=account, labels=labels, apps=apps
        ),
        "env": [_field_env("POD_NAME", "metadata.name"), _field_env("POD_NAMESPACE", "metadata.namespace")],
        "ports": [
            {"name": names.PROXY_CONTAINER, "containerPort": names.PROXY_INBOUND_PORT, "protocol": "TCP"},
            {"name": "turnout-admin", "containerPort": admin, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": admin}, "initialDelaySeconds": 2, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/live", "port": admin}, "initialDelaySeconds": 10, "periodSeconds": 10},
        "resources": resources,
        "securityContext": {
            "runAsUser": names.PROXY_UID,
            "runAsGroup": names.PROXY_UID,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": TOKEN_VOLUME, "mountPath": posixpath.dirname(names.IDENTITY_TOKEN_PATH), "readOnly": True}
        ],
    }  # fmt: skip


def init_args(config: ProxyConfig) -> list[str]:
    """`mesh proxy-init`'s command line: the proxy's admin port is never captured."""
    inbound = ",".join(p for p in (str(names.PROXY_ADMIN_PORT), config.skip_inbound_ports) if p)
    args = [
        "proxy-init",
        "--inbound-port", str(names.PROXY_INBOUND_PORT),
        "--outbound-port", str(names.PROXY_OUTBOUND_PORT),
        "--proxy-uid", str(names.PROXY_UID),
        "--skip-inbound-ports", inbound,
    ]  # fmt: skip
    if config.skip_outbound_ports:
        args += ["--skip-outbound-ports", config.skip_outbound_ports]
    return args


def init_container(config: ProxyConfig) -> Obj:
    return {
        "name": names.INIT_CONTAINER,
        "image": config.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["mesh"],
        "args": init_args(config),
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "128Mi"}},
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": False,
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"]},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": XTABLES_VOLUME, "mountPath": "/run"}],
    }  # fmt: skip


def pod_volumes() -> list[Obj]:
    token = {
        "serviceAccountToken": {
            "audience": TOKEN_AUDIENCE,
            "expirationSeconds": DEFAULT_TOKEN_EXPIRATION_S,
            "path": posixpath.basename(names.IDENTITY_TOKEN_PATH),
        }
    }
    return [
        {"name": TOKEN_VOLUME, "projected": {"sources": [token]}},
        {"name": XTABLES_VOLUME, "emptyDir": {}},
    ]
