"""Small builders of IR values for the xDS tests (STYLE.md §11: builders, not big literals)."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc

from turnout.engine import config, ir
from turnout.engine.compile.table import service_domains
from turnout.engine.xds import XdsResources, translate

NS = "shop"
NO_TIMEOUTS = ir.Timeouts()


def mk_source(name: str = "web", *, kind: str = "HTTPRoute", ns: str = NS) -> ir.SourceRef:
    return ir.SourceRef(kind=kind, namespace=ns, name=name)


def mk_target(service: str = "web", *, port: int = 80, ns: str = NS) -> ir.ServiceTarget:
    return ir.ServiceTarget(
        cluster=f"{ns}/{service}:{port}", namespace=ns, service=service, port=port
    )


def mk_invalid(*, status: int = 500, reason: str = "BackendNotFound") -> ir.InvalidBackend:
    return ir.InvalidBackend(
        status=status, reason=reason, message="service shop/gone not found", ref="shop/gone"
    )


def mk_backend(
    target: ir.ServiceTarget | ir.InvalidBackend | str = "web",
    *,
    weight: int = 1,
    index: int = 0,
    rule: str = "httproute/shop/web/rule/0",
    filters: tuple[ir.Filter, ...] = (),
    port: int = 80,
) -> ir.WeightedBackend:
    resolved = mk_target(target, port=port) if isinstance(target, str) else target
    return ir.WeightedBackend(
        name=f"{rule}/backend/{index}",
        source=mk_source(),
        weight=weight,
        target=resolved,
        filters=filters,
    )


def mk_match(
    path: ir.PathMatch | None = None,
    *,
    name: str = "httproute/shop/web/rule/0/match/0",
    headers: tuple[ir.HeaderMatch, ...] = (),
    query: tuple[ir.QueryMatch, ...] = (),
    method: str | None = None,
) -> ir.Match:
    return ir.Match(
        name=name,
        path=path if path is not None else ir.PrefixPath(value="/"),
        headers=headers,
        query=query,
        method=method,
    )


def mk_rule(
    *paths: ir.PathMatch,
    route: str = "web",
    index: int = 0,
    backends: tuple[ir.WeightedBackend, ...] | None = None,
    filters: tuple[ir.Filter, ...] = (),
    timeouts: ir.Timeouts = NO_TIMEOUTS,
    retry: ir.RetryPolicy | None = None,
    fault: ir.FaultInjection | None = None,
    matches: tuple[ir.Match, ...] | None = None,
) -> ir.Rule:
    """A rule of HTTPRoute shop/<route>; one match per path (default: PathPrefix "/")."""
    name = f"httproute/{NS}/{route}/rule/{index}"
    if matches is None:
        matches = tuple(
            mk_match(p, name=f"{name}/match/{i}") for i, p in enumerate(paths or (None,))
        )
    if backends is None:
        backends = (mk_backend(rule=name),)
    return ir.Rule(
        name=name,
        source=ir.SourceRef(kind="HTTPRoute", namespace=NS, name=route, section=f"rule/{index}"),
        matches=matches,
        filters=filters,
        backends=backends,
        timeouts=timeouts,
        retry=retry,
        fault=fault,
    )


def mk_vhost(
    *rules: ir.Rule, name: str = "shop/web:80", domains: tuple[str, ...] = ("*",)
) -> ir.VirtualHost:
    return ir.VirtualHost(name=name, domains=domains, rules=rules)


def mk_service_parent(
    *rules: ir.Rule,
    service: str = "web",
    port: int = 80,
    ns: str = NS,
    consumers: tuple[ir.ConsumerView, ...] = (),
) -> ir.ServiceParent:
    authority = f"{service}.{ns}.svc.{config.CLUSTER_DOMAIN}:{port}"
    return ir.ServiceParent(
        name=f"service/{ns}/{service}:{port}",
        namespace=ns,
        service=service,
        port=port,
        port_name="http",
        authority=authority,
        producer=mk_vhost(
            *(rules or (mk_rule(),)),
            name=f"{ns}/{service}:{port}",
            domains=service_domains(ns, service, port),
        ),
        consumers=consumers,
    )


def mk_gateway_parent(*vhosts: ir.VirtualHost, port: int = 8080) -> ir.GatewayParent:
    return ir.GatewayParent(
        name=f"gateway/{NS}/edge:{port}",
        namespace=NS,
        gateway="edge",
        port=port,
        listeners=(ir.Listener(name="http", hostname=None, protocol="HTTP"),),
        vhosts=vhosts or (mk_vhost(mk_rule()),),
    )


def mk_budget() -> ir.RetryBudget:
    return ir.RetryBudget(
        percent=config.DEFAULT_BUDGET_PERCENT,
        interval_ms=config.DEFAULT_BUDGET_INTERVAL_MS,
        min_retry_count=config.DEFAULT_MIN_RETRY_COUNT,
        min_retry_interval_ms=config.DEFAULT_MIN_RETRY_INTERVAL_MS,
    )


def mk_cluster(
    service: str = "web",
    *,
    port: int = 80,
    ns: str = NS,
    protocol: str = "http1",
    endpoints: tuple[ir.Endpoint, ...] = (ir.Endpoint(address="10.0.0.1", port=8080),),
) -> ir.Cluster:
    assert protocol in ("http1", "h2c", "grpc")
    return ir.Cluster(
        name=f"{ns}/{service}:{port}",
        namespace=ns,
        service=service,
        port=port,
        protocol=protocol,  # type: ignore[arg-type]
        endpoints=endpoints,
        endpoints_known=True,
        retry_budget=mk_budget(),
    )


def mk_table(*parents: ir.Parent, clusters: tuple[ir.Cluster, ...] | None = None) -> ir.RouteTable:
    """A table; clusters default to one per ServiceTarget the parents' backends name."""
    parents = parents or (mk_service_parent(),)
    if clusters is None:
        names: dict[str, ir.ServiceTarget] = {}
        for p in parents:
            vhosts = (
                (p.producer, *(c.vhost for c in p.consumers))
                if isinstance(p, ir.ServiceParent)
                else p.vhosts
            )
            for v in vhosts:
                for r in v.rules:
                    for b in r.backends:
                        if isinstance(b.target, ir.ServiceTarget):
                            names[b.target.cluster] = b.target
                    for f in r.filters:
                        if isinstance(f, ir.MirrorFilter) and isinstance(
                            f.backend, ir.ServiceTarget
                        ):
                            names[f.backend.cluster] = f.backend
        clusters = tuple(
            mk_cluster(t.service, port=t.port, ns=t.namespace) for _, t in sorted(names.items())
        )
    return ir.RouteTable(
        parents=tuple(sorted(parents, key=lambda p: p.name)),
        clusters=tuple(sorted(clusters, key=lambda c: c.name)),
    )


