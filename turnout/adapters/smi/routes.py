"""One TrafficSplit (+ its HTTPRouteGroups) -> the HTTPRoute(s) it stands for.

```
TrafficSplit{service: apex, backends, matches?}      (HTTPROUTE-SEMANTICS §14)
  for each TCP port p of the apex Service:
    TrafficSplitRoute  ns = the split's, parentRefs [{group: "", kind: Service, name: apex, port: p}]
      no matches:   rule 0:    backendRefs [{name: backend, port: p, weight}]
      matches:      rule 0..n: one per HTTPRouteGroup match (headers regex ANDed, pathRegex,
                               one Gateway API match per method) -> the weighted backends
                    rule n+1:  everything else -> the apex Service itself (its endpoints)
```

One route per apex port because a backendRef names its port: a route attached to the whole
Service would send every port's traffic to one backend port. SMI maps ports by number ("the
root port must match a port on every backend"); a backend Service that lacks the port gets
weight 0 there, and a warning, instead of a 500 share ("the backend service is not included
and will not receive traffic", traffic-split v1alpha4 §Ports).

The A/B layout follows smi-spec traffic-split v1alpha4: "If the header conditions don't match
the incoming request, then routing will be handled by the Kubernetes service with the same
name as `spec.service`", and a backendRef to the parent Service itself means its endpoints
(HTTPROUTE-SEMANTICS §9), so the fall-through rule cannot loop. Linkerd declined header and
path splits (linkerd/linkerd2#7155); Turnout serves them.

Every synthesized route is a `Loaded` at the TrafficSplit's own document, so what the compiler
reports about it points there (with the field path of the equivalent HTTPRoute:
``spec.rules[0].backendRefs[1]`` is ``spec.backends[1]``). This module reports its own findings
at the TrafficSplit's and HTTPRouteGroup's real field paths.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from turnout.adapters.smi.weights import split_weights
from turnout.engine.diagnostics import Diagnostic, SourcePos, warning
from turnout.engine.model import Loaded, ParentReference, Service
from turnout.engine.model.httproute import (
    HTTPBackendRef,
    HTTPHeaderMatch,
    HTTPPathMatch,
    HTTPRouteMatch,
    HTTPRouteRule,
    HTTPRouteSpec,
)
from turnout.engine.model.smi import (
    SPECS_GROUP,
    AnyTrafficSplit,
    HTTPMatch,
    HTTPRouteGroup,
    TrafficSplit,
    TrafficSplitRoute,
)

log = logging.getLogger(__name__)

HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
CATCH_ALL_REGEX = ".*"
"""The fall-through path when a match rule uses a regex path: regex paths rank below every
prefix (ir.match_precedence), so a ``/`` prefix would shadow them; a shorter regex ranks last."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SmiIndex:
    """What a conversion looks up: Services and HTTPRouteGroups by (namespace, name)."""

    services: Mapping[tuple[str, str], Service]
    groups: Mapping[tuple[str, str], Loaded[HTTPRouteGroup]]


def trafficsplit_to_httproute(
    split: Loaded[AnyTrafficSplit],
    *,
    index: SmiIndex,
    diagnostics: list[Diagnostic],
) -> list[Loaded[TrafficSplitRoute]]:
    """The routes `split` stands for, one per TCP port of its apex Service (none when the apex
    is not among the inputs). Findings are appended to `diagnostics`."""
    obj = split.obj
    ns, apex = obj.namespace, obj.spec.service
    svc = index.services.get((ns, apex))
    ports = [p.port for p in svc.spec.ports if p.protocol == "TCP"] if svc is not None else []
    if not ports:
        why = "not found among the inputs" if svc is None else "has no TCP port"
        msg = f"apex Service {ns}/{apex} {why}; TrafficSplit {ns}/{obj.name} routes nothing"
        diagnostics.append(warning("TrafficSplitServiceNotFound", msg, split.field("spec.service")))
        return []
    weights, rounded = split_weights(obj)
    if rounded:
        msg = f"weights scaled to at most 1000000 keeping their ratios: {weights}"
        diagnostics.append(warning("TrafficSplitWeightsRounded", msg, split.field("spec.backends")))
    if not any(weights):
        msg = (
            "every backend weight is 0: requests to the apex Service answer 500 "
            "(Gateway API: a rule whose backends all have weight 0 serves no backend)"
        )
        diagnostics.append(warning("TrafficSplitWeightsZero", msg, split.field("spec.backends")))
    matches = _matches(split, index=index, diagnostics=diagnostics)
    routes: list[Loaded[TrafficSplitRoute]] = []
    for port in ports:
        backends = _backends(split, weights, port=port, index=index, diagnostics=diagnostics)
        rules = _rules(backends, matches, apex=apex, port=port)
        route = TrafficSplitRoute(
            api_version=obj.api_version,
            metadata=obj.metadata,
            spec=HTTPRouteSpec(
                parent_refs=[ParentReference(group="", kind="Service", name=apex, port=port)],
                rules=rules,
            ),
        )
        routes.append(Loaded(obj=route, pos=split.pos, raw=split.raw))
    return routes


