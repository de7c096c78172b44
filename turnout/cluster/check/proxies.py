"""`mesh check --proxy -n NS`: every meshed pod has a proxy, connected and on the current config.

```
pods of NS ──meshed?──> turnout.dev/injected, a turnout-proxy container, or turnout.dev/inject:
   │                    enabled on the pod or its Namespace (and not disabled on the pod)
   v
controller replicas ──GET /debug/proxies──> streams {node_id, namespace, sync: {CDS: SYNCED ..}}
   (the API server's pod proxy to each replica's admin port, or --control-plane HOST:PORT)
   │
   v  a pod's stream: namespace NS and node id NS/<workload>/<pod> (what `mesh proxy --pod`
   │  sends, cli.data_plane)
turnout-data-plane  each meshed pod has a proxy / data plane proxies are ready /
                    ... connected to the control plane / ... on the current config version
rows ──> `-o json` "proxies", `-o wide` NAME CDS LDS EDS RDS POLICY CONTROL PLANE VERSION
```

Each replica numbers its own table versions, so a stream is compared with the replica it is
connected to (`AdsServer.status()`'s per-type sync: SYNCED, STALE, NOT SENT, IGNORED, the
words of istioctl proxy-status).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from turnout.cluster import names
from turnout.cluster.check.api import ClusterApi, Raw, answer
from turnout.cluster.check.control_plane import admin_gets, pod_ready
from turnout.cluster.check.results import Report, either, failed, ok

TYPES = ("CDS", "LDS", "EDS", "RDS", "POLICY")
"""Columns in istioctl proxy-status's order (POLICY in ECDS's place)."""
FINE = frozenset({"SYNCED", "IGNORED"})


@dataclass(slots=True)
class Replica:
    """One control plane replica's view of its streams."""

    name: str
    version: int = 0
    streams: list[Raw] = field(default_factory=list)
    error: str = ""


def is_meshed(pod: Mapping[str, Any], namespace_inject: str) -> bool:
    meta = pod.get("metadata") or {}
    notes = meta.get("annotations") or {}
    if has_proxy(pod) or names.INJECTED_ANNOTATION in notes:
        return True
    wanted = notes.get(names.INJECT_ANNOTATION, namespace_inject)
    return wanted == "enabled" and meta.get("namespace") not in names.NEVER_INJECTED_NAMESPACES


def _containers(pod: Mapping[str, Any]) -> list[Raw]:
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def has_proxy(pod: Mapping[str, Any]) -> bool:
    return any(c.get("name") == names.PROXY_CONTAINER for c in _containers(pod))


def proxy_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    every = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    mine = [c for c in every if c.get("name") == names.PROXY_CONTAINER]
    return bool(mine) and all(c.get("ready") for c in mine) and pod_ready(pod)


def pod_of(node_id: str, namespace: str) -> str | None:
    """The pod a stream's node id names (``NS/KIND/NAME/POD``), when it is of `namespace`."""
    if not node_id.startswith(f"{namespace}/"):
        return None
    return node_id.rsplit("/", 1)[-1]


async def replicas(api: ClusterApi, cp_namespace: str, control_plane: str | None) -> list[Replica]:
    """Every replica's `/debug/proxies` (a replica that does not answer keeps its error)."""
    out = []
    for name, status, body in await admin_gets(api, cp_namespace, control_plane, "/debug/proxies"):
        rep = Replica(name)
        if status != 200:
            rep.error = f"{name}: /debug/proxies: {answer(status, body)}"
        else:
            try:
                data = json.loads(body)
                rep.version = int(data.get("version") or 0)
                rep.streams = list(data.get("proxies") or [])
            except (ValueError, AttributeError, TypeError):
                rep.error = f"{name}: /debug/proxies is not the JSON mesh serve answers"
        out.append(rep)
    return out


@dataclass(slots=True, kw_only=True)
class ProxyRow:
    """One meshed pod: its proxy, its stream and how each type stands."""

    pod: str
    namespace: str
    proxy: bool
    """A turnout-proxy container is in the pod."""
    ready: bool
    connected: bool = False
    control_plane: str = ""
    """The replica (pod name, or the --control-plane address) its stream is on."""
    version: int | None = None
    """That replica's current table version."""
    node_id: str = ""
    sync: dict[str, str] = field(default_factory=dict)
    acked: dict[str, str] = field(default_factory=dict)
    nacks: list[Raw] = field(default_factory=list)

    def to_data(self) -> dict[str, object]:
        return {"name": f"{self.pod}.{self.namespace}", **asdict(self)}


