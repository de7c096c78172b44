"""Helpers to replay the Flagger fixtures (reference/flagger/fixtures) against Turnout.

A *sequence* is what Flagger PUTs to the routing object tick after tick: each document is a
whole object (GET + full Update), so each step *replaces* the previous one. `SEQUENCES` lists
every fixture folder's sequence, with the objects that stay put (Services, and for the
north-south fixtures a GatewayClass + Gateway standing for the fixture's `istio-ingress/gateway`).

`expected_rules(doc)` is what the fixture object says; `table_rules(table, ...)` is what the
compiled table holds for the same parent, in the same shape, so the two compare with `==`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REFERENCE
from turnout.engine import ir
from turnout.engine.config import CONTROLLER_NAME

FIXTURES = REFERENCE / "flagger" / "fixtures"
GW = "gateway.networking.k8s.io"
Obj = dict[str, Any]


def docs(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def routing_objects(path: Path) -> list[Obj]:
    return [d for d in docs(path) if d.get("kind") in ("TrafficSplit", "HTTPRoute")]


def services(path: Path) -> list[Obj]:
    return [d for d in docs(path) if d.get("kind") == "Service"]


def gateway_objects() -> list[Obj]:
    """The fixture's `istio-ingress/gateway` as a Turnout Gateway (HTTP :80, routes from all
    namespaces) of a class Turnout controls."""
    return [
        {
            "apiVersion": f"{GW}/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "turnout"},
            "spec": {"controllerName": CONTROLLER_NAME},
        },
        {
            "apiVersion": f"{GW}/v1",
            "kind": "Gateway",
            "metadata": {"name": "gateway", "namespace": "istio-ingress"},
            "spec": {
                "gatewayClassName": "turnout",
                "listeners": [
                    {
                        "name": "http",
                        "protocol": "HTTP",
                        "port": 80,
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        },
    ]


@dataclass(frozen=True)
class Sequence:
    name: str
    steps: tuple[tuple[str, Obj], ...]
    """(step id, routing object) in time order."""
    static: tuple[Obj, ...] = ()
    """Objects Flagger does not touch during the sequence (Services, Gateway)."""
    parent: str = "service/test/podinfo:9898"
    """The IR parent the routing object attaches to."""
    host: str | None = None
    """For a Gateway parent: the hostname whose virtual host holds the route."""

    @property
    def via(self) -> str:
        return self.parent


def _steps(folder: str, pattern: str = "step-*.yaml", extra: tuple[str, ...] = ()) -> list[Path]:
    base = FIXTURES / folder
    return [*sorted(base.glob(pattern)), *(base / e for e in extra)]


def _numbered(folder: str, file: str) -> list[tuple[str, Obj]]:
    return [(f"{i:02d}", d) for i, d in enumerate(routing_objects(FIXTURES / folder / file))]


def _per_file(paths: list[Path]) -> list[tuple[str, Obj]]:
    out = []
    for p in paths:
        (obj,) = routing_objects(p)
        out.append((p.stem, obj))
    return out


def load_sequences() -> dict[str, Sequence]:
    """Every fixture sequence (empty without the reference data)."""
    if not FIXTURES.exists():
        return {}
    smi_services = tuple(services(FIXTURES / "linkerd-canary" / "step-00-initialized.yaml"))
    gamma_services = tuple(
        services(FIXTURES / "gatewayapi-linkerd-canary" / "step-00-initialized.yaml")
    )
    v1_static = (
        *services(FIXTURES / "gatewayapi-v1-canary" / "step-00-initialized.yaml"),
        *gateway_objects(),
    )
    north_south = {"parent": "gateway/istio-ingress/gateway:80", "host": "www.example.com"}
    seqs = [
        Sequence(
            "linkerd-canary",
            tuple(
                _per_file(
                    _steps("linkerd-canary", extra=("rollback-from-weight-30.yaml",)),
                )
            ),
            smi_services,
        ),
        Sequence(
            "linkerd-canary-stepweightpromotion",
            tuple(_numbered("linkerd-canary-stepweightpromotion", "promotion-steps.yaml")),
            smi_services,
        ),
        Sequence(
            "linkerd-bluegreen",
            tuple(_numbered("linkerd-bluegreen", "routing-states.yaml")),
            smi_services,
        ),
        Sequence(
            "linkerd-ab-caveat",
            tuple(_numbered("linkerd-ab-caveat", "flagger-output-during-iterations.yaml")),
            smi_services,
        ),
        Sequence(
            "smi-versions",
            tuple(_numbered("smi-versions", "trafficsplit-by-version.yaml")),
            smi_services,
        ),
        Sequence(
            "gatewayapi-linkerd-canary",
            tuple(_per_file(_steps("gatewayapi-linkerd-canary", extra=("rollback.yaml",)))),
            gamma_services,
            parent="service/test/podinfo:80",
        ),
        Sequence(
            "gatewayapi-linkerd-stepweights",
            tuple(_numbered("gatewayapi-linkerd-stepweights", "weight-steps.yaml")),
            gamma_services,
            parent="service/test/podinfo:80",
        ),
        Sequence(
            "gatewayapi-v1-canary",
            tuple(_per_file(_steps("gatewayapi-v1-canary"))),
            v1_static,
            **north_south,
        ),
        Sequence(
            "gatewayapi-v1-ab",
            tuple(_per_file(_steps("gatewayapi-v1-ab"))),
            v1_static,
            **north_south,
        ),
        Sequence(
            "gatewayapi-v1-bluegreen-mirror",
            tuple(_numbered("gatewayapi-v1-bluegreen-mirror", "routing-states.yaml")),
            v1_static,
            **north_south,
        ),
        Sequence(
            "gatewayapi-v1-session-affinity",
            tuple(_numbered("gatewayapi-v1-session-affinity", "routing-states.yaml")),
            v1_static,
            **north_south,
        ),
    ]
    return {s.name: s for s in seqs}


# --------------------------------------------------------------------------- comparable shapes

RuleShape = tuple[
    tuple[tuple[object, ...], ...],  # matches: (path kind, path value, headers, query, method)
    tuple[tuple[str, int, tuple[object, ...]], ...],  # backends: (service, weight, filters)
    tuple[object, ...],  # rule filters
    tuple[int | None, int | None],  # timeouts (request, backendRequest) in ms
]


def _ms(text: str | None) -> int | None:
    if text is None:
        return None
    assert text.endswith("s") and not text.endswith("ms"), text
    return int(text[:-1]) * 1000


def _headers(items: list[Obj] | None) -> tuple[object, ...]:
    return tuple(
        sorted(
            (h["name"].lower(), h.get("type", "Exact"), h["value"])  # names are case-insensitive
            for h in items or ()
        )
    )


def _doc_filter(f: Obj) -> tuple[object, ...]:
    kind = f["type"]
    if kind == "RequestMirror":
        ref = f["requestMirror"]["backendRef"]
        return ("mirror", ref["name"], ref["port"], 1_000_000)
    if kind == "ResponseHeaderModifier":
        m = f["responseHeaderModifier"]
        return (
            "response-headers",
            tuple((h["name"], h["value"]) for h in m.get("set") or ()),
            tuple((h["name"], h["value"]) for h in m.get("add") or ()),
            tuple(m.get("remove") or ()),
        )
    raise AssertionError(f"filter type {kind} not covered by the replay")


def _ir_filter(f: ir.Filter) -> tuple[object, ...]:
    if isinstance(f, ir.MirrorFilter):
        assert isinstance(f.backend, ir.ServiceTarget), f.backend
        return ("mirror", f.backend.service, f.backend.port, f.per_million)
    if isinstance(f, ir.ResponseHeaderFilter):
        m = f.modifier
        return (
            "response-headers",
            tuple((h.name, h.value) for h in m.set),
            tuple((h.name, h.value) for h in m.add),
            m.remove,
        )
    raise AssertionError(f"unexpected filter in the table: {f}")


def expected_rules(obj: Obj) -> list[RuleShape]:
    """The rules the routing object stands for (Gateway API defaults applied)."""
    default_match = (("PathPrefix", "/", (), (), None),)
    if obj["kind"] == "TrafficSplit":
        backends = tuple((b["service"], int(b["weight"]), ()) for b in obj["spec"]["backends"])
        return [(default_match, backends, (), (None, None))]
    out: list[RuleShape] = []
    for rule in obj["spec"]["rules"]:
        matches = (
            tuple(
                (
                    (m.get("path") or {}).get("type", "PathPrefix"),
                    (m.get("path") or {}).get("value", "/"),
                    _headers(m.get("headers")),
                    _headers(m.get("queryParams")),
                    m.get("method"),
                )
                for m in rule["matches"]
            )
            if rule.get("matches")
            else default_match
        )
        backends = tuple(
            (
                b["name"],
                int(b.get("weight", 1)),
                tuple(_doc_filter(f) for f in b.get("filters") or ()),
            )
            for b in rule["backendRefs"]
        )
        filters = tuple(_doc_filter(f) for f in rule.get("filters") or ())
        t = rule.get("timeouts") or {}
        out.append(
            (matches, backends, filters, (_ms(t.get("request")), _ms(t.get("backendRequest"))))
        )
    return out


_PATH_KIND = {ir.PrefixPath: "PathPrefix", ir.ExactPath: "Exact", ir.RegexPath: "RegularExpression"}


def _ir_match(m: ir.Match) -> tuple[object, ...]:
    p = m.path
    value = p.pattern if isinstance(p, ir.RegexPath) else p.value
    return (
        _PATH_KIND[type(p)],
        value,
        tuple(sorted((h.name, h.kind, h.value) for h in m.headers)),
        tuple(sorted((q.name, q.kind, q.value) for q in m.query)),
        m.method,
    )


def vhost_of(table: ir.RouteTable, parent: str, host: str | None) -> ir.VirtualHost:
    p = table.parent(parent)
    assert p is not None, f"no parent {parent} in {[x.name for x in table.parents]}"
    if isinstance(p, ir.ServiceParent):
        return p.producer
    [vh] = [v for v in p.vhosts if host in v.domains]
    return vh


def table_rules(table: ir.RouteTable, seq: Sequence, obj: Obj) -> list[RuleShape]:
    """The compiled rules of `obj` (by source) on the sequence's parent, as `expected_rules`."""
    kind, name = obj["kind"], obj["metadata"]["name"]
    vh = vhost_of(table, seq.parent, seq.host)
    out: list[RuleShape] = []
    for rule in vh.rules:
        if (rule.source.kind, rule.source.name) != (kind, name):
            continue
        backends = []
        for b in rule.backends:
            assert isinstance(b.target, ir.ServiceTarget), b
            backends.append((b.target.service, b.weight, tuple(_ir_filter(f) for f in b.filters)))
        out.append(
            (
                tuple(_ir_match(m) for m in rule.matches),
                tuple(backends),
                tuple(_ir_filter(f) for f in rule.filters),
                (rule.timeouts.request_ms, rule.timeouts.backend_request_ms),
            )
        )
    return out


def shares(rules: list[RuleShape], index: int = -1) -> dict[str, Fraction]:
    """Share of each Service in one rule (weight / sum), for splits written with relative weights."""
    _, backends, _, _ = rules[index]
    total = sum(w for _, w, _ in backends)
    return {s: Fraction(w, total) for s, w, _ in backends}
