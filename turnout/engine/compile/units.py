"""One route -> one `RouteUnit`: everything the route adds to the table, and what it read.

```
route --parentRefs--> attachments --compile_rules--> RouteUnit
   services:  (Service port, view, rules)     view None = producer, else the consumer namespace
   gateways:  (Gateway port, hostname, listener, rules)
   attached:  (Gateway, listener)             for attachedRoutes
   status, diagnostics, cluster uses, ready checks (NoReadyEndpoints is a later pass)
   deps:      every index key the compile looked up (`Index.reads`), found or not
```
`compile_table` applies each unit as it is compiled (`apply_unit`); the incremental compiler
(`incremental.py`) keeps them and recompiles a unit only when its route or one of its
`deps` changed. A unit never reads EndpointSlices or Pods: those change clusters and the
ready checks' warnings only, so an endpoint event recompiles no route.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from functools import lru_cache

from turnout.engine import ir
from turnout.engine.compile.backends import ReadyCheck
from turnout.engine.compile.context import ClusterUse, CompileOptions, Ctx
from turnout.engine.compile.filters import ParentPort
from turnout.engine.compile.gateways import Attachments
from turnout.engine.compile.index import DepKey, Index, route_order
from turnout.engine.compile.parents import (
    GatewayAttachment,
    Ignored,
    Rejected,
    ServiceAttachment,
    ServicePort,
    parent_key,
    resolve_parent,
)
from turnout.engine.compile.rules import compile_rules
from turnout.engine.compile.where import Where, pos_of
from turnout.engine.config import CONTROLLER_NAME
from turnout.engine.diagnostics import Diagnostic, warning
from turnout.engine.model import Gateway, GRPCRoute, HTTPRoute, Loaded

UnitKey = tuple[str, str, str]
"""(kind, namespace, name) of a route."""

ServiceKey = tuple[str, str, int]
GatewayPortKey = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class ServiceRules:
    """Rules a unit adds to one view of a Service port (`rules` may be empty: the port is
    then still a parent, as a parentRef to a Service not among the inputs makes it one)."""

    key: ServiceKey
    port: ServicePort
    consumer: str | None
    """None: the producer view; else the consumer namespace's view."""
    rules: tuple[ir.Rule, ...]


