"""`mesh stat` and `mesh edges` rows: linkerd-viz's queries over a `Source`, then pure
functions over the instant vectors they answer.

```
stat_rows(source, target, from_=, to=)
   workloads: inbound series of the target        sum(increase(response_total{direction=
   services:  clients' outbound series, by          "inbound"|"outbound",...}[W])) by (grp,
              dst_service and the authority's        classification)
              Service (the apex a route split)     response_latency_ms_bucket by (le, grp)
                                                   tcp_open_connections, tcp_*_bytes_total
   ──> [StatRow(namespace, name, success, failure, buckets, tcp, read, write, window)]
edge_rows(source)  outbound request_total by (namespace, <src kind>, dst_namespace,
   dst_service, tls, server_id, no_tls_reason) + inbound client_id ──> [EdgeRow]
```

The shapes are linkerd-viz's (LINKERD-REFERENCE.md §a "viz queries"): requests
``sum(increase(response_total[W])) by (<groupby>, classification, tls)``, latency from the
bucket increases by ``(le, <groupby>)`` through Prometheus' `histogram_quantile` (computed
here, `stats.histogram_quantile`, so both sources give the same numbers), TCP from
``tcp_open_connections`` and the byte counters. Our series carry the workload labels
themselves (`namespace`, `deployment`, `pod`), so no relabeling is needed. Edges read
``request_total`` (our outbound TCP series have no destination), with the same TLS labels
Linkerd reads from ``tcp_open_connections``; a proxyless gRPC client's series (the same
families, ``direction="outbound"``) make edges like any proxy's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from turnout.viz.prom import VectorSample
from turnout.viz.source import Source
from turnout.viz.stats import histogram_quantile
from turnout.viz.targets import Target

WORKLOAD_KINDS = ("deployment", "statefulset", "daemonset")


@dataclass(slots=True)
class StatRow:
    namespace: str
    name: str
    success: float = 0.0
    failure: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)
    tcp: float | None = None
    read_bytes: float = 0.0
    write_bytes: float = 0.0
    window_s: float = 60.0

    @property
    def total(self) -> float:
        return self.success + self.failure

    @property
    def success_rate(self) -> float | None:
        return self.success / self.total if self.total > 0 else None

    @property
    def rps(self) -> float | None:
        return self.total / self.window_s if self.total > 0 else None

    def quantile(self, q: float) -> float | None:
        v = histogram_quantile(q, sorted(self.buckets.items()))
        return None if math.isnan(v) or self.total <= 0 else v


def authority_service(authority: str, namespace: str) -> tuple[str, str] | None:
    """(namespace, service) an outbound ``authority`` names (``web.emojivoto``,
    ``web.emojivoto.svc.cluster.local:80``, ``web``); None for a non-Service host."""
    host = authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority
    parts = host.split(".")
    if not host or parts == ["unknown"]:
        return None
    if len(parts) == 1:
        return namespace, parts[0]
    if len(parts) == 2 or parts[2:] in (["svc"], ["svc", "cluster", "local"]):
        return parts[1], parts[0]
    return None


def services_of(labels: Mapping[str, str]) -> set[tuple[str, str]]:
    """The Services an outbound series counts for: its endpoint's (`dst_service`) and the
    one its authority names (the route's parent), once each."""
    out: set[tuple[str, str]] = set()
    if labels.get("dst_service"):
        out.add((labels.get("dst_namespace", ""), labels["dst_service"]))
    apex = authority_service(labels.get("authority", ""), labels.get("namespace", ""))
    if apex is not None:
        out.add(apex)
    return out


def _keys(target: Target, labels: Mapping[str, str]) -> set[tuple[str, str]]:
    """The rows (namespace, name) one series counts for."""
    if target.kind == "service":
        keys = services_of(labels)
    elif target.kind == "namespace":
        keys = {("", labels.get("namespace", ""))}
    else:
        keys = {(labels.get("namespace", ""), labels.get(target.kind, ""))}
    wanted = {
        (ns, name)
        for ns, name in keys
        if name
        and (target.name is None or name == target.name)
        and (target.namespace is None or target.kind == "namespace" or ns == target.namespace)
    }
    return wanted


def _by(target: Target) -> list[str]:
    if target.kind == "service":
        return ["namespace", "dst_namespace", "dst_service", "authority"]
    return ["namespace"] if target.kind == "namespace" else ["namespace", target.kind]


async def stat_rows(
    source: Source, target: Target, *, from_: Target | None = None, to: Target | None = None
) -> list[StatRow]:
    """One row per resource of `target` with traffic in the window (sorted by namespace,
    name). `from_` (services only): count only that client's calls; `to` (workloads only):
    count the target's outbound calls to that Service instead of its inbound ones."""
    direction = "outbound" if target.kind == "service" or to is not None else "inbound"
    where: dict[str, str] = {"direction": direction}
    by = _by(target)
    client = to is not None
    if client:
        by = sorted({*by, "dst_namespace", "dst_service", "authority"})
    if from_ is not None:
        where.update({k: v for k, v in from_.matchers().items() if not k.startswith("dst_")})
        by = sorted({*by, *from_.matchers()})
    elif target.namespace is not None and target.kind != "service":
        where["namespace"] = target.namespace
    rows: dict[tuple[str, str], StatRow] = {}

    def keys_of(labels: Mapping[str, str]) -> set[tuple[str, str]]:
        if to is not None and not (services_of(labels) & _keys(to, labels)):
            return set()
        if from_ is not None and not from_.matches(labels):
            return set()
        return _keys(target, labels)

    def row(key: tuple[str, str]) -> StatRow:
        return rows.setdefault(key, StatRow(key[0], key[1], window_s=source.window_s))

    for s in await source.increase("response_total", where, [*by, "classification"]):
        for key in keys_of(s.labels):
            if s.labels.get("classification") == "success":
                row(key).success += s.value
            else:
                row(key).failure += s.value
    for s in await source.increase("response_latency_ms_bucket", where, [*by, "le"]):
        for key in keys_of(s.labels):
            le = float(s.labels.get("le", "+Inf"))
            buckets = row(key).buckets
            buckets[le] = buckets.get(le, 0.0) + s.value
    if target.kind != "service" and to is None:
        await _tcp(source, where, by, keys_of, row)
    return [rows[k] for k in sorted(rows)]


RowKey = tuple[str, str]
"""(namespace, name) of a stat row."""


async def _tcp(
    source: Source,
    where: Mapping[str, str],
    by: Sequence[str],
    keys_of: Callable[[Mapping[str, str]], set[RowKey]],
    row: Callable[[RowKey], StatRow],
) -> None:
    """TCP_CONN (open connections now) and the byte counters' increase, per row."""
    for s in await source.current("tcp_open_connections", where, by):
        for key in keys_of(s.labels):
            r = row(key)
            r.tcp = (r.tcp or 0.0) + s.value
    for metric, attr in (
        ("tcp_read_bytes_total", "read_bytes"),
        ("tcp_write_bytes_total", "write_bytes"),
    ):
        for s in await source.increase(metric, where, by):
            for key in keys_of(s.labels):
                r = row(key)
                setattr(r, attr, getattr(r, attr) + s.value)


@dataclass(frozen=True, slots=True)
class EdgeRow:
    src: str
    dst: str
    src_namespace: str
    dst_namespace: str
    secured: str
    """``√`` for mTLS, else the title-cased ``no_tls_reason`` (or `tls`)."""
    client_id: str
    server_id: str


def secured_cell(labels: Mapping[str, str]) -> str:
    if labels.get("tls") == "true":
        return "√"
    reason = labels.get("no_tls_reason") or labels.get("tls") or "disabled"
    return reason.replace("_", " ").title()


EDGE_BY = ["namespace", *WORKLOAD_KINDS, "dst_namespace", "dst_service", "authority", "tls",
           "server_id", "no_tls_reason"]  # fmt: skip


def _src(labels: Mapping[str, str]) -> str:
    return next((labels[k] for k in WORKLOAD_KINDS if labels.get(k)), labels.get("pod", ""))


def client_ids(inbound: Iterable[VectorSample]) -> dict[tuple[str, str, str], str]:
    """(dst namespace, dst workload, client namespace) -> the client identity the server
    saw (an identity names ``SA.NAMESPACE.serviceaccount...``)."""
    out: dict[tuple[str, str, str], str] = {}
    for s in inbound:
        cid = s.labels.get("client_id", "")
        parts = cid.split(".")
        if len(parts) > 2:
            out[(s.labels.get("namespace", ""), _src(s.labels), parts[1])] = cid
    return out


async def edge_rows(source: Source, target: Target) -> list[EdgeRow]:
    """Who calls whom (client workload -> Service), how it is secured; only edges that
    touch `target` (its kind's name on either end; its namespace on either end)."""
    out = await source.increase("request_total", {"direction": "outbound"}, EDGE_BY)
    inbound = await source.increase(
        "request_total", {"direction": "inbound"}, ["namespace", *WORKLOAD_KINDS, "client_id"]
    )
    ids = client_ids(inbound)
    edges: dict[tuple[str, str, str, str], EdgeRow] = {}
    for s in out:
        labels = s.labels
        src, src_ns = _src(labels), labels.get("namespace", "")
        dst, dst_ns = labels.get("dst_service", ""), labels.get("dst_namespace", "")
        if not (src and dst) or s.value <= 0:
            continue
        if target.name is not None and target.name not in (src, dst):
            continue
        if target.kind == "namespace" and target.name is not None:
            if target.name not in (src_ns, dst_ns):
                continue
        elif target.namespace is not None and target.namespace not in (src_ns, dst_ns):
            continue
        edges[(src_ns, src, dst_ns, dst)] = EdgeRow(
            src=src,
            dst=dst,
            src_namespace=src_ns,
            dst_namespace=dst_ns,
            secured=secured_cell(labels),
            client_id=ids.get((dst_ns, dst, src_ns), ""),
            server_id=labels.get("server_id", ""),
        )
    return [edges[k] for k in sorted(edges)]