def proxy_rows(pods: Sequence[Raw], reps: Sequence[Replica], namespace: str) -> list[ProxyRow]:
    """One row per meshed pod, matched to its stream by node id."""
    by_pod: dict[str, tuple[Replica, Raw]] = {}
    for rep in reps:
        for s in rep.streams:
            pod = pod_of(str(s.get("node_id") or ""), namespace)
            if s.get("namespace") == namespace and pod:
                by_pod[pod] = (rep, s)
    rows = []
    for p in pods:
        name = str((p.get("metadata") or {}).get("name"))
        row = ProxyRow(pod=name, namespace=namespace, proxy=has_proxy(p), ready=proxy_ready(p))
        found = by_pod.get(name)
        if found is not None:
            rep, s = found
            sync = s.get("sync") or {}
            row.connected, row.control_plane, row.version = True, rep.name, rep.version
            row.node_id = str(s.get("node_id") or "")
            row.sync = {t: str(sync.get(t, "IGNORED")) for t in TYPES}
            row.acked = dict(s.get("acked") or {})
            row.nacks = list(s.get("nacks") or [])
        rows.append(row)
    return rows


def _stale(row: ProxyRow) -> str:
    bad = {t: v for t, v in row.sync.items() if v not in FINE}
    if not row.connected or not bad:
        return ""
    why = ", ".join(f"{t} {v}" for t, v in bad.items())
    line = f"pod/{row.pod}: {why} (control plane version {row.version})"
    for n in row.nacks:
        line += f"; {n.get('type')} version {n.get('version')} rejected: {n.get('reason')}"
    return line


async def data_plane(
    report: Report, api: ClusterApi, *, namespace: str, cp_namespace: str, control_plane: str | None
) -> None:
    cat = report.category("turnout-data-plane")
    ns = await api.get_or_none(f"/api/v1/namespaces/{namespace}")
    if ns is None:
        cat.checks.append(
            failed(
                "data plane namespace exists",
                f'namespace "{namespace}" not found',
                "check -n: the namespace of the meshed workloads",
            )
        )
        return
    cat.checks.append(ok("data plane namespace exists"))
    ns_inject = ((ns.get("metadata") or {}).get("annotations") or {}).get(
        names.INJECT_ANNOTATION, ""
    )
    pods = (await api.get(f"/api/v1/namespaces/{namespace}/pods")).get("items") or []
    meshed = [
        p
        for p in pods
        if is_meshed(p, ns_inject) and (p.get("status") or {}).get("phase") != "Succeeded"
    ]
    reps = await replicas(api, cp_namespace, control_plane)
    rows = proxy_rows(meshed, reps, namespace)
    report.proxies = [r.to_data() for r in rows]
    no_proxy = [
        f"pod/{r.pod} has no {names.PROXY_CONTAINER} container" for r in rows if not r.proxy
    ]
    cat.checks.append(
        either(
            "each meshed pod has a proxy",
            "\n".join(no_proxy),
            "a pod gets its proxy when it is created: the injector was not called or skipped it"
            f" (kubectl rollout restart the workload; mesh inject adds {names.INJECT_ANNOTATION}:"
            " enabled)",
        )
    )
    unready = [
        f"pod/{r.pod}: {names.PROXY_CONTAINER} is not ready"
        for r in rows
        if r.proxy and not r.ready
    ]
    cat.checks.append(
        either(
            "data plane proxies are ready",
            "\n".join(unready),
            "the proxy answers /ready on its admin port once it has a table: its log says"
            " why not (no control plane, no identity)",
        )
    )
    down = [rep.error for rep in reps if rep.error]
    if not reps:
        down.append(f"no control plane replica found in namespace {cp_namespace}")
    down += [
        f"pod/{r.pod}: no ADS stream to the control plane"
        for r in rows
        if r.proxy and not r.connected
    ]
    cat.checks.append(
        either(
            "data plane proxies are connected to the control plane",
            "\n".join(down),
            f"the proxy dials {names.XDS_SERVICE}.{cp_namespace}:{names.XDS_PORT} and retries"
            " with backoff: its log names the error (DNS, a NetworkPolicy, the controller down)",
        )
    )
    stale = [line for r in rows if (line := _stale(r))]
    cat.checks.append(
        either(
            "data plane proxies are on the current config version",
            "\n".join(stale),
            "STALE: the proxy has not acknowledged the newest config; a NACK means it rejected"
            " it (the reason is above and in the controller's log); the control plane sends"
            " it again only with a newer table",
        )
    )


def render_table(rows: Sequence[Mapping[str, object]]) -> str:
    """istioctl proxy-status: NAME CDS LDS EDS RDS POLICY CONTROL PLANE VERSION, from the
    report's `proxies` (`ProxyRow.to_data`)."""
    header = ["NAME", *TYPES, "CONTROL PLANE", "VERSION"]
    lines = [header]
    for r in rows:
        sync = r.get("sync")
        states = sync if isinstance(sync, Mapping) else {}
        if r.get("connected"):
            cells = [str(states.get(t, "-")) for t in TYPES]
        else:
            cells = ["NOT CONNECTED", *("-" for _ in TYPES[1:])]
        version = r.get("version")
        cp = str(r.get("control_plane") or "-")
        lines.append([str(r["name"]), *cells, cp, "-" if version is None else str(version)])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "".join(
        "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in lines
    )
