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
from turnout.engine.compile.backends import endpoints_of, report_not_ready
from turnout.engine.compile.conflicts import report_conflicts
from turnout.engine.compile.context import ClusterUse, Ctx
from turnout.engine.compile.durations import duration_ms
from turnout.engine.compile.gateways import (
    Attachments,
    ListenerState,
    evaluate_gateways,
    gateway_status,
)
from turnout.engine.compile.hosts import host_specificity, owning_listener
from turnout.engine.compile.index import Index
from turnout.engine.compile.parents import (
    ServicePort,
)
from turnout.engine.compile.units import RouteUnit, add_attached, compile_unit
from turnout.engine.config import (
    CLUSTER_DOMAIN,
    DEFAULT_BUDGET_INTERVAL_MS,
    DEFAULT_BUDGET_PERCENT,
    DEFAULT_MIN_RETRY_COUNT,
    DEFAULT_MIN_RETRY_INTERVAL_MS,
    OPAQUE_PORTS_ANNOTATION,
)
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
    services = {key: ServiceViews(sp) for key, sp in service_ports(ctx.index).items()}
    listeners = evaluate_gateways(ctx)
    gateways = gateway_ports(listeners)
    attached = Attachments()
    statuses: list[ir.RouteStatus] = []
    for route, order in zip(ctx.index.routes, ctx.index.orders, strict=True):
        unit = compile_unit(ctx.index, ctx.options, route, gateways, order, into=ctx)
        apply_unit(ctx, unit, services, gateways)
        add_attached(attached, unit)
        statuses.append(unit.status)
    parents: list[ir.Parent] = [service_parent(ctx, v) for v in services.values()]
    parents.extend(gateway_parent(g) for g in gateways.values())
    parents.sort(key=lambda p: p.name)
    table = ir.RouteTable(parents=tuple(parents), clusters=_clusters(ctx))
    report_conflicts(ctx, table)
    report_not_ready(ctx, ctx.ready)
    gateway_statuses = [
        gateway_status(ctx.index.gateways[key].obj, states, attached)
        for key, states in listeners.items()
    ]
    return table, [s for s in statuses if s.parents], gateway_statuses


def apply_unit(
    ctx: Ctx,
    unit: RouteUnit,
    services: dict[tuple[str, str, int], ServiceViews],
    gateways: dict[tuple[str, str, int], GatewayPort],
) -> None:
    """What `unit` adds to the views (compiled `into=ctx`: its findings are there already)."""
    for sr in unit.services:
        views = services.setdefault(sr.key, ServiceViews(sr.port))
        if not sr.rules:
            continue
        if sr.consumer is None:
            views.producer.extend(sr.rules)
            views.has_producer_routes = True
        else:
            views.consumers.setdefault(sr.consumer, []).extend(sr.rules)
    for gr in unit.gateways:
        gateways[gr.key].hosts.setdefault(gr.host, []).extend((gr.listener, r) for r in gr.rules)


def service_ports(index: Index) -> dict[tuple[str, str, int], ServicePort]:
    """Every TCP port of every Service: each is a parent, with or without routes."""
    out: dict[tuple[str, str, int], ServicePort] = {}
    for (ns, name), svc in sorted(index.services.items()):
        for p in svc.obj.spec.ports:
            if p.protocol == "TCP":
                out[(ns, name, p.port)] = ServicePort(ns, name, p.port, p.name)
    return out


def gateway_ports(
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


def service_parent(ctx: Ctx, v: ServiceViews) -> ir.ServiceParent:
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
    svc = ctx.index.service(sp.namespace, sp.service)
    if svc is None:
        return None
    ns = ctx.index.namespace(sp.namespace)
    ns_text = None if ns is None else ns.obj.metadata.annotations.get(OPAQUE_PORTS_ANNOTATION)
    if not service_port_opaque(svc.obj, sp.port, ns_text):
        return None
    return ctx.use_cluster(namespace=sp.namespace, service=sp.service, port=sp.port, grpc=False)


def _cluster_ips(ctx: Ctx, sp: ServicePort) -> tuple[str, ...]:
    """The Service's cluster IPs, `clusterIP` first; none for a headless Service."""
    svc = ctx.index.service(sp.namespace, sp.service)
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


def gateway_parent(g: GatewayPort) -> ir.GatewayParent:
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
    return tuple(cluster_of(ctx, name, use) for name, use in sorted(ctx.clusters.items()))


def cluster_of(ctx: Ctx, name: str, use: ClusterUse) -> ir.Cluster:
    svc = ctx.index.service(use.namespace, use.service)
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
    return ir.Cluster(
        name=name,
        namespace=use.namespace,
        service=use.service,
        port=use.port,
        protocol=protocol,  # type: ignore[arg-type]
        endpoints=endpoints,
        endpoints_known=known,
        retry_budget=_budget(ctx, use.namespace, use.service),
    )


def _budget(ctx: Ctx, ns: str, service: str) -> ir.RetryBudget:
    """GEP-3388 XBackendTrafficPolicy.retryConstraint, else Linkerd's default budget."""
    loaded = ctx.index.policy_for(ns, service)
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
