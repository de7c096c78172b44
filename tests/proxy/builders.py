"""Hand-built xDS resources for proxy tests, exactly as docs/xds.md describes them.

Matches are written as IR `Match` objects (`mk_match`) and converted the way docs/xds.md
says (`route_match`); `by_precedence` sorts them like the translator does, so a test states
the Gateway API routes and the builder produces the xDS order the proxy will receive.
Tap events (`mk_event`, `request_events`) are built here too, for the tap and admin tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2, struct_pb2, wrappers_pb2

from turnout.engine import ir
from turnout.proxy import RuntimeTable
from turnout.proxy.tap import TapEvent, TapKind, tap_id

LISTENER = "web.shop.svc.cluster.local:80"
SOURCE = "HTTPRoute/shop/web"
INVALID = "turnout/invalid"
MILLION = percent_pb2.FractionalPercent.MILLION


def service_domains(name: str = "web", ns: str = "shop", port: int = 80) -> tuple[str, ...]:
    names = (name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local")
    return names + tuple(f"{n}:{port}" for n in names)


# --------------------------------------------------------------------------- matches


def mk_match(
    name: str = "httproute/shop/web/rule/0/match/0",
    *,
    exact: str | None = None,
    prefix: str | None = None,
    regex: str | None = None,
    method: str | None = None,
    headers: Mapping[str, str] | Sequence[ir.HeaderMatch] = (),
    query: Mapping[str, str] | Sequence[ir.QueryMatch] = (),
) -> ir.Match:
    """An IR match; `headers`/`query` as {name: exact value} or IR condition objects."""
    path: ir.PathMatch
    if exact is not None:
        path = ir.ExactPath(value=exact)
    elif regex is not None:
        path = ir.RegexPath(pattern=regex)
    else:
        path = ir.PrefixPath(value=prefix or "/")
    hs = (
        tuple(ir.HeaderMatch(name=k.lower(), kind="Exact", value=v) for k, v in headers.items())
        if isinstance(headers, Mapping)
        else tuple(headers)
    )
    qs = (
        tuple(ir.QueryMatch(name=k, kind="Exact", value=v) for k, v in query.items())
        if isinstance(query, Mapping)
        else tuple(query)
    )
    return ir.Match(name=name, path=path, headers=hs, query=qs, method=method)


def _string_matcher(kind: str, value: str) -> string_pb2.StringMatcher:
    if kind == "Exact":
        return string_pb2.StringMatcher(exact=value)
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=value))


def route_match(m: ir.Match) -> rc.RouteMatch:
    """IR match -> RouteMatch per docs/xds.md "Matchers"."""
    out = rc.RouteMatch()
    if isinstance(m.path, ir.ExactPath):
        out.path = m.path.value
    elif isinstance(m.path, ir.RegexPath):
        out.safe_regex.regex = m.path.pattern
    elif m.path.value.rstrip("/") == "":
        out.prefix = "/"
    else:
        out.path_separated_prefix = m.path.value.rstrip("/")
    if m.method is not None:
        out.headers.add(name=":method", string_match=string_pb2.StringMatcher(exact=m.method))
    for h in m.headers:
        out.headers.add(name=h.name, string_match=_string_matcher(h.kind, h.value))
    for q in m.query:
        out.query_parameters.add(name=q.name, string_match=_string_matcher(q.kind, q.value))
    return out


def split_prefix_routes(routes: Iterable[rc.Route]) -> list[rc.Route]:
    """What `turnout.engine.xds` emits for proxyless gRPC (differs from docs/xds.md): each
    ``path_separated_prefix: P`` route becomes ``path: P`` followed by ``prefix: "P/"``."""
    out = []
    for r in routes:
        if r.match.WhichOneof("path_specifier") != "path_separated_prefix":
            out.append(r)
            continue
        p = r.match.path_separated_prefix
        exact, below = rc.Route(), rc.Route()
        exact.CopyFrom(r)
        below.CopyFrom(r)
        exact.match.path = p
        below.match.prefix = p + "/"
        out += [exact, below]
    return out


def by_precedence(matches: Iterable[ir.Match]) -> list[ir.Match]:
    """docs/xds.md: sort by `ir.match_precedence` descending, ties keep the given order."""
    return sorted(matches, key=ir.match_precedence, reverse=True)


# --------------------------------------------------------------------------- routes


def _pack(msg: Any) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def ms(value: int) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMilliseconds(value)
    return d


def header_options(
    set_: Mapping[str, str] = {}, add: Mapping[str, str] = {}
) -> list[base_pb2.HeaderValueOption]:
    opts = [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=k, value=v),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
        )
        for k, v in set_.items()
    ]
    opts += [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=k, value=v),
            append_action=base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD,
        )
        for k, v in add.items()
    ]
    return opts


def mk_backend(
    cluster: str = "shop/web:80",
    weight: int = 1,
    *,
    name: str | None = None,
    invalid: tuple[int, str, str] | None = None,
    request_set: Mapping[str, str] = {},
    response_set: Mapping[str, str] = {},
    host_rewrite: str | None = None,
) -> tuple[rc.WeightedCluster.ClusterWeight, str, dict[str, Any] | None]:
    """(ClusterWeight, IR backend name, invalid metadata entry or None)."""
    cw = rc.WeightedCluster.ClusterWeight(name=INVALID if invalid else cluster)
    cw.weight.value = weight
    cw.request_headers_to_add.extend(header_options(request_set))
    cw.response_headers_to_add.extend(header_options(response_set))
    if host_rewrite:
        cw.host_rewrite_literal = host_rewrite
    entry = None
    if invalid:
        status, reason, message = invalid
        abort = fault_pb2.HTTPFault()
        abort.abort.http_status = status
        abort.abort.percentage.numerator = 1_000_000
        abort.abort.percentage.denominator = MILLION
        cw.typed_per_filter_config["envoy.filters.http.fault"].CopyFrom(_pack(abort))
        entry = {"status": status, "reason": reason, "message": message}
    return cw, name or f"backend/{cluster}", entry


def mk_fault(
    *,
    delay_ms: int = 0,
    delay_pm: int = 0,
    abort_status: int | None = None,
    grpc: int | None = None,
    abort_pm: int = 0,
) -> fault_pb2.HTTPFault:
    f = fault_pb2.HTTPFault()
    if delay_ms:
        f.delay.fixed_delay.CopyFrom(ms(delay_ms))
        f.delay.percentage.numerator = delay_pm
        f.delay.percentage.denominator = MILLION
    if abort_status is not None or grpc is not None:
        if abort_status is not None:
            f.abort.http_status = abort_status
        else:
            f.abort.grpc_status = grpc or 0
        f.abort.percentage.numerator = abort_pm
        f.abort.percentage.denominator = MILLION
    return f


def mk_route(
    match: ir.Match | str = "/",
    *,
    name: str | None = None,
    rule: str | None = None,
    source: str = SOURCE,
    backends: Sequence[tuple[rc.WeightedCluster.ClusterWeight, str, dict[str, Any] | None]]
    | None = None,
    redirect: rc.RedirectAction | None = None,
    direct_status: int | None = None,
    direct_body: str = "",
    timeout_ms: int = 0,
    retry: rc.RetryPolicy | None = None,
    fault: fault_pb2.HTTPFault | None = None,
    cors: cors_pb2.CorsPolicy | None = None,
    mirrors: Sequence[tuple[str, int]] = (),
    prefix_rewrite: str | None = None,
    full_path_rewrite: str | None = None,
    host_rewrite: str | None = None,
    request_set: Mapping[str, str] = {},
    request_add: Mapping[str, str] = {},
    request_remove: Sequence[str] = (),
    response_set: Mapping[str, str] = {},
) -> rc.Route:
    """A Route per docs/xds.md; `match` may be a path prefix string for brevity."""
    m = match if isinstance(match, ir.Match) else mk_match(prefix=match)
    name = name or m.name
    route = rc.Route(name=name, match=route_match(m))
    meta: dict[str, Any] = {"rule": rule or name.rsplit("/match/", 1)[0], "source": source}
    if redirect is not None:
        route.redirect.CopyFrom(redirect)
    elif direct_status is not None:
        route.direct_response.status = direct_status
        if direct_body:
            route.direct_response.body.inline_string = direct_body
    else:
        bs = backends if backends is not None else [mk_backend()]
        route.route.weighted_clusters.clusters.extend(cw for cw, _, _ in bs)
        meta["backends"] = [n for _, n, _ in bs]
        invalid = {n: e for _, n, e in bs if e}
        if invalid:
            meta["invalid"] = invalid
        ra = route.route
        ra.timeout.CopyFrom(ms(timeout_ms))
        if retry is not None:
            ra.retry_policy.CopyFrom(retry)
        for cluster, pm in mirrors:
            mp = ra.request_mirror_policies.add(cluster=cluster)
            mp.runtime_fraction.default_value.numerator = pm
            mp.runtime_fraction.default_value.denominator = MILLION
        if prefix_rewrite is not None:
            if prefix_rewrite.rstrip("/") == "":
                # docs/xds.md: a "/" or empty replacement is a regex, so /foo/bar -> /bar.
                p = m.path.value.rstrip("/") if isinstance(m.path, ir.PrefixPath) else ""
                ra.regex_rewrite.pattern.regex = f"^{p}/?"
                ra.regex_rewrite.substitution = "/"
            else:
                ra.prefix_rewrite = prefix_rewrite
        if full_path_rewrite is not None:
            ra.regex_rewrite.pattern.regex = "^.*$"
            ra.regex_rewrite.substitution = full_path_rewrite
        if host_rewrite:
            ra.host_rewrite_literal = host_rewrite
    route.request_headers_to_add.extend(header_options(request_set, request_add))
    route.request_headers_to_remove.extend(request_remove)
    route.response_headers_to_add.extend(header_options(response_set))
    if fault is not None:
        route.typed_per_filter_config["envoy.filters.http.fault"].CopyFrom(_pack(fault))
    if cors is not None:
        route.typed_per_filter_config["envoy.filters.http.cors"].CopyFrom(_pack(cors))
    s = struct_pb2.Struct()
    s.update(meta)
    route.metadata.filter_metadata["turnout"].CopyFrom(s)
    return route


def mk_redirect(
    *,
    scheme: str = "",
    host: str = "",
    port: int = 0,
    path: str | None = None,
    prefix: str | None = None,
    matched: str = "",
    code: int = 302,
) -> rc.RedirectAction:
    """A RedirectAction; `prefix` replaces the `matched` PathPrefix (docs/xds.md)."""
    codes = {301: 0, 302: 1, 303: 2, 307: 3, 308: 4}
    r = rc.RedirectAction(
        scheme_redirect=scheme, host_redirect=host, port_redirect=port, response_code=codes[code]
    )
    if path is not None:
        r.path_redirect = path
    if prefix is not None:
        if prefix.rstrip("/") == "":
            r.regex_rewrite.pattern.regex = f"^{matched.rstrip('/')}/?"
            r.regex_rewrite.substitution = "/"
        else:
            r.prefix_rewrite = prefix
    return r


def mk_retry(
    *, attempts: int = 2, codes: Sequence[int] = (503,), backoff_ms: int = 25, per_try_ms: int = 0
) -> rc.RetryPolicy:
    rp = rc.RetryPolicy(
        retry_on="connect-failure,reset,retriable-status-codes", retriable_status_codes=list(codes)
    )
    rp.num_retries.value = attempts
    rp.retry_back_off.base_interval.CopyFrom(ms(backoff_ms))
    if per_try_ms:
        rp.per_try_timeout.CopyFrom(ms(per_try_ms))
    return rp


# --------------------------------------------------------------------------- resources


def mk_vhost(
    routes: Iterable[rc.Route], *, name: str = "web", domains: Sequence[str] = ("*",)
) -> rc.VirtualHost:
    return rc.VirtualHost(name=name, domains=list(domains), routes=list(routes))


def mk_route_config(name: str, vhosts: Iterable[rc.VirtualHost]) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=list(vhosts))


def _hcm(route_config: str, filters: Sequence[str]) -> hcm_pb2.HttpConnectionManager:
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix="turnout")
    hcm.rds.route_config_name = route_config
    hcm.rds.config_source.ads.CopyFrom(config_source_pb2.AggregatedConfigSource())
    hcm.rds.config_source.resource_api_version = config_source_pb2.V3
    for f in filters:
        hf = hcm.http_filters.add(name=f)
        if f == "envoy.filters.http.fault":
            hf.typed_config.Pack(fault_pb2.HTTPFault())
        elif f == "envoy.filters.http.router":
            hf.typed_config.Pack(router_pb2.Router())
    return hcm


DEFAULT_FILTERS = ("envoy.filters.http.fault", "envoy.filters.http.router")


def mk_listener(
    name: str = LISTENER,
    route_config: str | None = None,
    *,
    filters: Sequence[str] = DEFAULT_FILTERS,
) -> listener_pb2.Listener:
    """A Service-parent listener: `api_listener` holding the HCM."""
    lst = listener_pb2.Listener(name=name)
    lst.api_listener.CopyFrom(api_listener_pb2.ApiListener())
    lst.api_listener.api_listener.Pack(_hcm(route_config or name, filters))
    return lst


def mk_gateway_listener(
    name: str, port: int, route_config: str | None = None
) -> listener_pb2.Listener:
    """A Gateway-parent listener: the HCM in a filter chain bound to 0.0.0.0:PORT."""
    lst = listener_pb2.Listener(name=name)
    lst.address.socket_address.address = "0.0.0.0"
    lst.address.socket_address.port_value = port
    chain = listener_components_pb2.FilterChain()
    f = chain.filters.add(name="envoy.filters.network.http_connection_manager")
    f.typed_config.Pack(_hcm(route_config or name, DEFAULT_FILTERS))
    lst.filter_chains.append(chain)
    return lst


def mk_cluster(name: str) -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(
        name=name, type=cluster_pb2.Cluster.EDS, lb_policy=cluster_pb2.Cluster.ROUND_ROBIN
    )
    c.eds_cluster_config.eds_config.ads.CopyFrom(config_source_pb2.AggregatedConfigSource())
    c.eds_cluster_config.eds_config.resource_api_version = config_source_pb2.V3
    return c


def mk_cla(
    name: str, endpoints: Sequence[tuple[str, int, bool]], *, zone: str = ""
) -> endpoint_pb2.ClusterLoadAssignment:
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    loc = endpoint_components_pb2.LocalityLbEndpoints()
    loc.locality.zone = zone
    loc.load_balancing_weight.value = 1
    for address, port, healthy in endpoints:
        lb = loc.lb_endpoints.add()
        lb.endpoint.address.CopyFrom(
            address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=address, port_value=port)
            )
        )
        lb.health_status = health_check_pb2.HEALTHY if healthy else health_check_pb2.UNHEALTHY
    cla.endpoints.append(loc)
    return cla


def referenced_clusters(route_configs: Iterable[route_pb2.RouteConfiguration]) -> list[str]:
    names: dict[str, None] = {INVALID: None}
    for rcfg in route_configs:
        for vh in rcfg.virtual_hosts:
            for r in vh.routes:
                if r.HasField("route"):
                    names.update((cw.name, None) for cw in r.route.weighted_clusters.clusters)
                    names.update((m.cluster, None) for m in r.route.request_mirror_policies)
    return list(names)


def mk_table(
    *routes: rc.Route,
    domains: Sequence[str] = ("*",),
    listener: str = LISTENER,
    vhosts: Sequence[rc.VirtualHost] | None = None,
) -> RuntimeTable:
    """One listener, one route configuration, clusters for everything referenced."""
    rcfg = mk_route_config(
        listener, vhosts if vhosts is not None else [mk_vhost(routes, domains=domains)]
    )
    clusters = [mk_cluster(n) for n in referenced_clusters([rcfg])]
    return RuntimeTable.from_xds([mk_listener(listener)], [rcfg], clusters=clusters)


def wrap_bool(value: bool) -> wrappers_pb2.BoolValue:
    return wrappers_pb2.BoolValue(value=value)


# -- tap events ------------------------------------------------------------------------


def mk_event(
    kind: TapKind = "req",
    *,
    stream: int = 1,
    direction: str = "inbound",
    method: str = "GET",
    path: str = "/api",
    authority: str = "web:80",
    **extra: object,
) -> TapEvent:
    return TapEvent(
        kind=kind,
        id=tap_id(7, stream),
        direction=direction,  # type: ignore[arg-type]
        src="10.1.0.3:51234",
        dst="10.1.0.5:8080",
        tls="true",
        method=method,
        authority=authority,
        path=path,
        **extra,  # type: ignore[arg-type]
    )


def request_events(stream: int, **kw: object) -> list[TapEvent]:
    return [
        mk_event("req", stream=stream, **kw),  # type: ignore[arg-type]
        mk_event("rsp", stream=stream, status=200, latency_us=1520, **kw),  # type: ignore[arg-type]
        mk_event("end", stream=stream, status=200, duration_us=40, response_bytes=12, **kw),  # type: ignore[arg-type]
    ]
