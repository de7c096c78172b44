"""Per-authorization and per-client-TLS numbers of one workload's inbound side, from its
proxies' `/metrics` (what `mesh authz` shows, like `linkerd viz authz`).

Two scrapes a window apart (`stats.scrape_all`), counter deltas as Prometheus `increase()`
computes them (a counter that went down was reset: its new value counts whole).

```
inbound_http_authz_allow_total{direction="inbound",target_addr,target_ip,target_port,
    tls,client_id|no_tls_reason,srv_group,srv_kind,srv_name,srv_port,
    route_group,route_kind,route_name,authz_group,authz_kind,authz_name}  ─► allowed
inbound_http_authz_deny_total{... the same without authz_*}                ─► denied
response_total / response_latency_ms_bucket{direction="inbound",...}      ─► success, latency
    (joined on srv_*/route_*/authz_* when the series carry them; else the workload's
    whole inbound side, given to the one authorization row when there is only one)
request_total{direction="inbound",...,tls,client_id|no_tls_reason}        ─► TlsRow per
    server port and client: who still arrives in plaintext
```

A row is (ROUTE, SERVER, AUTHORIZATION): the server is ``default:<policy>`` for a default
server (``srv_kind="default"``) and its name otherwise; the authorization is
``<kind>/<name>`` (``authorizationpolicy/web-public``, ``default/all-unauthenticated``);
denied requests are the row of their route and server with no authorization. Only series
of the target workload count: the proxy's ``namespace`` label and its workload label
(``deployment="web"`` for ``deploy/web``). Pure functions; scraping is `stats.scrape_all`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from turnout.viz.stats import RouteStats, Sample, Scrape, merge, parse_text, per_target

ALLOW = "inbound_http_authz_allow_total"
DENY = "inbound_http_authz_deny_total"
REQUESTS = "request_total"
RESPONSES = "response_total"
LATENCY_BUCKETS = "response_latency_ms_bucket"
_FAMILIES = frozenset({ALLOW, DENY, REQUESTS, RESPONSES, LATENCY_BUCKETS})

KIND_LABELS = {
    "deploy": "deployment",
    "deployment": "deployment",
    "deployments": "deployment",
    "sts": "statefulset",
    "statefulset": "statefulset",
    "statefulsets": "statefulset",
    "ds": "daemonset",
    "daemonset": "daemonset",
    "daemonsets": "daemonset",
    "rs": "replicaset",
    "replicaset": "replicaset",
    "job": "k8s_job",
    "po": "pod",
    "pod": "pod",
    "pods": "pod",
}
"""TARGET kinds as kubectl spells them -> the workload label a proxy's series carry."""

Labels = Mapping[str, str]
SeriesId = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True)
class Target:
    """The workload whose proxies' series count: ``namespace`` and ``<label>=<name>``."""

    namespace: str
    label: str
    name: str

    @classmethod
    def parse(cls, text: str, *, namespace: str) -> Target:
        """``deploy/web`` (kubectl's kinds and short names); ValueError otherwise."""
        kind, slash, name = text.partition("/")
        if not (kind and slash and name) or "/" in name:
            raise ValueError(f"want KIND/NAME (deploy/web), got {text!r}")
        label = KIND_LABELS.get(kind.lower())
        if label is None:
            kinds = ", ".join(sorted({k for k in KIND_LABELS if len(k) <= 6}))
            raise ValueError(f"{text!r}: unknown kind {kind!r} (one of {kinds})")
        return cls(namespace=namespace, label=label, name=name)

    def matches(self, labels: Labels) -> bool:
        return labels.get("namespace") == self.namespace and labels.get(self.label) == self.name

    def __str__(self) -> str:
        return f"{self.label}/{self.name} in {self.namespace}"


@dataclass(frozen=True, slots=True, order=True)
class AuthzKey:
    route: str
    """``route_name``; "" when the series has none."""
    server: str
    """``default:<policy>`` or the Server's name."""
    authorization: str
    """``<kind>/<name>``; "" for the denied requests."""


@dataclass(slots=True)
class AuthzRow:
    key: AuthzKey
    rps: float = 0.0
    """Requests allowed per second (``inbound_http_authz_allow_total``)."""
    unauthorized_rps: float = 0.0
    """Requests denied per second (``inbound_http_authz_deny_total``)."""
    stats: RouteStats = field(default_factory=RouteStats)
    """Success and latency of the row's responses (empty when the metrics cannot say)."""


@dataclass(frozen=True, slots=True, order=True)
class TlsKey:
    port: int
    server: str
    """The Server's name (``default:<policy>``), "" when the series carry no ``srv_*``."""
    plaintext: bool
    client: str
    """The client's identity (``client_id``); "" for plaintext and anonymous TLS."""
    tls: str
    """``true``, the no-TLS reason (``no_tls_from_remote``) or ``disabled``."""


@dataclass(slots=True)
class TlsRow:
    key: TlsKey
    rps: float = 0.0
    """Requests per second (``request_total``)."""


@dataclass(slots=True)
class InboundView:
    """What `mesh authz` prints: the authorization rows, the TLS rows, and whether any
    series of the target was seen at all."""

    authz: dict[AuthzKey, AuthzRow] = field(default_factory=dict)
    tls: dict[TlsKey, TlsRow] = field(default_factory=dict)
    seen: bool = False
    errors: list[str] = field(default_factory=list)


