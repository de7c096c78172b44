"""Assembling the `RouteTable`: parents, virtual hosts, clusters, and route status.

```
routes (tie-break order) --parentRefs--> attachments --compile_rules--> rules per view
   ServiceParent: producer view + one view per consumer namespace     (GAMMA §9)
   GatewayParent: one virtual host per served hostname, most specific first (§4)
Gateways (`gateways.py`): served listeners -> GatewayParents; accepted routes per listener ->
   GatewayStatus (attachedRoutes, listener and Gateway conditions)
every Service port -> a ServiceParent (a default rule to itself when no route attaches)
every ServiceTarget -> a Cluster (endpoints from EndpointSlices, retry budget from policy)
```
Pure: no I/O, no clock, no randomness; the same snapshot always yields an equal table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from turnout.engine import ir
from turnout.engine.compile.backends import endpoints_of
from turnout.engine.compile.conflicts import report_conflicts
from turnout.engine.compile.context import Ctx
from turnout.engine.compile.durations import duration_ms
from turnout.engine.compile.filters import ParentPort
from turnout.engine.compile.gateways import (
    Attachments,
    ListenerState,
    evaluate_gateways,
    gateway_status,
)
from turnout.engine.compile.hosts import host_specificity, owning_listener
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
from turnout.engine.config import (
    CLUSTER_DOMAIN,
    CONTROLLER_NAME,
    DEFAULT_BUDGET_INTERVAL_MS,
    DEFAULT_BUDGET_PERCENT,
    DEFAULT_MIN_RETRY_COUNT,
    DEFAULT_MIN_RETRY_INTERVAL_MS,
    OPAQUE_PORTS_ANNOTATION,
)
from turnout.engine.diagnostics import warning
from turnout.engine.model import GRPCRoute, HTTPRoute, Loaded
from turnout.engine.opaque_ports import service_port_opaque


@dataclass(slots=True)
class ServiceViews:
    port: ServicePort
    producer: list[ir.Rule] = field(default_factory=list)
    consumers: dict[str, list[ir.Rule]] = field(default_factory=dict)
    has_producer_routes: bool = False


@dataclass(slots=True)
class GatewayPort:
    namespace: str
    gateway: str
    port: int
    listeners: list[ir.Listener] = field(default_factory=list)
    hosts: dict[str, list[tuple[str, ir.Rule]]] = field(default_factory=dict)
    """Served hostname -> (listener name, rule) in tie-break order."""


def service_authority(ns: str, name: str, port: int) -> str:
    return f"{name}.{ns}.svc.{CLUSTER_DOMAIN}:{port}"


def service_domains(ns: str, name: str, port: int) -> tuple[str, ...]:
    """The Service's names, with and without the port, then ``*``.

    "the route is chosen by the destination Service (ClusterIP:port), not by Host" (GAMMA,
    Conf MeshFrontendHostname): the listener already is the destination, so its one virtual
    host serves any Host. The names come first for readers and for gRPC, which looks the
    virtual host up by its target name."""
    names = (name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.{CLUSTER_DOMAIN}")
    return (*names, *(f"{n}:{port}" for n in names), "*")


def build_table(
    ctx: Ctx,
) -> tuple[ir.RouteTable, list[ir.RouteStatus], list[ir.GatewayStatus]]:
    services: dict[tuple[str, str, int], ServiceViews] = {}
    for (ns, name), svc in sorted(ctx.index.services.items()):
        for p in svc.obj.spec.ports:
            if p.protocol == "TCP":
                services[(ns, name, p.port)] = ServiceViews(ServicePort(ns, name, p.port, p.name))
    listeners = evaluate_gateways(ctx)
    gateways = _gateway_ports(listeners)
    attached = Attachments()
    statuses = [
        _attach_route(ctx, route, services, gateways, attached) for route in ctx.index.routes
    ]
    parents: list[ir.Parent] = [_service_parent(ctx, v) for v in services.values()]
    parents.extend(_gateway_parent(g) for g in gateways.values())
    parents.sort(key=lambda p: p.name)
    table = ir.RouteTable(parents=tuple(parents), clusters=_clusters(ctx))
    report_conflicts(ctx, table)
    gateway_statuses = [
        gateway_status(ctx.index.gateways[key].obj, states, attached)
        for key, states in listeners.items()
    ]
    return table, [s for s in statuses if s.parents], gateway_statuses


def _gateway_ports(
    gateways: dict[tuple[str, str], list[ListenerState]],
) -> dict[tuple[str, str, int], GatewayPort]:
    """The served listeners of each Gateway, grouped by port (`gateways.py` decides which)."""
    out: dict[tuple[str, str, int], GatewayPort] = {}
    for (ns, name), states in gateways.items():
        for st in states:
            if not st.served:
                continue
            li = st.listener
            gp = out.setdefault((ns, name, li.port), GatewayPort(ns, name, li.port))
            gp.listeners.append(
                ir.Listener(name=li.name, hostname=li.hostname, protocol=li.protocol, tls=st.tls)
            )
    return out


def _attach_route(
    ctx: Ctx,
    route: Loaded[HTTPRoute] | Loaded[GRPCRoute],
    services: dict[tuple[str, str, int], ServiceViews],
    gateways: dict[tuple[str, str, int], GatewayPort],
    attached: Attachments,
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
                views = services.setdefault((sp.namespace, sp.service, sp.port), ServiceViews(sp))
                rules, issues = compile_rules(
                    ctx, route, parent=ParentPort(port=sp.port, scheme="http"), needs_grant=False
                )
                unresolved += issues.unresolved
                dropped += issues.dropped
                compiled_any = compiled_any or bool(rules)
                if not rules:
                    # Not accepted: "a not-accepted parent gets no routing at all" (§10), so
                    # it must not hide the default rule or the producer routes either.
                    continue
                if outcome.producer:
                    views.producer.extend(rules)
                    views.has_producer_routes = True
                else:
                    views.consumers.setdefault(obj.namespace, []).extend(rules)
        elif isinstance(outcome, GatewayAttachment):
            gw = outcome.gateway.obj
            for la in outcome.listeners:
                li = la.listener
                scheme = "https" if li.protocol == "HTTPS" else "http"
                rules, issues = compile_rules(
                    ctx, route, parent=ParentPort(port=li.port, scheme=scheme), needs_grant=True
                )
                unresolved += issues.unresolved
                dropped += issues.dropped
                compiled_any = compiled_any or bool(rules)
                gp = gateways.get((gw.namespace, gw.name, li.port))
                if gp is None:
                    continue  # no listener on this port is served (conflicted, unsupported)
                for host in la.hostnames:
                    gp.hosts.setdefault(host, []).extend((li.name, r) for r in rules)
            if compiled_any:  # attachedRoutes counts accepted routes only (ListenerStatus)
                for la in outcome.listeners:
                    attached.add(gw, la.listener.name, source)
        parents.append(_attached_status(key, gen, compiled_any, unresolved, dropped))
    return ir.RouteStatus(route=source, generation=gen, parents=tuple(parents))


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


def _service_parent(ctx: Ctx, v: ServiceViews) -> ir.ServiceParent:
    sp = v.port
    name = f"service/{sp.namespace}/{sp.service}:{sp.port}"
    domains = service_domains(sp.namespace, sp.service, sp.port)
    producer_rules = tuple(v.producer) if v.has_producer_routes else (_default_rule(ctx, sp, name),)
    consumers = tuple(
        ir.ConsumerView(
            namespace=ns,
            vhost=ir.VirtualHost(name=f"{name}@{ns}", domains=domains, rules=tuple(rules)),
        )
        for ns, rules in sorted(v.consumers.items())
    )
    return ir.ServiceParent(
        name=name,
        namespace=sp.namespace,
        service=sp.service,
        port=sp.port,
        port_name=sp.port_name,
        authority=service_authority(sp.namespace, sp.service, sp.port),
        producer=ir.VirtualHost(name=name, domains=domains, rules=producer_rules),
        consumers=consumers,
        addresses=_cluster_ips(ctx, sp),
        opaque_cluster=_opaque_cluster(ctx, sp),
    )


def _opaque_cluster(ctx: Ctx, sp: ServicePort) -> str | None:
    """An opaque port's cluster: the Service's own, so its endpoints are discovered."""
    svc = ctx.index.services.get((sp.namespace, sp.service))
    if svc is None:
        return None
    ns = ctx.index.namespaces.get(sp.namespace)
    ns_text = None if ns is None else ns.obj.metadata.annotations.get(OPAQUE_PORTS_ANNOTATION)
    if not service_port_opaque(svc.obj, sp.port, ns_text):
        return None
    return ctx.use_cluster(namespace=sp.namespace, service=sp.service, port=sp.port, grpc=False)


def _cluster_ips(ctx: Ctx, sp: ServicePort) -> tuple[str, ...]:
    """The Service's cluster IPs, `clusterIP` first; none for a headless Service."""
    svc = ctx.index.services.get((sp.namespace, sp.service))
    if svc is None:
        return ()
    spec = svc.obj.spec
    ips = [ip for ip in (spec.cluster_ip, *spec.cluster_ips) if ip and ip != "None"]
    return tuple(dict.fromkeys(ips))


