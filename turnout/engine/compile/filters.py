"""Route filters -> IR filters, and ExtensionRef -> FaultInjection (HTTPROUTE-SEMANTICS §7).

Filters keep the user's order. Redirect ports are resolved here, per parent, because the
default is the listener's (mesh: the Service's) port: "port: filter value; else if the
filter sets a scheme -> that scheme's well-known port; else the listener's port", and a port
that is the scheme's default is left out of `Location`. A ReplacePrefixMatch carries the
prefix it replaces, which the CEL rules guarantee is the rule's only PathPrefix match.
An ExtensionRef that cannot be resolved is not skipped: it becomes an `ErrorResponse(500)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from turnout.engine import ir
from turnout.engine.compile.backends import RouteRef, resolve_backend
from turnout.engine.compile.context import Ctx
from turnout.engine.compile.durations import duration_ms
from turnout.engine.compile.where import At, pos_of
from turnout.engine.config import POLICY_GROUP
from turnout.engine.diagnostics import warning
from turnout.engine.model.grpcroute import GRPCRouteFilter
from turnout.engine.model.httproute import HTTPHeaderFilter, HTTPPathModifier, HTTPRouteFilter
from turnout.engine.model.policy import FaultInjection

WELL_KNOWN_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True, kw_only=True)
class ParentPort:
    """What a redirect needs to know about the parent a rule is compiled for."""

    port: int
    scheme: str
    """"https" for an HTTPS listener, else "http"."""


@dataclass(slots=True)
class FilterResult:
    filters: list[ir.Filter] = field(default_factory=list)
    fault: ir.FaultInjection | None = None
    unresolved: list[tuple[str, str]] = field(default_factory=list)
    """(ResolvedRefs reason, message) for references that did not resolve."""


def header_modifier(f: HTTPHeaderFilter) -> ir.HeaderModifier:
    return ir.HeaderModifier(
        set=tuple(ir.Header(name=h.name, value=h.value) for h in f.set),
        add=tuple(ir.Header(name=h.name, value=h.value) for h in f.add),
        remove=tuple(f.remove),
    )


def path_rewrite(mod: HTTPPathModifier | None, prefix: str | None) -> ir.PathRewrite | None:
    if mod is None:
        return None
    if mod.type == "ReplaceFullPath":
        return ir.ReplaceFullPath(value=mod.replace_full_path or "/")
    return ir.ReplacePrefix(
        prefix=(prefix or "/").rstrip("/") or "/",
        replacement=(mod.replace_prefix_match or "").rstrip("/"),
    )


def redirect_port(*, filter_port: int | None, scheme: str | None, parent: ParentPort) -> int | None:
    effective_scheme = scheme or parent.scheme
    if filter_port is not None:
        port = filter_port
    elif scheme is not None:
        port = WELL_KNOWN_PORTS[scheme]
    else:
        port = parent.port
    return None if WELL_KNOWN_PORTS.get(effective_scheme) == port else port


def compile_filters(
    ctx: Ctx,
    filters: Sequence[HTTPRouteFilter | GRPCRouteFilter],
    *,
    rule_name: str,
    route: RouteRef,
    parent: ParentPort,
    prefix: str | None,
    needs_grant: bool,
    grpc: bool,
    pos: At,
    allow_fault: bool = True,
) -> FilterResult:
    out = FilterResult()
    mirrors = 0
    for i, f in enumerate(filters):
        fpos = pos.child(f"[{i}]")
        if f.type == "RequestHeaderModifier" and f.request_header_modifier:
            out.filters.append(
                ir.RequestHeaderFilter(modifier=header_modifier(f.request_header_modifier))
            )
        elif f.type == "ResponseHeaderModifier" and f.response_header_modifier:
            out.filters.append(
                ir.ResponseHeaderFilter(modifier=header_modifier(f.response_header_modifier))
            )
        elif f.type == "RequestMirror" and f.request_mirror:
            mirror = f.request_mirror
            target = resolve_backend(
                ctx,
                mirror.backend_ref,
                route=route,
                needs_grant=needs_grant,
                grpc=grpc,
                pos=fpos.child("requestMirror.backendRef"),
            )
            index, mirrors = mirrors, mirrors + 1  # invalid mirrors count: names stay stable
            if isinstance(target, ir.InvalidBackend):
                out.unresolved.append((target.reason, target.message))
                continue  # "the mirror is not configured"
            if mirror.fraction is not None:
                per_million = (
                    ir.PER_MILLION * mirror.fraction.numerator // mirror.fraction.denominator
                )
            elif mirror.percent is not None:
                per_million = mirror.percent * ir.PER_MILLION // 100
            else:
                per_million = ir.PER_MILLION
            out.filters.append(
                ir.MirrorFilter(
                    name=f"{rule_name}/mirror/{index}", backend=target, per_million=per_million
                )
            )
        elif isinstance(f, HTTPRouteFilter):
            _http_only_filter(ctx, f, out, parent=parent, prefix=prefix, pos=fpos)
        if f.type == "ExtensionRef" and f.extension_ref:
            _extension_ref(ctx, f, out, route=route, allow_fault=allow_fault, pos=fpos)
    return out


def _http_only_filter(
    ctx: Ctx,
    f: HTTPRouteFilter,
    out: FilterResult,
    *,
    parent: ParentPort,
    prefix: str | None,
    pos: At,
) -> None:
    if f.type == "RequestRedirect" and f.request_redirect:
        r = f.request_redirect
        out.filters.append(
            ir.RedirectFilter(
                status_code=r.status_code,
                scheme=r.scheme,
                hostname=r.hostname,
                port=redirect_port(filter_port=r.port, scheme=r.scheme, parent=parent),
                path=path_rewrite(r.path, prefix),
            )
        )
    elif f.type == "URLRewrite" and f.url_rewrite:
        u = f.url_rewrite
        out.filters.append(
            ir.URLRewriteFilter(hostname=u.hostname, path=path_rewrite(u.path, prefix))
        )
    elif f.type == "CORS" and f.cors:
        c = f.cors
        out.filters.append(
            ir.CorsFilter(
                allow_origins=tuple(c.allow_origins),
                allow_methods=tuple(c.allow_methods),
                allow_headers=tuple(c.allow_headers),
                expose_headers=tuple(c.expose_headers),
                allow_credentials=bool(c.allow_credentials),
                max_age_s=c.max_age,
            )
        )
    elif f.type == "ExternalAuth":
        msg = "ExternalAuth is not supported by Turnout; requests fail closed with 500"
        ctx.report(warning("UnsupportedValue", msg, pos_of(pos)))
        out.filters.append(ir.ErrorResponse(status=500, message=msg))


def _extension_ref(
    ctx: Ctx,
    f: HTTPRouteFilter | GRPCRouteFilter,
    out: FilterResult,
    *,
    route: RouteRef,
    allow_fault: bool,
    pos: At,
) -> None:
    ref = f.extension_ref
    assert ref is not None
    if ref.group != POLICY_GROUP or ref.kind != "FaultInjection":
        msg = f"ExtensionRef to unsupported {ref.kind} ({ref.group or 'core'}); requests get 500"
        ctx.report(warning("InvalidKind", msg, pos_of(pos.child("extensionRef"))))
        out.unresolved.append(("InvalidKind", msg))
        out.filters.append(ir.ErrorResponse(status=500, message=msg))
        return
    loaded = ctx.index.fault(route.namespace, ref.name)
    if loaded is None:
        msg = f"FaultInjection {route.namespace}/{ref.name} not found; requests get 500"
        ctx.report(warning("BackendNotFound", msg, pos_of(pos.child("extensionRef.name"))))
        out.unresolved.append(("BackendNotFound", msg))
        out.filters.append(ir.ErrorResponse(status=500, message=msg))
        return
    if not allow_fault:
        msg = "FaultInjection is only supported on rules, not on backendRefs; requests get 500"
        ctx.report(warning("UnsupportedValue", msg, pos_of(pos.child("extensionRef"))))
        out.filters.append(ir.ErrorResponse(status=500, message=msg))
        return
    if out.fault is not None:
        msg = "a rule may reference one FaultInjection; this one is ignored"
        ctx.report(warning("IncompatibleFilters", msg, pos_of(pos.child("extensionRef"))))
        return
    out.fault = fault_from(loaded.obj)


def fault_from(obj: FaultInjection) -> ir.FaultInjection:
    spec = obj.spec
    delay = None
    if spec.delay is not None:
        delay = ir.FaultDelay(
            duration_ms=duration_ms(spec.delay.fixed_delay),
            per_million=spec.delay.percentage * ir.PER_MILLION // 100,
        )
    abort = None
    if spec.abort is not None:
        abort = ir.FaultAbort(
            per_million=spec.abort.percentage * ir.PER_MILLION // 100,
            http_status=spec.abort.http_status,
            grpc_status=spec.abort.grpc_status,
        )
    return ir.FaultInjection(
        name=f"faultinjection/{obj.namespace}/{obj.name}",
        source=ir.SourceRef(kind="FaultInjection", namespace=obj.namespace, name=obj.name),
        delay=delay,
        abort=abort,
    )


ir.store_by_slot(ParentPort)  # built per route: the IR's faster __init__