def server_name(labels: Labels) -> str:
    """``default:<policy>`` for a default server, else the Server's name ("" unknown)."""
    name = labels.get("srv_name", "")
    return f"default:{name}" if labels.get("srv_kind") == "default" else name


def authorization_name(labels: Labels) -> str:
    """``<kind>/<name>`` of the authorization that allowed the request, lowercased kind."""
    kind, name = labels.get("authz_kind", ""), labels.get("authz_name", "")
    return f"{kind.lower()}/{name}" if name else ""


def _key(labels: Labels) -> AuthzKey:
    return AuthzKey(labels.get("route_name", ""), server_name(labels), authorization_name(labels))


def _tls_key(labels: Labels) -> TlsKey:
    tls = labels.get("tls", "disabled")
    reason = labels.get("no_tls_reason", "")
    port_text = labels.get("srv_port") or labels.get("target_port", "0")
    return TlsKey(
        port=int(port_text) if port_text.isdigit() else 0,
        server=server_name(labels),
        plaintext=tls != "true",
        client=labels.get("client_id", ""),
        tls="true" if tls == "true" else (reason or tls),
    )


def _samples(text: str, target: Target | None) -> dict[SeriesId, Sample]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s
        for s in parse_text(text)
        if s.name in _FAMILIES
        and s.labels.get("direction") == "inbound"
        and (target is None or target.matches(s.labels))
    }


def _deltas(
    old: Mapping[SeriesId, Sample], new: Mapping[SeriesId, Sample]
) -> Iterable[tuple[Sample, float]]:
    for sid, s in new.items():
        prev = old.get(sid)
        yield s, (s.value if prev is None or s.value < prev.value else s.value - prev.value)


def inbound_view(before: str, after: str, *, seconds: float, target: Target | None) -> InboundView:
    """One proxy's inbound numbers between two scrapes `seconds` apart (`target` None:
    every workload's series)."""
    view = InboundView()
    new = _samples(after, target)
    view.seen = bool(new)
    per_s = 1 / seconds if seconds > 0 else 0.0
    unattributed = RouteStats()
    for s, delta in _deltas(_samples(before, target), new):
        labels = s.labels
        if s.name == ALLOW:
            _row(view.authz, _key(labels)).rps += delta * per_s
        elif s.name == DENY:
            _row(view.authz, _key(labels)).unauthorized_rps += delta * per_s
        elif s.name == REQUESTS:
            key = _tls_key(labels)
            tr = view.tls.get(key)
            if tr is None:
                tr = view.tls[key] = TlsRow(key)
            tr.rps += delta * per_s
        elif "srv_name" not in labels:
            _count(unattributed, s, delta)
        elif authorization_name(labels):
            _count(_row(view.authz, _key(labels)).stats, s, delta)
    allowed = [r for r in view.authz.values() if r.key.authorization]
    if len(allowed) == 1 and (unattributed.total > 0 or unattributed.buckets):
        allowed[0].stats = merge([{0: allowed[0].stats}, {0: unattributed}])[0]
    return view


def _row(rows: dict[AuthzKey, AuthzRow], key: AuthzKey) -> AuthzRow:
    row = rows.get(key)
    if row is None:
        row = rows[key] = AuthzRow(key)
    return row


def _count(st: RouteStats, s: Sample, delta: float) -> None:
    if s.name == RESPONSES:
        if s.labels.get("classification") == "success":
            st.success += delta
        else:
            st.failure += delta
    else:
        le = float(s.labels.get("le", "+Inf"))
        st.buckets[le] = st.buckets.get(le, 0.0) + delta


def combine(views: Sequence[InboundView]) -> InboundView:
    """Several proxies of the workload as one: counts summed, rates summed."""
    out = InboundView(seen=any(v.seen for v in views))
    for v in views:
        out.errors += v.errors
        for key, row in v.authz.items():
            acc = _row(out.authz, key)
            acc.rps += row.rps
            acc.unauthorized_rps += row.unauthorized_rps
            acc.stats = merge([{0: acc.stats}, {0: row.stats}])[0]
        for tkey, trow in v.tls.items():
            tacc = out.tls.get(tkey)
            if tacc is None:
                tacc = out.tls[tkey] = TlsRow(tkey)
            tacc.rps += trow.rps
    return out


def view_of_scrapes(
    before: Sequence[Scrape], after: Sequence[Scrape], target: Target | None
) -> InboundView:
    """`inbound_view` of every target scraped successfully both times, combined; one error
    per target that was not (or whose exposition did not parse)."""
    views, errors = per_target(
        before,
        after,
        lambda b, s: inbound_view(b.text, s.text, seconds=s.at - b.at, target=target),
    )
    out = combine(views)
    out.errors = errors
    return out


def plaintext_by_port(rows: Iterable[TlsRow]) -> dict[int, tuple[float, float]]:
    """Per server port: (plaintext rps, all rps), for a one-line migration summary."""
    out: dict[int, tuple[float, float]] = {}
    for r in rows:
        plain, total = out.get(r.key.port, (0.0, 0.0))
        out[r.key.port] = (plain + (r.rps if r.key.plaintext else 0.0), total + r.rps)
    return out


def rows_where(view: InboundView, keep: Callable[[AuthzRow], bool]) -> list[AuthzRow]:
    """The authorization rows to print, sorted: server, route, allowed before denied."""
    rows = [r for r in view.authz.values() if keep(r)]
    rows.sort(key=lambda r: (r.key.server, r.key.route, not r.key.authorization, r.key))
    return rows