def _default_rule(ctx: Ctx, sp: ServicePort, parent_name: str) -> ir.Rule:
    """ "No route for the Service -> plain Service load-balancing" (GAMMA, Conf MeshBasic)."""
    name = f"{parent_name}/default"
    cluster = ctx.use_cluster(namespace=sp.namespace, service=sp.service, port=sp.port, grpc=False)
    source = ir.SourceRef(kind="Service", namespace=sp.namespace, name=sp.service)
    return ir.Rule(
        name=name,
        source=source,
        matches=(ir.Match(name=f"{name}/match/0", path=ir.PrefixPath(value="/")),),
        backends=(
            ir.WeightedBackend(
                name=f"{name}/backend/0",
                source=source,
                weight=1,
                target=ir.ServiceTarget(
                    cluster=cluster, namespace=sp.namespace, service=sp.service, port=sp.port
                ),
            ),
        ),
    )


def _gateway_parent(g: GatewayPort) -> ir.GatewayParent:
    name = f"gateway/{g.namespace}/{g.gateway}:{g.port}"
    listeners = [(li.name, li.hostname) for li in g.listeners]
    vhosts: list[ir.VirtualHost] = []
    for host in sorted(g.hosts, key=host_specificity):
        rules = _owned_rules(g.hosts[host], owning_listener(host, listeners))
        if rules:
            vhosts.append(ir.VirtualHost(name=f"{name}/{host}", domains=(host,), rules=rules))
    return ir.GatewayParent(
        name=name,
        namespace=g.namespace,
        gateway=g.gateway,
        port=g.port,
        listeners=tuple(g.listeners),
        vhosts=tuple(vhosts),
    )


