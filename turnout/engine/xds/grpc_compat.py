"""What proxyless grpcio accepts, as code: `check_grpc_compat(resources) -> [problem, ...]`.

These are the rules that were checked by hand against gRPC's xDS client (ARCHITECTURE.md,
contract 3), one function each so each has its own test. A problem reads
`"<rule>: <resource>: <what is wrong>"`; an empty list means the resources are fine.

```
Listener ─ HCM: router_filter_last, unknown_filters_optional
   └─ rds -> RouteConfiguration: virtual_host_domains_match_target
                └─ Route: path_specifier_supported, retry_num_retries_positive, retry_base_interval_positive,
                          weights_not_all_zero, referenced_clusters_exist
Cluster: clusters_eds_over_ads, lb_policy_round_robin
ClusterLoadAssignment: localities_have_weight
```

`translate` output always passes (tests prove it). This module deliberately does not model
all of gRPC's parser (it checks what we emit, not what others might) and never talks to a
client: a live grpcio xDS test comes with the control plane.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from turnout.engine.xds.resources import XdsResources
from turnout.engine.xds.translator import referenced_clusters
from turnout.engine.xds.wire import FAULT_FILTER, ROUTER_FILTER, TYPE_PREFIX

ROUTER_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.router.v3.Router"
GRPC_FILTERS = frozenset({FAULT_FILTER, ROUTER_FILTER})
"""HTTP filters proxyless gRPC implements among those we emit; others must be optional."""

Rule = Callable[[XdsResources], Iterator[str]]


def _hcms(resources: XdsResources) -> Iterator[tuple[str, bool, hcm_pb2.HttpConnectionManager]]:
    """(listener name, is api_listener, HCM) for every HCM of every listener."""
    for listener in resources.listeners:
        if listener.HasField("api_listener"):
            hcm = hcm_pb2.HttpConnectionManager()
            listener.api_listener.api_listener.Unpack(hcm)
            yield listener.name, True, hcm
        for chain in listener.filter_chains:
            for f in chain.filters:
                if f.typed_config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
                    hcm = hcm_pb2.HttpConnectionManager()
                    f.typed_config.Unpack(hcm)
                    yield listener.name, False, hcm


def _routes(resources: XdsResources) -> Iterator[tuple[str, rc.Route]]:
    for config in resources.route_configs:
        for vhost in config.virtual_hosts:
            for route in vhost.routes:
                yield f"{config.name} route {route.name}", route


def router_filter_last(resources: XdsResources) -> Iterator[str]:
    for name, _, hcm in _hcms(resources):
        filters = hcm.http_filters
        if not filters or filters[-1].typed_config.type_url != ROUTER_TYPE:
            yield f"router_filter_last: {name}: the last http filter is not the router"
        for f in filters[:-1]:
            if f.typed_config.type_url == ROUTER_TYPE:
                yield f"router_filter_last: {name}: router filter {f.name!r} is not last"


def unknown_filters_optional(resources: XdsResources) -> Iterator[str]:
    for name, is_api, hcm in _hcms(resources):
        for f in hcm.http_filters:
            if is_api and f.name not in GRPC_FILTERS and not f.is_optional:
                yield f"unknown_filters_optional: {name}: {f.name} is not optional"


def clusters_eds_over_ads(resources: XdsResources) -> Iterator[str]:
    for c in resources.clusters:
        if c.type != cluster_pb2.Cluster.DiscoveryType.EDS:
            yield f"clusters_eds_over_ads: {c.name}: type is not EDS"
        elif not c.eds_cluster_config.eds_config.HasField("ads"):
            yield f"clusters_eds_over_ads: {c.name}: eds_config is not an ADS config source"


def lb_policy_round_robin(resources: XdsResources) -> Iterator[str]:
    for c in resources.clusters:
        if c.lb_policy != cluster_pb2.Cluster.LbPolicy.ROUND_ROBIN:
            yield f"lb_policy_round_robin: {c.name}: lb_policy is not ROUND_ROBIN"


def localities_have_weight(resources: XdsResources) -> Iterator[str]:
    for cla in resources.load_assignments:
        for i, locality in enumerate(cla.endpoints):
            if not locality.HasField("load_balancing_weight") or (
                locality.load_balancing_weight.value == 0
            ):
                yield f"localities_have_weight: {cla.cluster_name}: locality {i} has no weight"


def domain_matches(pattern: str, host: str) -> bool:
    """gRPC's (and Envoy's) virtual host domain match: exact, `*`, `*suffix` or `prefix*`;
    case-insensitive; a wildcard never matches the empty string."""
    pattern, host = pattern.lower(), host.lower()
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return len(host) > len(pattern) - 1 and host.endswith(pattern[1:])
    if pattern.endswith("*"):
        return len(host) > len(pattern) - 1 and host.startswith(pattern[:-1])
    return pattern == host


def virtual_host_domains_match_target(resources: XdsResources) -> Iterator[str]:
    """gRPC looks up the virtual host by the target name, which is the listener name."""
    configs = {c.name: c for c in resources.route_configs}
    for name, is_api, hcm in _hcms(resources):
        if not is_api:
            continue
        config = configs.get(hcm.rds.route_config_name)
        if config is None:
            yield (
                f"virtual_host_domains_match_target: {name}: route configuration "
                f"{hcm.rds.route_config_name!r} is missing"
            )
            continue
        domains = [d for vhost in config.virtual_hosts for d in vhost.domains]
        if not any(domain_matches(d, name) for d in domains):
            yield f"virtual_host_domains_match_target: {name}: no virtual host domain matches it"


def retry_num_retries_positive(resources: XdsResources) -> Iterator[str]:
    for where, route in _routes(resources):
        if route.HasField("route") and route.route.HasField("retry_policy"):
            retry = route.route.retry_policy
            if not retry.HasField("num_retries") or retry.num_retries.value == 0:
                yield f"retry_num_retries_positive: {where}: num_retries must be > 0"


def retry_base_interval_positive(resources: XdsResources) -> Iterator[str]:
    for where, route in _routes(resources):
        if route.HasField("route") and route.route.HasField("retry_policy"):
            backoff = route.route.retry_policy.retry_back_off
            base = backoff.base_interval
            if not backoff.HasField("base_interval") or (base.seconds, base.nanos) <= (0, 0):
                yield f"retry_base_interval_positive: {where}: retry base_interval must be > 0"


GRPC_PATH_SPECIFIERS = frozenset({"prefix", "path", "safe_regex"})


def path_specifier_supported(resources: XdsResources) -> Iterator[str]:
    """gRPC's route parser knows `prefix`, `path` and `safe_regex` only; any other path
    specifier (e.g. `path_separated_prefix`) rejects the whole RouteConfiguration."""
    for where, route in _routes(resources):
        which = route.match.WhichOneof("path_specifier")
        if which not in GRPC_PATH_SPECIFIERS:
            yield f"path_specifier_supported: {where}: path specifier {which} is not supported"


def weights_not_all_zero(resources: XdsResources) -> Iterator[str]:
    for where, route in _routes(resources):
        if route.HasField("route") and route.route.HasField("weighted_clusters"):
            weights = [cw.weight.value for cw in route.route.weighted_clusters.clusters]
            if sum(weights) == 0:
                yield f"weights_not_all_zero: {where}: every cluster weight is zero"


def referenced_clusters_exist(resources: XdsResources) -> Iterator[str]:
    clusters = {c.name for c in resources.clusters}
    assignments = {a.cluster_name for a in resources.load_assignments}
    for name in sorted(referenced_clusters(resources.route_configs)):
        if name not in clusters or name not in assignments:
            yield f"referenced_clusters_exist: {name}: routed to but has no Cluster/assignment"


GRPC_RULES: tuple[Rule, ...] = (
    router_filter_last,
    unknown_filters_optional,
    clusters_eds_over_ads,
    lb_policy_round_robin,
    localities_have_weight,
    virtual_host_domains_match_target,
    path_specifier_supported,
    retry_num_retries_positive,
    retry_base_interval_positive,
    weights_not_all_zero,
    referenced_clusters_exist,
)
"""Every rule, in resource order (LDS, RDS, CDS, EDS)."""


def check_grpc_compat(resources: XdsResources) -> list[str]:
    """Every way `resources` would be rejected (or silently misused) by proxyless gRPC."""
    return [problem for rule in GRPC_RULES for problem in rule(resources)]