@dataclass(frozen=True, slots=True)
class GatewayRules:
    key: GatewayPortKey
    host: str
    listener: str
    rules: tuple[ir.Rule, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteUnit:
    key: UnitKey
    route: Loaded[HTTPRoute] | Loaded[GRPCRoute]
    order: tuple[str, str, str]
    """`route_order(route)`: the tie-break position of its rules in every view."""
    status: ir.RouteStatus
    services: tuple[ServiceRules, ...]
    gateways: tuple[GatewayRules, ...]
    attached: tuple[tuple[Gateway, str, ir.SourceRef], ...]
    diagnostics: tuple[Diagnostic, ...]
    clusters: tuple[tuple[str, ClusterUse], ...]
    ready: tuple[ReadyCheck, ...]
    deps: frozenset[DepKey]


def unit_key(route: Loaded[HTTPRoute] | Loaded[GRPCRoute]) -> UnitKey:
    return (route.obj.kind, route.obj.namespace, route.obj.name)


def compile_unit(
    index: Index,
    options: CompileOptions,
    route: Loaded[HTTPRoute] | Loaded[GRPCRoute],
    served: Container[GatewayPortKey],
    order: tuple[str, str, str] | None = None,
    *,
    into: Ctx | None = None,
) -> RouteUnit:
    """Compile one route alone; `served` = the Gateway ports with a served listener, `order`
    = `route_order(route)` when the caller has it. With `into` (a whole compile), findings,
    cluster uses and ready checks go straight to that context and nothing is recorded: the
    unit then holds only its rules and status."""
    if into is not None:
        out = _Out()
        status = _attach_route(into, route, served, out)
        return RouteUnit(
            key=unit_key(route),
            route=route,
            order=order or route_order(route),
            status=status,
            services=tuple(out.services),
            gateways=tuple(out.gateways),
            attached=tuple(out.attached),
            diagnostics=(),
            clusters=(),
            ready=(),
            deps=frozenset(),
        )
    reads: set[DepKey] = set()
    index.reads = reads
    ctx = Ctx(index=index, options=options)
    out = _Out()
    try:
        status = _attach_route(ctx, route, served, out)
    finally:
        index.reads = None
    return RouteUnit(
        key=unit_key(route),
        route=route,
        order=route_order(route) if order is None else order,
        status=status,
        services=tuple(out.services),
        gateways=tuple(out.gateways),
        attached=tuple(out.attached),
        diagnostics=tuple(ctx.diags),
        clusters=_shared_uses(
            tuple((n, u.namespace, u.service, u.port, u.grpc) for n, u in ctx.clusters.items())
        ),
        ready=tuple(ctx.ready),
        deps=_shared_deps(frozenset(reads)),
    )


# Thousands of routes read the same few keys and use the same few clusters: equal values are
# kept once (10,000 routes on one Service: ~8 MB of equal frozensets, tuples and uses).
@lru_cache(maxsize=4096)
def _shared_deps(deps: frozenset[DepKey]) -> frozenset[DepKey]:
    return deps


@lru_cache(maxsize=4096)
def _shared_uses(
    uses: tuple[tuple[str, str, str, int, bool], ...],
) -> tuple[tuple[str, ClusterUse], ...]:
    """A unit's cluster uses; shared, so never mutated once the unit is built."""
    return tuple((n, ClusterUse(ns, svc, port, grpc)) for n, ns, svc, port, grpc in uses)


@lru_cache(maxsize=4096)
def _service_key(namespace: str, service: str, port: int) -> ServiceKey:
    return (namespace, service, port)


@dataclass(slots=True)
class _Out:
    services: list[ServiceRules]
    gateways: list[GatewayRules]
    attached: list[tuple[Gateway, str, ir.SourceRef]]

    def __init__(self) -> None:
        self.services, self.gateways, self.attached = [], [], []


def _attach_route(
    ctx: Ctx,
    route: Loaded[HTTPRoute] | Loaded[GRPCRoute],
    served: Container[GatewayPortKey],
    out: _Out,
) -> ir.RouteStatus:
    obj = route.obj
    gen = obj.generation
    source = ir.SourceRef(kind=obj.kind, namespace=obj.namespace, name=obj.name)
    parents: list[ir.ParentStatus] = []
    for k, ref in enumerate(obj.spec.parent_refs):
        pos = Where(route.pos, f"spec.parentRefs[{k}]")
        outcome = resolve_parent(ctx, route, ref, pos=pos)
        if isinstance(outcome, Ignored):
            continue
        key = parent_key(ref, obj.namespace)
        if isinstance(outcome, Rejected):
            ctx.report(warning(outcome.reason, outcome.message, pos_of(pos)))
            parents.append(_status(key, gen, accepted=(False, outcome.reason, outcome.message)))
            continue
        unresolved: list[tuple[str, str]] = []
        dropped: list[str] = []
        compiled_any = False
        if isinstance(outcome, ServiceAttachment):
            if obj.spec.hostnames:
                ctx.report(
                    warning(
                        "HostnamesIgnored",
                        "hostnames have no meaning for a Service parent (GAMMA) and are ignored",
                        route.field("spec.hostnames"),
                    )
                )
            for sp in outcome.ports:
                skey = _service_key(sp.namespace, sp.service, sp.port)
                rules, issues = compile_rules(
                    ctx, route, parent=ParentPort(port=sp.port, scheme="http"), needs_grant=False
                )
                unresolved += issues.unresolved
                dropped += issues.dropped
                compiled_any = compiled_any or bool(rules)
                # Not accepted (no rules): "a not-accepted parent gets no routing at all"
                # (§10), so it must not hide the default rule or the producer routes either.
                view = None if outcome.producer else obj.namespace
                out.services.append(ServiceRules(skey, sp, view, tuple(rules)))
        elif isinstance(outcome, GatewayAttachment):
            gw = outcome.gateway.obj
            if ctx.index.reads is not None:
                ctx.index.reads.add(("listeners", gw.namespace, gw.name))
            for la in outcome.listeners:
                li = la.listener
                scheme = "https" if li.protocol == "HTTPS" else "http"
                rules, issues = compile_rules(
                    ctx, route, parent=ParentPort(port=li.port, scheme=scheme), needs_grant=True
                )
                unresolved += issues.unresolved
                dropped += issues.dropped
                compiled_any = compiled_any or bool(rules)
                gkey = (gw.namespace, gw.name, li.port)
                if gkey not in served:
                    continue  # no listener on this port is served (conflicted, unsupported)
                out.gateways.extend(
                    GatewayRules(gkey, h, li.name, tuple(rules)) for h in la.hostnames
                )
            if compiled_any:  # attachedRoutes counts accepted routes only (ListenerStatus)
                out.attached.extend((gw, la.listener.name, source) for la in outcome.listeners)
        parents.append(_attached_status(key, gen, compiled_any, unresolved, dropped))
    return ir.RouteStatus(route=source, generation=gen, parents=tuple(parents))


def add_attached(attached: Attachments, unit: RouteUnit) -> None:
    for gw, listener, source in unit.attached:
        attached.add(gw, listener, source)


@lru_cache(maxsize=4096)  # frozen and equal: the same few conditions for thousands of routes
def _cond(type_: str, ok: bool, reason: str, message: str, gen: int) -> ir.Condition:
    return ir.Condition(
        type=type_,
        status="True" if ok else "False",
        reason=reason,
        message=message,
        observed_generation=gen,
    )


def _status(
    key: ir.ParentRefKey,
    gen: int,
    *,
    accepted: tuple[bool, str, str],
    resolved: tuple[bool, str, str] = (True, "ResolvedRefs", "all references resolved"),
    extra: tuple[ir.Condition, ...] = (),
) -> ir.ParentStatus:
    conds = (
        _cond("Accepted", accepted[0], accepted[1], accepted[2], gen),
        _cond("ResolvedRefs", resolved[0], resolved[1], resolved[2], gen),
        *extra,
    )
    return ir.ParentStatus(parent_ref=key, controller_name=CONTROLLER_NAME, conditions=conds)


def _attached_status(
    key: ir.ParentRefKey,
    gen: int,
    compiled_any: bool,
    unresolved: list[tuple[str, str]],
    dropped: list[str],
) -> ir.ParentStatus:
    if compiled_any:
        accepted = (True, "Accepted", "route accepted")
    else:
        accepted = (False, "UnsupportedValue", "no rule of the route could be compiled")
    resolved = (True, "ResolvedRefs", "all references resolved")
    if unresolved:
        reason, message = unresolved[0]
        resolved = (False, reason, message)
    extra: tuple[ir.Condition, ...] = ()
    if dropped and compiled_any:
        # Rules are compiled once per port/listener: report each dropped rule once.
        message = "; ".join(dict.fromkeys(dropped))
        extra = (_cond("PartiallyInvalid", True, "UnsupportedValue", message, gen),)
    return _status(key, gen, accepted=accepted, resolved=resolved, extra=extra)


ir.store_by_slot(ServiceRules, GatewayRules, RouteUnit)  # built per route: the IR's faster __init__
