"""parentRefs -> attachments: which Service ports and Gateway listeners a route joins.

Mesh (GAMMA, §9): a Service parent attaches to the port named by `port` (number) or
`sectionName` (port name), else to every port; a route in the Service's namespace is a
*producer* route, in another namespace a *consumer* route for that namespace only.
Gateway (§5): the listener must match `sectionName`/`port`, speak HTTP(S), admit the route's
kind and namespace (`allowedRoutes`), and share a hostname with the route; otherwise the
parent is rejected with the spec's reason. A parent that does not exist, or whose Gateway is
another controller's, gets no status entry; except a parent Service when the inputs are the
whole cluster (`CompileOptions.complete_inputs`): it gets `Accepted=False, NoMatchingParent`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from turnout.engine import ir
from turnout.engine.compile.context import Ctx
from turnout.engine.compile.hosts import effective_hostnames
from turnout.engine.compile.where import At, pos_of
from turnout.engine.diagnostics import warning
from turnout.engine.model import Gateway, GRPCRoute, HTTPRoute, Loaded, ParentReference
from turnout.engine.model.base import LabelSelector
from turnout.engine.model.gateway import Listener

HTTP_PROTOCOLS = ("HTTP", "HTTPS")
GW_GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True, slots=True)
class ServicePort:
    namespace: str
    service: str
    port: int
    port_name: str | None


@dataclass(slots=True)
class ServiceAttachment:
    ports: list[ServicePort]
    producer: bool


@dataclass(slots=True)
class ListenerAttachment:
    listener: Listener
    hostnames: list[str]


@dataclass(slots=True)
class GatewayAttachment:
    gateway: Loaded[Gateway]
    listeners: list[ListenerAttachment] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    message: str


class Ignored:
    """No status entry: the parent does not exist or is not ours."""


Outcome = ServiceAttachment | GatewayAttachment | Rejected | Ignored


def parent_key(ref: ParentReference, route_ns: str) -> ir.ParentRefKey:
    return ir.ParentRefKey(
        group=ref.group,
        kind=ref.kind,
        namespace=ref.namespace or route_ns,
        name=ref.name,
        section_name=ref.section_name,
        port=ref.port,
    )


def resolve_parent(
    ctx: Ctx,
    route: Loaded[HTTPRoute] | Loaded[GRPCRoute],
    ref: ParentReference,
    *,
    pos: At,
) -> Outcome:
    ns = ref.namespace or route.obj.namespace
    # Linkerd (and Flagger's Linkerd e2e) write `group: core` for a Service parent; the
    # status entry still echoes the ref as written (`parent_key`).
    if ref.group in ("", "core") and ref.kind == "Service":
        return _service_parent(ctx, route, ref, ns=ns, pos=pos)
    if ref.group == GW_GROUP and ref.kind == "Gateway":
        return _gateway_parent(ctx, route, ref, ns=ns, pos=pos)
    if ref.group == "policy.linkerd.io" and ref.kind == "Server":
        return Ignored()  # an inbound route: the policy adapter's (adapters/policy), not routing's
    ctx.report(
        warning(
            "InvalidKind", f"unsupported parent kind {ref.kind} (group {ref.group!r})", pos_of(pos)
        )
    )
    return Ignored()


def _service_parent(
    ctx: Ctx,
    route: Loaded[HTTPRoute] | Loaded[GRPCRoute],
    ref: ParentReference,
    *,
    ns: str,
    pos: At,
) -> Outcome:
    producer = ns == route.obj.namespace
    svc = ctx.index.service(ns, ref.name)
    if svc is None and ctx.options.complete_inputs:
        return Rejected("NoMatchingParent", f"parent Service {ns}/{ref.name} does not exist")
    if svc is None:
        if ref.port is None:
            msg = f"parent Service {ns}/{ref.name} not found among the inputs and no port given"
            ctx.report(warning("ParentNotFound", msg, pos_of(pos)))
            return Ignored()
        msg = f"parent Service {ns}/{ref.name} not found among the inputs; assuming port {ref.port}"
        ctx.report(warning("ParentNotFound", msg, pos_of(pos)))
        return ServiceAttachment([ServicePort(ns, ref.name, ref.port, None)], producer)
    # Only TCP ports are HTTP frontends: a route without `port` must not turn a UDP or SCTP
    # port into a parent, and `port`/`sectionName` naming one selects nothing.
    ports = [
        ServicePort(ns, ref.name, p.port, p.name)
        for p in svc.obj.spec.ports
        if p.protocol == "TCP"
        and (ref.port is None or p.port == ref.port)
        and (ref.section_name is None or p.name == ref.section_name)
    ]
    if not ports:
        want = f"port {ref.port}" if ref.port is not None else f"port named {ref.section_name}"
        return Rejected("NoMatchingParent", f"Service {ns}/{ref.name} has no TCP {want}")
    return ServiceAttachment(ports, producer)


def _gateway_parent(
    ctx: Ctx,
    route: Loaded[HTTPRoute] | Loaded[GRPCRoute],
    ref: ParentReference,
    *,
    ns: str,
    pos: At,
) -> Outcome:
    gw = ctx.index.gateway(ns, ref.name)
    if gw is None:
        ctx.report(
            warning(
                "ParentNotFound", f"Gateway {ns}/{ref.name} not found among the inputs", pos_of(pos)
            )
        )
        return Ignored()
    if ctx.index.gateway_is_ours(gw.obj) is False:
        return Ignored()
    listeners = [
        li
        for li in gw.obj.spec.listeners
        if (ref.section_name is None or li.name == ref.section_name)
        and (ref.port is None or li.port == ref.port)
    ]
    if not listeners:
        return Rejected("NoMatchingParent", "no listener matches the parentRef's sectionName/port")
    allowed = [li for li in listeners if _allows(ctx, li, route, gw_ns=ns)]
    if not allowed:
        return Rejected(
            "NotAllowedByListeners", "no listener allows this route's kind or namespace"
        )
    att = GatewayAttachment(gw)
    for li in allowed:
        hosts = effective_hostnames(list(route.obj.spec.hostnames), li.hostname)
        if hosts:
            att.listeners.append(ListenerAttachment(li, hosts))
    if not att.listeners:
        return Rejected(
            "NoMatchingListenerHostname", "no listener hostname intersects the route's hostnames"
        )
    return att


def _allows(
    ctx: Ctx, li: Listener, route: Loaded[HTTPRoute] | Loaded[GRPCRoute], *, gw_ns: str
) -> bool:
    """ "The listener protocol supports HTTPRoute (HTTP/HTTPS) and `allowedRoutes.kinds` (if
    set) contains HTTPRoute" (§5): both must hold, so a TCP listener that lists HTTPRoute in
    `kinds` still admits no HTTP route (it has no HTTP table to join)."""
    kind = route.obj.kind
    if li.protocol not in HTTP_PROTOCOLS:
        return False
    kinds = li.allowed_routes.kinds
    if kinds and not any(k.group == GW_GROUP and k.kind == kind for k in kinds):
        return False
    route_ns = route.obj.namespace
    frm = li.allowed_routes.namespaces.from_
    if frm == "Same":
        return route_ns == gw_ns
    if frm == "All":
        return True
    selector = li.allowed_routes.namespaces.selector
    return selector is not None and selector_matches(selector, ctx.index.namespace_labels(route_ns))


def selector_matches(sel: LabelSelector, labels: dict[str, str]) -> bool:
    """Kubernetes label selector semantics (matchLabels AND matchExpressions)."""
    if any(labels.get(k) != v for k, v in sel.match_labels.items()):
        return False
    for expr in sel.match_expressions:
        has = expr.key in labels
        value = labels.get(expr.key)
        if expr.operator == "In" and value not in expr.values:
            return False
        if expr.operator == "NotIn" and has and value in expr.values:
            return False
        if expr.operator == "Exists" and not has:
            return False
        if expr.operator == "DoesNotExist" and has:
            return False
        if expr.operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False  # the API server rejects other operators; never widen access
    return True


ir.store_by_slot(ServicePort, Rejected)  # built per route: the IR's faster __init__