def translate_one(*rules: ir.Rule, client_namespace: str | None = None) -> XdsResources:
    """Translate a table with one Service parent holding `rules`."""
    return translate(mk_table(mk_service_parent(*rules)), client_namespace=client_namespace)


def routes_of(resources: XdsResources) -> list[rc.Route]:
    return [r for c in resources.route_configs for v in c.virtual_hosts for r in v.routes]


def route_of(rule: ir.Rule) -> rc.Route:
    """The first xDS route of a table holding just `rule`."""
    return routes_of(translate_one(rule))[0]


def route_for(rule: ir.Rule, path: str) -> rc.Route:
    """The xDS route Envoy would pick for `path` in a table holding just `rule`: the first
    whose path specifier matches (a PathPrefix is two routes, `path: P` and `prefix: P/`)."""
    from tests.engine.xds.envoy_semantics import path_matches

    for route in routes_of(translate_one(rule)):
        if path_matches(route.match, path):
            return route
    raise AssertionError(f"no route of {rule.name} matches {path}")


def mk_full_table() -> ir.RouteTable:
    """One table using every IR feature the translator maps (for the whole-output tests)."""
    fault = ir.FaultInjection(
        name="chaos",
        source=mk_source("chaos", kind="FaultInjection"),
        delay=ir.FaultDelay(duration_ms=100, per_million=10_000),
        abort=ir.FaultAbort(per_million=5_000, http_status=503),
    )
    header = ir.RequestHeaderFilter(
        modifier=ir.HeaderModifier(set=(ir.Header(name="x", value="1"),))
    )
    rules = (
        mk_rule(
            ir.PrefixPath(value="/api"),
            index=0,
            backends=(
                mk_backend("web", weight=90, index=0, filters=(header,)),
                mk_backend(mk_invalid(), weight=10, index=1),
            ),
            filters=(
                header,
                ir.URLRewriteFilter(path=ir.ReplacePrefix(prefix="/api", replacement="/")),
                ir.MirrorFilter(name="m", backend=mk_target("shadow"), per_million=500_000),
                ir.CorsFilter(allow_origins=("*",)),
            ),
            timeouts=ir.Timeouts(request_ms=3000, backend_request_ms=1000),
            retry=ir.RetryPolicy(attempts=2, codes=(503,), backoff_ms=0),
            fault=fault,
        ),
        mk_rule(ir.ExactPath(value="/old"), index=1, filters=(ir.RedirectFilter(status_code=301),)),
        mk_rule(
            ir.RegexPath(pattern="/e/.*"),
            index=2,
            filters=(ir.ErrorResponse(status=500, message="x"),),
        ),
        mk_rule(ir.PrefixPath(value="/zero"), index=3, backends=(mk_backend(weight=0),)),
        mk_rule(index=4, backends=(mk_backend("grpc-api", port=9090, weight=1),)),
    )
    consumer = ir.ConsumerView(namespace="checkout", vhost=mk_vhost(mk_rule(route="c"), name="c"))
    gateway = mk_gateway_parent(mk_vhost(*rules[:2], name="gw", domains=("a.example",)))
    table = mk_table(mk_service_parent(*rules, consumers=(consumer,)), gateway)
    zones = (
        ir.Endpoint(address="10.0.0.1", port=8080, zone="a"),
        ir.Endpoint(address="10.0.0.2", port=8080, zone="b", ready=False),
    )
    clusters = tuple(
        mk_cluster(
            c.service, port=c.port, protocol="grpc" if c.port == 9090 else "http1", endpoints=zones
        )
        for c in table.clusters
    )
    return ir.RouteTable(parents=table.parents, clusters=clusters)
