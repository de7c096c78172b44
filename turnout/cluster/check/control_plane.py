"""`mesh check`: is the control plane installed, running, serving and writing status?

```
turnout-existence  control plane Namespace exists
                   control plane pods are ready        Deployment turnout-controller: its
                                                       replicas, and each pod it selects Ready
                   control plane is serving a table    admin GET /ready (the API server's
                                                       service proxy, or --control-plane)
turnout-crds       Turnout / Gateway API CustomResourceDefinitions exist
                   CustomResourceDefinitions serve the versions Turnout watches
turnout-status     route status is up to date          our status.parents entries carry the
                                                       route's generation
                   a leader holds the status Lease     (only when the Lease exists)
```

Pods are matched to the Deployment's `matchLabels` here, not by a label selector on the
request, so a server that ignores selectors answers the same. Deliberately not here: the
certificates (`tls.py`) and the data plane (`proxies.py`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from turnout.cluster import names
from turnout.cluster.check.api import ApiError, ClusterApi, Raw, answer, pod_proxy, service_proxy
from turnout.cluster.check.pre import CRD_PATH, GATEWAY_API_HINT
from turnout.cluster.check.probe import http_get
from turnout.cluster.check.results import Category, Check, Report, either, failed, ok
from turnout.cluster.install.crds import crd_name, own_crds, served_versions
from turnout.engine.config import CONTROLLER_NAME
from turnout.engine.sources.k8s.kinds import GW, ROUTE_KINDS, WATCHED_KINDS, KindSpec

BUILT_IN_GROUPS = frozenset({"", "discovery.k8s.io"})
"""Watched kinds that are not CRDs."""

CRD_KINDS = tuple(k for k in WATCHED_KINDS if k.group not in BUILT_IN_GROUPS)
STANDARD_GATEWAY_KINDS = tuple(k for k in WATCHED_KINDS if k.group == GW)
"""Required: Turnout routes with them (the experimental XBackendTrafficPolicy is optional)."""

INSTALL_HINT = "mesh install --crds | kubectl apply -f - installs Turnout's CRDs"


def pod_ready(pod: Mapping[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def selected(pods: Sequence[Raw], match: Mapping[str, str]) -> list[Raw]:
    """The pods whose labels include `match` (a Deployment's `selector.matchLabels`)."""
    out = []
    for p in pods:
        labels = (p.get("metadata") or {}).get("labels") or {}
        if match and all(labels.get(k) == v for k, v in match.items()):
            out.append(p)
    return out


async def controller_pods(api: ClusterApi, namespace: str) -> tuple[Raw | None, list[Raw]]:
    """The controller's Deployment (None: not there) and the pods it selects."""
    deploy = await api.get_or_none(
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{names.CONTROLLER}"
    )
    if deploy is None:
        return None, []
    match = ((deploy.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    query = [("labelSelector", ",".join(f"{k}={v}" for k, v in sorted(match.items())))]
    pods = (await api.get(f"/api/v1/namespaces/{namespace}/pods", query)).get("items") or []
    return deploy, selected(pods, match)


async def admin_gets(
    api: ClusterApi, namespace: str, control_plane: str | None, path: str
) -> list[tuple[str, int, str]]:
    """(replica, status, body) of `path` on every controller replica's admin port: each pod
    through the API server's pod proxy (replicas number their own versions, and only one
    leads), or the one `--control-plane` names."""
    if control_plane:
        return [(control_plane, *await http_get(f"http://{control_plane}{path}"))]
    _, pods = await controller_pods(api, namespace)
    out = []
    for p in pods:
        name = str((p.get("metadata") or {}).get("name"))
        try:
            status, body = await api.proxy_get(pod_proxy(namespace, name, names.ADMIN_PORT, path))
        except ApiError as exc:
            status, body = exc.status, str(exc)
        out.append((name, status, body))
    return out


def _pods_check(deploy: Raw | None, pods: list[Raw], namespace: str) -> Check:
    description = "control plane pods are ready"
    where = f"deployment/{names.CONTROLLER} in namespace {namespace}"
    if deploy is None:
        return failed(
            description, f"{where} not found", "mesh install | kubectl apply -f - creates it"
        )
    want = int((deploy.get("spec") or {}).get("replicas", 1))
    ready = int((deploy.get("status") or {}).get("readyReplicas") or 0)
    problems = []
    if ready < want or want == 0:
        problems.append(f"{where}: {ready}/{want} replicas ready")
    for p in pods:
        if not pod_ready(p):
            name = (p.get("metadata") or {}).get("name")
            phase = (p.get("status") or {}).get("phase") or "Unknown"
            problems.append(f"pod/{name} is not ready (phase {phase})")
    if not pods:
        problems.append(f"no pod of {where} is running")
    hint = (
        f"kubectl -n {namespace} describe deploy/{names.CONTROLLER} and its pods' logs say why"
        " (image pull, crash, a readiness probe on /ready failing)"
    )
    return either(description, "\n".join(problems), hint)


async def admin_ready(api: ClusterApi, namespace: str, control_plane: str | None) -> Check:
    """GET /ready of the control plane's admin: directly, or through the service proxy."""
    description = "control plane is serving a table"
    if control_plane:
        status, body = await http_get(f"http://{control_plane}/ready")
        where = f"http://{control_plane}/ready"
    else:
        path = service_proxy(namespace, names.ADMIN_SERVICE, names.ADMIN_PORT, "/ready")
        where = f"service/{names.ADMIN_SERVICE}:{names.ADMIN_PORT} /ready"
        try:
            status, body = await api.proxy_get(path)
        except ApiError as exc:
            status, body = exc.status, str(exc)
    error = "" if status == 200 else f"{where}: {answer(status, body)}"
    hint = (
        "the controller answers 503 until its first table compiled: its log and"
        " /debug/diagnostics say what it is waiting for (a watch failing, no permission)"
    )
    return either(description, error, hint)


async def existence(
    report: Report, api: ClusterApi, *, namespace: str, control_plane: str | None
) -> bool:
    """turnout-existence; False when the control plane is not there at all."""
    cat = report.category("turnout-existence")
    ns = await api.get_or_none(f"/api/v1/namespaces/{namespace}")
    if ns is None:
        hint = "Turnout is not installed in this namespace: mesh install | kubectl apply -f -"
        cat.checks.append(
            failed("control plane Namespace exists", f'namespace "{namespace}" not found', hint)
        )
        return False
    cat.checks.append(ok("control plane Namespace exists"))
    deploy, pods = await controller_pods(api, namespace)
    cat.checks.append(_pods_check(deploy, pods, namespace))
    cat.checks.append(await admin_ready(api, namespace, control_plane))
    return True


async def _crds(api: ClusterApi, wanted: Iterable[str]) -> dict[str, Raw | None]:
    """Each named CRD, None when it is not installed."""
    return {name: await api.get_or_none(f"{CRD_PATH}/{name}") for name in dict.fromkeys(wanted)}


def _not_serving(spec: KindSpec, crd: Raw) -> str:
    served = served_versions(crd)
    if spec.version in served:
        return ""
    return f"{crd_name(spec)} does not serve {spec.version} (serves {', '.join(served) or 'none'})"


async def crds(report: Report, api: ClusterApi) -> None:
    """What `mesh install --crds` ships and the Gateway API kinds must exist; every watched
    kind whose CRD exists must be served at the version Turnout lists it at."""
    cat = report.category("turnout-crds")
    ours = [str(c["metadata"]["name"]) for c in own_crds()]
    found = await _crds(api, [*ours, *(crd_name(k) for k in CRD_KINDS)])
    missing = [f"{n} not found" for n in ours if found[n] is None]
    cat.checks.append(
        either("Turnout CustomResourceDefinitions exist", "\n".join(missing), INSTALL_HINT)
    )
    gateway = []
    for spec in STANDARD_GATEWAY_KINDS:
        crd = found[crd_name(spec)]
        gateway.append(f"{crd_name(spec)} not found" if crd is None else _not_serving(spec, crd))
    cat.checks.append(
        either(
            "Gateway API CustomResourceDefinitions exist",
            "\n".join(g for g in gateway if g),
            GATEWAY_API_HINT,
        )
    )
    versions = [
        problem
        for spec in CRD_KINDS
        if spec.group != GW
        and (crd := found[crd_name(spec)]) is not None
        and (problem := _not_serving(spec, crd))
    ]
    hint = (
        "Turnout lists these kinds at the versions named; a CRD without that version hides"
        " every object of the kind from it: install a release of the CRD that serves it"
    )
    cat.checks.append(
        either(
            "CustomResourceDefinitions serve the versions Turnout watches",
            "\n".join(versions),
            hint,
        )
    )


def stale_routes(routes: Sequence[Raw], kind: str) -> list[str]:
    """Routes whose status Turnout should have written for their current generation."""
    out = []
    for r in routes:
        meta = r.get("metadata") or {}
        gen = meta.get("generation")
        ours = [
            p
            for p in (r.get("status") or {}).get("parents") or []
            if p.get("controllerName") == CONTROLLER_NAME
        ]
        where = f"{kind.lower()}/{meta.get('namespace')}/{meta.get('name')}"
        if not ours:
            refs = (r.get("spec") or {}).get("parentRefs") or []
            if any(ref.get("kind") == "Service" for ref in refs):
                out.append(f"{where} (generation {gen}): no status from {CONTROLLER_NAME}")
            continue
        seen = {c.get("observedGeneration") for p in ours for c in p.get("conditions") or []}
        if seen != {gen}:
            got = ", ".join(str(s) for s in sorted(seen, key=str))
            out.append(f"{where} (generation {gen}): status observedGeneration {got}")
    return out


async def status_writing(
    report: Report,
    api: ClusterApi,
    *,
    namespace: str,
    now: dt.datetime,
    control_plane: str | None = None,
) -> None:
    cat = report.category("turnout-status")
    problems: list[str] = []
    for kind, spec in ROUTE_KINDS.items():
        try:
            routes = (await api.get(spec.path())).get("items") or []
        except ApiError as exc:
            if exc.status != 404:  # 404: that CRD is not installed (turnout-crds says so)
                problems.append(str(exc))
            continue
        problems += stale_routes(routes, kind)
    hint = (
        "the controller writes each route's status after it compiles it: its log names the"
        " failed writes (a missing update permission on httproutes/status, a conflict loop),"
        " and with --leader-elect only the Lease holder writes"
    )
    cat.checks.append(either("route status is up to date", "\n".join(problems), hint))
    leader = await _leader_check(api, namespace, control_plane)
    if leader is not None:
        cat.checks.append(leader)
    lease = await api.get_or_none(
        f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{names.LEASE}"
    )
    if lease is not None:
        cat.checks.append(_lease_check(lease, now))


async def _leader_check(api: ClusterApi, namespace: str, control_plane: str | None) -> Check | None:
    """Exactly one replica says it leads (`/debug/diagnostics` "leader", with
    --leader-elect); None when no replica elects a leader."""
    electing, leading, silent = [], [], []
    for name, status, body in await admin_gets(api, namespace, control_plane, "/debug/diagnostics"):
        try:
            leader = json.loads(body).get("leader") if status == 200 else None
        except (ValueError, AttributeError):
            leader = None
        if status != 200:
            silent.append(f"{name}: /debug/diagnostics: {answer(status, body)}")
        elif isinstance(leader, dict):
            electing.append(name)
            if leader.get("leading"):
                leading.append(name)
    if not electing:
        return None
    error = "\n".join(silent)
    if not leading:
        error = "\n".join([*silent, f"no replica leads (of {', '.join(electing)})"])
    elif len(leading) > 1:
        error = f"more than one replica says it leads: {', '.join(leading)}"
    hint = (
        "only the leader writes status: the replicas' /debug/diagnostics leader entries and"
        " logs say who holds the Lease and why no one renews it"
    )
    return either("a control plane replica leads status writing", error, hint)


def _lease_check(lease: Raw, now: dt.datetime) -> Check:
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    error = ""
    renewed = _time(spec.get("renewTime"))
    duration = dt.timedelta(seconds=int(spec.get("leaseDurationSeconds") or 15))
    if not holder:
        error = f"lease/{names.LEASE} has no holder"
    elif renewed is None or renewed + duration < now:
        error = (
            f"lease/{names.LEASE} held by {holder} was not renewed since {spec.get('renewTime')}"
        )
    hint = "no replica is leading, so no status is written: the controllers' logs say why they cannot renew"
    return either("a leader holds the status Lease", error, hint)


def _time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def all_ok(cat: Category) -> bool:
    return all(c.result.value == "success" for c in cat.checks)
