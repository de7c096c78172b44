"""What this proxy's inbound port must enforce, from the policy resources the control plane
serves (docs/policy.md "Served over xDS"): resolved for this workload once per update.

```
PolicyResources {name: (type_url, value)} ─ resolve(workload, port) ─► PortPolicy
   server        the first Server (name order) of the workload's namespace selecting its
                 labels and the port (a named port through the pod's container ports,
                 ``--port-name``); else default/<ns>/<port> from the namespace's or the
                 cluster's default policy (its generated authorization)
   probes        the kubelet's probe paths of the port (``--probe``), while its Server has
                 no routes: Linkerd's default ``probe`` route, any client may GET them
   istio         AuthorizationPolicies of the namespace or the root namespace selecting it
   mode          PeerAuthentication: workload > namespace > mesh, oldest first; a port-level
                 mode first; UNSET inherits; nothing: PERMISSIVE
   jwt_rules     every RequestAuthentication selecting the workload
   routes        the Server's routes with their matches (Gateway API precedence), each with
                 its own Decider (route authorizations, then the server's)
```

A resource that cannot be read is a `TableError` naming it and its field: the xDS client
NACKs the update and the last good policy stays.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from turnout.proxy.authz import AuthzLabels, Caller, Decider, Req, Rule, Verdict
from turnout.proxy.errors import TableError
from turnout.proxy.matching import PathCondition, RouteMatcher, ValueCondition

TYPE_PREFIX = "turnout.dev/policy.v1alpha1."
SERVER = TYPE_PREFIX + "InboundServer"
WORKLOAD_POLICY = TYPE_PREFIX + "WorkloadPolicy"
DEFAULTS = TYPE_PREFIX + "PolicyDefaults"
PEER_AUTHN = TYPE_PREFIX + "PeerAuthentication"
REQUEST_AUTHN = TYPE_PREFIX + "RequestAuthentication"
KNOWN = frozenset({SERVER, WORKLOAD_POLICY, DEFAULTS, PEER_AUTHN, REQUEST_AUTHN})

Mode = Literal["STRICT", "PERMISSIVE", "DISABLE"]
Data = Mapping[str, Any]

DEFAULT_PEERS: dict[str, dict[str, object] | None] = {
    "all-unauthenticated": {},
    "all-authenticated": {"tls": "authenticated"},
    "cluster-unauthenticated": {"networks": None},
    "cluster-authenticated": {"tls": "authenticated", "networks": None},
    "audit": {},
    "deny": None,
}


PROBE_VERDICT = Verdict(
    allowed=True,
    authz=AuthzLabels(group="", kind="default", name="probe"),
    reason="allowed by default/probe",
    decided_by="default/probe",
)
"""A kubelet probe (Linkerd's ``AuthorizationRef::Default("probe")``: unauthenticated, any
network)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    namespace: str
    labels: Mapping[str, str]
    port_names: Mapping[str, int] = field(default_factory=dict)
    """The pod's container port names (``--port-name NAME=PORT``): a Server may name its port."""
    probes: Mapping[int, frozenset[str]] = field(default_factory=dict)
    """Port -> the paths of the pod's HTTP probes on it (``--probe PORT:PATH``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerLabels:
    """Linkerd's ``srv_group``, ``srv_kind``, ``srv_name``."""

    group: str
    kind: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundRoute:
    name: str
    group: str
    kind: str
    matchers: tuple[RouteMatcher, ...]
    decider: Decider
    order: tuple[tuple[int, int, int, int, int], int] = ((0, 0, 0, 0, 0), 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class PortPolicy:
    """Everything the inbound side does for one port."""

    port: int
    server: ServerLabels
    server_name: str
    mode: Mode
    opaque: bool
    routes: tuple[InboundRoute, ...]
    """() : every request is decided by `decider` (Linkerd's default route)."""
    decider: Decider
    """Server-level: connections and requests on a server without routes."""
    jwt_rules: tuple[Data, ...] = ()
    constant: Verdict | None = None
    """Every call gets this verdict (e.g. the cluster default, all-unauthenticated): the
    request path counts it and checks nothing."""
    probes: frozenset[str] = frozenset()
    """Paths a GET of which is a kubelet probe, allowed as `PROBE_VERDICT` (empty once the
    Server has routes: probes must then be authorized like any request, as in Linkerd)."""

    def is_probe(self, method: str, path: str) -> bool:
        return path in self.probes and method == "GET"

    def route_for(self, req: Any) -> InboundRoute | None:
        """The route a request takes (Gateway API precedence: the routes' matchers were
        sorted when built); None: no route matches (404)."""
        for route in self.routes:
            for m in route.matchers:
                if m.path.matches(req.path) and m.conditions_hold(req, None):
                    return route
        return None

    def check(self, caller: Caller, req: Req | None, route: InboundRoute | None) -> Verdict:
        """The verdict on a call (the guard's, which takes shortcuts and counts it)."""
        if req is not None and self.probes and self.is_probe(req.method, req.path):
            return PROBE_VERDICT
        return (route.decider if route is not None else self.decider).check(caller, req)


# --------------------------------------------------------------------------- decoding


def _selects(selector: Data | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return True
    for k, v in selector.get("labels", ()):
        if labels.get(k) != v:
            return False
    for req in selector.get("expressions", ()):
        key, op, values = req["key"], req["operator"], req.get("values", ())
        present, value = key in labels, labels.get(key)
        ok = {
            "In": present and value in values,
            "NotIn": not present or value not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[op]
        if not ok:
            return False
    return True


def _port(value: object) -> int | str:
    return int(value) if isinstance(value, float | int) else str(value)


def _port_is(wanted: int | str, port: int, names: Mapping[str, int]) -> bool:
    """A Server's `port` (a number, or a container port name) is `port`."""
    return wanted == port if isinstance(wanted, int) else names.get(wanted) == port


def _default_rules(policy: str, networks: Sequence[Data]) -> list[Rule]:
    peer = DEFAULT_PEERS.get(policy)
    if peer is None:
        return []
    if "networks" in peer:
        peer = {**peer, "networks": list(networks)}
    return [Rule({"name": f"default/{policy}", "peers": [peer]})]


def _matcher(m: Data, where: str) -> RouteMatcher:
    path = m.get("path", {"type": "PrefixPath", "value": "/"})
    kind = path.get("type")
    if kind == "ExactPath":
        cond = PathCondition(kind="Exact", value=path["value"])
    elif kind == "PrefixPath":
        value = path["value"].rstrip("/") or "/"
        cond = PathCondition(kind="PathPrefix", value=value, with_slash=value.rstrip("/") + "/")
    elif kind == "RegexPath":
        cond = PathCondition(
            kind="RegularExpression", value=path["pattern"], regex=_re(path["pattern"], where)
        )
    else:
        raise TableError(where, "matches[].path.type", f"unknown path match {kind!r}")

    def values(items: Sequence[Data], lower: bool) -> tuple[ValueCondition, ...]:
        out = []
        for h in items:
            name = h["name"].lower() if lower else h["name"]
            if h.get("kind") == "RegularExpression":
                out.append(ValueCondition(name=name, kind="RegularExpression", value=h["value"], regex=_re(h["value"], where)))  # fmt: skip
            else:
                out.append(ValueCondition(name=name, kind="Exact", value=h["value"]))
        return tuple(out)

    return RouteMatcher(
        path=cond,
        method=m.get("method"),
        headers=values(m.get("headers", ()), True),
        query=values(m.get("query", ()), False),
    )


def _re(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise TableError(where, "matches[].path", f"bad regex: {exc}") from exc


def _precedence(m: RouteMatcher) -> tuple[int, int, int, int, int]:
    rank = {"Exact": 3, "PathPrefix": 2, "RegularExpression": 1}[m.path.kind]
    return (rank, len(m.path.value), m.method is not None, len(m.headers), len(m.query))


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True, slots=True)
class PolicyResources:
    """The decoded policy resources of one xDS version: kind -> values, in name order."""

    by_type: Mapping[str, tuple[Data, ...]]

    @classmethod
    def of(cls, resources: Mapping[str, tuple[str, Data]]) -> PolicyResources:
        by_type: dict[str, list[Data]] = {t: [] for t in KNOWN}
        for name in sorted(resources):
            type_url, value = resources[name]
            if type_url not in KNOWN:
                raise TableError(f'policy "{name}"', "type_url", f"unknown type {type_url!r}")
            by_type[type_url].append(value)
        return cls({t: tuple(v) for t, v in by_type.items()})

    def get(self, type_url: str) -> tuple[Data, ...]:
        return self.by_type.get(type_url, ())

    def resolve(self, workload: Workload, port: int) -> PortPolicy:
        try:
            return self._resolve(workload, port)
        except (KeyError, TypeError, ValueError) as exc:
            raise TableError("policy", "value", f"cannot read: {exc!r}") from exc

    def _resolve(self, workload: Workload, port: int) -> PortPolicy:
        ns, labels, names = workload.namespace, workload.labels, workload.port_names
        server = next(
            (
                s
                for s in self.get(SERVER)
                if s.get("namespace") == ns
                and _port_is(_port(s.get("port")), port, names)
                and _selects(s.get("selector", {}), labels)
            ),
            None,
        )
        defaults = next(iter(self.get(DEFAULTS)), {})
        networks = defaults.get("cluster_networks", ())
        configured = server is not None
        if server is not None:
            name = server["name"]
            server_rules = [Rule(a) for a in server.get("authorizations", ())]
            _, _, sname = name.split("/", 2)
            labels_ = ServerLabels(group="policy.linkerd.io", kind="server", name=sname)
            protocol = server.get("protocol", "unknown")
            routes_data = server.get("routes", ())
        else:
            found = next(
                (d for d in defaults.get("namespace_defaults", ()) if d.get("namespace") == ns),
                None,
            )
            policy = (
                found["policy"] if found else defaults.get("cluster_default", "all-unauthenticated")
            )
            name = f"default/{ns}/{port}"
            server_rules = _default_rules(policy, networks)
            labels_ = ServerLabels(group="", kind="default", name=policy)
            protocol, routes_data = "unknown", ()
        istio = [
            p
            for p in self.get(WORKLOAD_POLICY)
            if p.get("namespace") in (None, ns) and _selects(p.get("selector"), labels)
        ]
        deny = [
            Rule(a) for p in istio if p["action"] == "DENY" for a in p.get("authorizations", ())
        ]
        audit = [
            Rule(a) for p in istio if p["action"] == "AUDIT" for a in p.get("authorizations", ())
        ]
        allow_policies = [p for p in istio if p["action"] == "ALLOW"]
        istio_allow = [Rule(a) for p in allow_policies for a in p.get("authorizations", ())]
        if allow_policies and not configured:
            server_rules = []

        def decider(route_rules: list[Rule]) -> Decider:
            return Decider(
                server=name,
                port=port,
                deny=deny,
                audit=audit,
                allow=[*route_rules, *server_rules, *istio_allow],
            )

        routes: list[InboundRoute] = []
        for ri, r in enumerate(routes_data):
            where = f'policy route "{r["name"]}"'
            kind, _, rest = r["name"].partition("/")
            route_decider = decider([Rule(a) for a in r.get("authorizations", ())])
            for m in r.get("matches", ()) or [{}]:
                matcher = _matcher(m, where)
                routes.append(
                    InboundRoute(
                        name=rest.split("/", 1)[-1],
                        group="gateway.networking.k8s.io",
                        kind=kind,
                        matchers=(matcher,),
                        decider=route_decider,
                        order=(_precedence(matcher), -ri),
                    )
                )
        # one entry per (route, match), the most precise first; ties go to the earlier route
        routes.sort(key=lambda r: r.order, reverse=True)
        server_decider = decider([])
        return PortPolicy(
            port=port,
            server=labels_,
            server_name=name,
            mode=self._mode(workload, port),
            opaque=protocol in ("opaque", "TLS"),
            routes=tuple(routes),
            decider=server_decider,
            jwt_rules=tuple(
                rule
                for ra in self.get(REQUEST_AUTHN)
                if ra.get("namespace") in (None, ns) and _selects(ra.get("selector"), labels)
                for rule in ra.get("rules", ())
            ),
            constant=None if routes else server_decider.constant(),
            probes=frozenset()
            if routes or protocol in ("opaque", "TLS")
            else workload.probes.get(port, frozenset()),
        )

    def _mode(self, workload: Workload, port: int) -> Mode:
        ns, labels = workload.namespace, workload.labels
        levels: list[list[Data]] = [[], [], []]
        for pa in self.get(PEER_AUTHN):
            pns, sel = pa.get("namespace"), pa.get("selector")
            if pns == ns and sel is not None and _selects(sel, labels):
                levels[0].append(pa)
            elif pns == ns and sel is None:
                levels[1].append(pa)
            elif pns is None and sel is None:
                levels[2].append(pa)
        chosen = [
            min(lv, key=lambda p: (p.get("created") or "~", p["name"])) if lv else None
            for lv in levels
        ]
        workload_pa = chosen[0]
        if workload_pa is not None:
            for p, mode in workload_pa.get("port_modes", ()):
                if int(p) == port and mode is not None:
                    return mode  # type: ignore[no-any-return]
        for level in chosen:
            if level is not None and level.get("mode") is not None:
                return level["mode"]  # type: ignore[no-any-return]
        return "PERMISSIVE"