def _owned_rules(entries: list[tuple[str, ir.Rule]], owner: str | None) -> tuple[ir.Rule, ...]:
    """The rules a virtual host serves: only those that came through the listener owning its
    hostname ("routes of a less specific listener must not see requests that a more specific
    listener owns", §4), each once even when a route reached it through several listeners."""
    seen: set[str] = set()
    out: list[ir.Rule] = []
    for listener, rule in entries:
        if listener == owner and rule.name not in seen:
            seen.add(rule.name)
            out.append(rule)
    return tuple(out)


def _clusters(ctx: Ctx) -> tuple[ir.Cluster, ...]:
    out: list[ir.Cluster] = []
    for name, use in sorted(ctx.clusters.items()):
        svc = ctx.index.services.get((use.namespace, use.service))
        port_name: str | None = None
        app_protocol: str | None = None
        if svc is not None:
            for p in svc.obj.spec.ports:
                if p.port == use.port:
                    port_name, app_protocol = p.name, p.app_protocol
        protocol: str = "grpc" if use.grpc else "http1"
        if app_protocol in ("kubernetes.io/h2c", "h2c"):
            protocol = "h2c"
        elif app_protocol in ("grpc", "kubernetes.io/grpc"):
            protocol = "grpc"
        endpoints, known = endpoints_of(ctx, use.namespace, use.service, port_name, use.port)
        out.append(
            ir.Cluster(
                name=name,
                namespace=use.namespace,
                service=use.service,
                port=use.port,
                protocol=protocol,  # type: ignore[arg-type]
                endpoints=endpoints,
                endpoints_known=known,
                retry_budget=_budget(ctx, use.namespace, use.service),
            )
        )
    return tuple(out)


def _budget(ctx: Ctx, ns: str, service: str) -> ir.RetryBudget:
    """GEP-3388 XBackendTrafficPolicy.retryConstraint, else Linkerd's default budget."""
    loaded = ctx.index.policies.get((ns, service))
    rc = loaded.obj.spec.retry_constraint if loaded is not None else None
    if rc is None:
        return ir.RetryBudget(
            percent=DEFAULT_BUDGET_PERCENT,
            interval_ms=DEFAULT_BUDGET_INTERVAL_MS,
            min_retry_count=DEFAULT_MIN_RETRY_COUNT,
            min_retry_interval_ms=DEFAULT_MIN_RETRY_INTERVAL_MS,
        )
    rate = rc.min_retry_rate
    return ir.RetryBudget(
        percent=rc.budget.percent,
        interval_ms=duration_ms(rc.budget.interval),
        min_retry_count=rate.count if rate.count is not None else DEFAULT_MIN_RETRY_COUNT,
        min_retry_interval_ms=(
            duration_ms(rate.interval) if rate.interval else DEFAULT_MIN_RETRY_INTERVAL_MS
        ),
    )