def _backends(
    split: Loaded[AnyTrafficSplit],
    weights: list[int],
    *,
    port: int,
    index: SmiIndex,
    diagnostics: list[Diagnostic],
) -> list[HTTPBackendRef]:
    ns = split.obj.namespace
    out: list[HTTPBackendRef] = []
    names = [b.service for b in split.obj.spec.backends]
    for j, (name, weight) in enumerate(zip(names, weights, strict=True)):
        svc = index.services.get((ns, name))
        if svc is not None and svc.spec.ports and all(p.port != port for p in svc.spec.ports):
            msg = (
                f"backend Service {ns}/{name} has no port {port} (the apex port): "
                "it gets no traffic on that port (SMI: ports are matched by number)"
            )
            diagnostics.append(
                warning("TrafficSplitBackendPortMismatch", msg, split.field(f"spec.backends[{j}]"))
            )
            weight = 0
        out.append(HTTPBackendRef(name=name, port=port, weight=weight))
    return out


def _rules(
    backends: list[HTTPBackendRef],
    matches: list[list[HTTPRouteMatch]] | None,
    *,
    apex: str,
    port: int,
) -> list[HTTPRouteRule]:
    if matches is None:
        return [HTTPRouteRule(matches=[HTTPRouteMatch()], backend_refs=backends)]
    rules = [HTTPRouteRule(matches=m, backend_refs=backends) for m in matches]
    regex = any(m.path.type == "RegularExpression" for ms in matches for m in ms)
    path = (
        HTTPPathMatch(type="RegularExpression", value=CATCH_ALL_REGEX) if regex else HTTPPathMatch()
    )
    fallback = HTTPBackendRef(name=apex, port=port, weight=1)
    rules.append(HTTPRouteRule(matches=[HTTPRouteMatch(path=path)], backend_refs=[fallback]))
    return rules


def _matches(
    split: Loaded[AnyTrafficSplit], *, index: SmiIndex, diagnostics: list[Diagnostic]
) -> list[list[HTTPRouteMatch]] | None:
    """One list of Gateway API matches per HTTPRouteGroup match (None: the split has no
    `matches` and applies to all traffic). A group that cannot be found or a match that cannot
    be expressed is reported and contributes nothing, so its traffic stays on the apex."""
    obj = split.obj
    if not isinstance(obj, TrafficSplit) or not obj.spec.matches:
        return None
    out: list[list[HTTPRouteMatch]] = []
    for i, ref in enumerate(obj.spec.matches):
        pos = split.field(f"spec.matches[{i}]")
        if ref.api_group not in (None, "", SPECS_GROUP):
            msg = f"matches must reference {SPECS_GROUP} HTTPRouteGroups, not {ref.api_group}"
            diagnostics.append(warning("InvalidKind", msg, pos.child("apiGroup")))
            continue
        group = index.groups.get((obj.namespace, ref.name))
        if group is None:
            msg = (
                f"HTTPRouteGroup {obj.namespace}/{ref.name} not found among the inputs; "
                "its requests stay on the apex Service"
            )
            diagnostics.append(warning("HTTPRouteGroupNotFound", msg, pos))
            continue
        for k, m in enumerate(group.obj.spec.matches):
            got = http_matches(m, pos=group.field(f"spec.matches[{k}]"), diagnostics=diagnostics)
            if got:
                out.append(got)
    return out


def http_matches(
    m: HTTPMatch, *, pos: SourcePos, diagnostics: list[Diagnostic]
) -> list[HTTPRouteMatch]:
    """An SMI `HTTPMatch` as Gateway API matches (ORed): one per method, or one for all.

    SMI: "A regex is used to match against the URI and is anchored (^) to the beginning",
    so ``pathRegex: /api`` also matches ``/api/v1``; Gateway API regexes match the whole
    path, hence ``(?:R).*``. Header values are regexes and several headers are ANDed, as in
    Gateway API. An empty list means the match cannot be expressed (reported)."""
    methods: list[str | None] = []
    for k, method in enumerate(m.methods):
        if method == "*":
            methods = []
            break
        if method.upper() not in HTTP_METHODS:
            msg = f"unsupported HTTP method {method!r}; the match is ignored"
            diagnostics.append(warning("UnsupportedValue", msg, pos.child(f"methods[{k}]")))
            return []
        methods.append(method.upper())
    bad = _bad_regex(m, pos=pos)
    if bad is not None:
        diagnostics.append(bad)
        return []
    path = HTTPPathMatch()
    if m.path_regex is not None:
        path = HTTPPathMatch(type="RegularExpression", value=f"(?:{m.path_regex}).*")
    try:
        headers = [
            HTTPHeaderMatch(type="RegularExpression", name=name, value=value)
            for name, value in sorted(m.headers.items())
        ]
        return [
            HTTPRouteMatch(path=path, headers=headers, method=method)
            for method in (methods or [None])
        ]
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = (
            f"match {m.name!r} cannot be expressed as an HTTPRoute match ({first['msg']}); ignored"
        )
        diagnostics.append(warning("UnsupportedValue", msg, pos))
        return []


def _bad_regex(m: HTTPMatch, *, pos: SourcePos) -> Diagnostic | None:
    """Check the regexes here, so the finding points at the HTTPRouteGroup's own field."""
    fields = [("pathRegex", m.path_regex)] if m.path_regex is not None else []
    fields += [(f"headers.{name}", value) for name, value in sorted(m.headers.items())]
    for where, pattern in fields:
        try:
            re.compile(pattern)
        except re.error as exc:
            msg = f"invalid regex {pattern!r}: {exc}; the match is ignored"
            return warning("InvalidRegex", msg, pos.child(where))
    return None
