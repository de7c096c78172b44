"""One route's rules -> IR `Rule`s for one parent (HTTPROUTE-SEMANTICS §2, §6–§8).

A rule is compiled per parent because redirect ports and ReferenceGrant requirements depend
on the parent. A rule whose matches cannot be compiled (an invalid regex) is dropped and
reported; the route's other rules still serve ("one bad rule costs that rule").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from turnout.engine import ir
from turnout.engine.compile.backends import RouteRef, check_ready, resolve_backend
from turnout.engine.compile.context import Ctx
from turnout.engine.compile.durations import duration_ms
from turnout.engine.compile.filters import FilterResult, ParentPort, compile_filters
from turnout.engine.compile.matches import grpc_match, http_match
from turnout.engine.compile.where import At, Where, pos_of
from turnout.engine.config import (
    DEFAULT_BACKEND_REQUEST_TIMEOUT_MS,
    DEFAULT_REQUEST_TIMEOUT_MS,
    DEFAULT_RETRY_ATTEMPTS,
    DEFAULT_RETRY_BACKOFF_MS,
    DEFAULT_RETRY_CODES,
)
from turnout.engine.diagnostics import error, warning
from turnout.engine.model import GRPCRoute, HTTPRoute, Loaded
from turnout.engine.model.grpcroute import GRPCBackendRef, GRPCRouteMatch, GRPCRouteRule
from turnout.engine.model.httproute import (
    HTTPBackendRef,
    HTTPRouteMatch,
    HTTPRouteRetry,
    HTTPRouteRule,
    HTTPRouteTimeouts,
)


@dataclass(slots=True)
class RuleIssues:
    unresolved: list[tuple[str, str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    """Messages for rules that were dropped."""


_NO_FILTERS = FilterResult()
"""What `compile_filters` gives for no filters (read only)."""


def route_ref(loaded: Loaded[HTTPRoute] | Loaded[GRPCRoute]) -> RouteRef:
    obj = loaded.obj
    return RouteRef(kind=obj.kind, namespace=obj.namespace, name=obj.name)


def compile_rules(
    ctx: Ctx,
    loaded: Loaded[HTTPRoute] | Loaded[GRPCRoute],
    *,
    parent: ParentPort,
    needs_grant: bool,
) -> tuple[list[ir.Rule], RuleIssues]:
    obj = loaded.obj
    kind, namespace, route_name = obj.kind, obj.namespace, obj.name
    ref = RouteRef(kind=kind, namespace=namespace, name=route_name)
    grpc = isinstance(obj, GRPCRoute)
    base = f"{kind.lower()}/{namespace}/{route_name}"
    issues = RuleIssues()
    rules: list[ir.Rule] = []
    all_rules: Sequence[HTTPRouteRule | GRPCRouteRule] = obj.spec.rules
    for i, rule in enumerate(all_rules):
        name = f"{base}/rule/{i}"
        pos = Where(loaded.pos, f"spec.rules[{i}]")
        matches = _matches(ctx, rule, name=name, pos=pos)
        if matches is None:
            issues.dropped.append(f"Dropped Rule {i}: a match is invalid")
            continue
        prefix = _only_prefix(rule)
        if prefix is None and (where := _backend_prefix_rewrite(rule)) is not None:
            msg = "ReplacePrefixMatch needs the rule's only match to be a PathPrefix"
            ctx.report(
                error("UnsupportedValue", f"{msg}; the rule is dropped", pos_of(pos.child(where)))
            )
            issues.dropped.append(f"Dropped Rule {i}: {msg}")
            continue
        res = _NO_FILTERS
        if rule.filters:
            res = compile_filters(
                ctx,
                rule.filters,
                rule_name=name,
                route=ref,
                parent=parent,
                prefix=prefix,
                needs_grant=needs_grant,
                grpc=grpc,
                pos=pos.child("filters"),
            )
            issues.unresolved.extend(res.unresolved)
        backends: list[ir.WeightedBackend] = []
        backend_refs: Sequence[HTTPBackendRef | GRPCBackendRef] = rule.backend_refs
        total = sum(b.weight for b in backend_refs)
        for j, br in enumerate(backend_refs):
            bpos = Where(pos, f"backendRefs[{j}]")
            target = resolve_backend(
                ctx, br, route=ref, needs_grant=needs_grant, grpc=grpc, pos=bpos
            )
            if isinstance(target, ir.InvalidBackend):
                issues.unresolved.append((target.reason, target.message))
            else:
                check_ready(ctx, target, weight=br.weight, total=total, pos=bpos)
            kept: tuple[ir.Filter, ...] = ()
            if br.filters:
                bres = compile_filters(
                    ctx,
                    br.filters,
                    rule_name=f"{name}/backend/{j}",
                    route=ref,
                    parent=parent,
                    prefix=prefix,
                    needs_grant=needs_grant,
                    grpc=grpc,
                    pos=bpos.child("filters"),
                    allow_fault=False,
                )
                issues.unresolved.extend(bres.unresolved)
                kept = tuple(_backend_filters(ctx, bres.filters, pos=bpos.child("filters")))
            backends.append(
                ir.WeightedBackend(
                    name=f"{name}/backend/{j}",
                    source=ir.SourceRef(
                        kind=kind,
                        namespace=namespace,
                        name=route_name,
                        section=f"rule/{i}/backend/{j}",
                    ),
                    weight=br.weight,
                    target=target,
                    filters=kept,
                )
            )
        timeouts, retry = ir.Timeouts(), None
        if isinstance(rule, HTTPRouteRule):
            timeouts = compile_timeouts(rule.timeouts)
            retry = compile_retry(rule.retry)
        rules.append(
            ir.Rule(
                name=name,
                source=ir.SourceRef(
                    kind=kind, namespace=namespace, name=route_name, section=f"rule/{i}"
                ),
                matches=tuple(matches),
                filters=tuple(res.filters),
                backends=tuple(backends),
                timeouts=timeouts,
                retry=retry,
                fault=res.fault,
                section_name=rule.name,
            )
        )
    return rules, issues


BACKEND_FILTERS = (
    ir.RequestHeaderFilter,
    ir.ResponseHeaderFilter,
    ir.RedirectFilter,
    ir.URLRewriteFilter,
    ir.ErrorResponse,
)
"""What a backendRef's own filter list can do in Turnout: header modifiers, a redirect that
answers the backend's share, a URL rewrite of what that backend is sent (HTTPROUTE-SEMANTICS
§7.9; Extended features HTTPRouteBackendRequestRedirect / HTTPRouteBackendURLRewrite)."""

_FILTER_TYPES: dict[type, str] = {ir.MirrorFilter: "RequestMirror", ir.CorsFilter: "CORS"}
"""The Gateway API filter type of what a backend leaves out, for its diagnostic."""


def _backend_filters(ctx: Ctx, filters: list[ir.Filter], *, pos: At) -> list[ir.Filter]:
    """Keep what a backend can apply; report the rest (mirrors, CORS).

    Gateway API leaves backendRef-level filters beyond those of `BACKEND_FILTERS`
    implementation-specific. A redirect or rewrite is resolved exactly as at rule level (the
    parent's port, the rule's only PathPrefix for ReplacePrefixMatch), and a rule-level
    RequestRedirect never meets one: CEL forbids it on a rule with backendRefs."""
    kept: list[ir.Filter] = []
    for f in filters:
        if isinstance(f, BACKEND_FILTERS):
            kept.append(f)
            continue
        what = _FILTER_TYPES.get(type(f), type(f).__name__)
        msg = f"{what} is not supported on a backendRef (only on the rule); it is ignored"
        ctx.report(warning("UnsupportedValue", msg, pos_of(pos)))
    return kept


def _matches(
    ctx: Ctx, rule: HTTPRouteRule | GRPCRouteRule, *, name: str, pos: At
) -> list[ir.Match] | None:
    out: list[ir.Match] = []
    raw: list[HTTPRouteMatch] | list[GRPCRouteMatch]
    if isinstance(rule, HTTPRouteRule):
        raw = rule.matches or [HTTPRouteMatch()]
        for k, m in enumerate(raw):
            got, diags = http_match(m, name=f"{name}/match/{k}", pos=Where(pos, f"matches[{k}]"))
            for d in diags:
                ctx.report(d)
            if got is None:
                return None
            out.append(got)
    else:
        graw = rule.matches or [GRPCRouteMatch()]
        for k, gm in enumerate(graw):
            got, diags = grpc_match(gm, name=f"{name}/match/{k}", pos=Where(pos, f"matches[{k}]"))
            for d in diags:
                ctx.report(d)
            if got is None:
                return None
            out.append(got)
    return out


def _only_prefix(rule: HTTPRouteRule | GRPCRouteRule) -> str | None:
    """The matched prefix a ReplacePrefixMatch replaces (CEL: exactly one PathPrefix match)."""
    if isinstance(rule, HTTPRouteRule):
        matches = rule.matches or [HTTPRouteMatch()]
        if len(matches) == 1 and matches[0].path.type == "PathPrefix":
            return matches[0].path.value
    return None


def _backend_prefix_rewrite(rule: HTTPRouteRule | GRPCRouteRule) -> str | None:
    """Where a backendRef uses ReplacePrefixMatch (``backendRefs[j].filters[k]``), if any.

    The CRD checks this with `exists_one`, so two backendRefs doing it escape the CEL rule and
    reach us; the API reference still says the route is then not accepted (§7.4)."""
    if not isinstance(rule, HTTPRouteRule):
        return None
    for j, br in enumerate(rule.backend_refs):
        for k, f in enumerate(br.filters):
            mod = f.request_redirect or f.url_rewrite
            if mod is not None and mod.path is not None and mod.path.type == "ReplacePrefixMatch":
                return f"backendRefs[{j}].filters[{k}]"
    return None


def compile_timeouts(t: HTTPRouteTimeouts | None) -> ir.Timeouts:
    """ "0s" disables a timeout (GEP-1742); unset takes our default (none)."""
    if t is None:
        return ir.Timeouts(
            request_ms=DEFAULT_REQUEST_TIMEOUT_MS,
            backend_request_ms=DEFAULT_BACKEND_REQUEST_TIMEOUT_MS,
        )
    request = duration_ms(t.request) if t.request is not None else DEFAULT_REQUEST_TIMEOUT_MS
    backend = (
        duration_ms(t.backend_request)
        if t.backend_request is not None
        else DEFAULT_BACKEND_REQUEST_TIMEOUT_MS
    )
    return ir.Timeouts(request_ms=request or None, backend_request_ms=backend or None)


def compile_retry(r: HTTPRouteRetry | None) -> ir.RetryPolicy | None:
    if r is None:
        return None
    return ir.RetryPolicy(
        attempts=r.attempts if r.attempts is not None else DEFAULT_RETRY_ATTEMPTS,
        codes=tuple(sorted(set(r.codes))) if r.codes else DEFAULT_RETRY_CODES,
        backoff_ms=duration_ms(r.backoff) if r.backoff is not None else DEFAULT_RETRY_BACKOFF_MS,
    )
