"""What proxyless grpcio requires (ARCHITECTURE.md contract 3), one test per rule, each both
ways: `translate` output passes the rule, and a hand-broken resource is caught by it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.message import Message

from tests.engine.xds.builders import mk_full_table
from turnout.engine.xds import XdsResources, check_grpc_compat, translate
from turnout.engine.xds import grpc_compat as gc


@pytest.fixture(scope="module", params=[None, "checkout"], ids=["producer", "consumer"])
def good(request: pytest.FixtureRequest) -> XdsResources:
    resources = translate(mk_full_table(), client_namespace=request.param)
    assert check_grpc_compat(resources) == []
    return resources


def _copy(messages: tuple[Message, ...]) -> list[Message]:
    out = []
    for m in messages:
        c = type(m)()
        c.CopyFrom(m)
        out.append(c)
    return out


def broken(
    resources: XdsResources, field: str, mutate: Callable[[list[Message]], None]
) -> XdsResources:
    """A copy of `resources` whose `field` list went through `mutate`."""
    messages = _copy(getattr(resources, field))
    mutate(messages)
    return dataclasses.replace(resources, **{field: tuple(messages)})


def _api_listener(
    listeners: list[Message],
) -> tuple[listener_pb2.Listener, hcm_pb2.HttpConnectionManager]:
    listener: listener_pb2.Listener = next(m for m in listeners if m.HasField("api_listener"))
    hcm = hcm_pb2.HttpConnectionManager()
    listener.api_listener.api_listener.Unpack(hcm)
    return listener, hcm


def _edit_hcm(
    edit: Callable[[hcm_pb2.HttpConnectionManager], None],
) -> Callable[[list[Message]], None]:
    def mutate(listeners: list[Message]) -> None:
        listener, hcm = _api_listener(listeners)
        edit(hcm)
        listener.api_listener.api_listener.Pack(hcm)

    return mutate


def _forward_routes(configs: list[Message]) -> list[object]:
    return [r for c in configs for v in c.virtual_hosts for r in v.routes if r.HasField("route")]  # type: ignore[attr-defined]


def _caught(rule: gc.Rule, resources: XdsResources) -> list[str]:
    problems = list(rule(resources))
    assert problems, f"{rule.__name__} missed the broken resource"
    assert all(p.startswith(rule.__name__ + ": ") for p in problems)
    assert set(problems) <= set(check_grpc_compat(resources))
    return problems


def test_router_filter_last(good: XdsResources) -> None:
    assert list(gc.router_filter_last(good)) == []

    def swap(hcm: hcm_pb2.HttpConnectionManager) -> None:
        filters = list(hcm.http_filters)
        del hcm.http_filters[:]
        hcm.http_filters.extend([filters[-1], *filters[:-1]])

    _caught(gc.router_filter_last, broken(good, "listeners", _edit_hcm(swap)))


def test_unknown_filters_optional(good: XdsResources) -> None:
    assert list(gc.unknown_filters_optional(good)) == []

    def required_cors(hcm: hcm_pb2.HttpConnectionManager) -> None:
        hcm.http_filters.insert(0, hcm_pb2.HttpFilter(name="envoy.filters.http.cors"))

    _caught(gc.unknown_filters_optional, broken(good, "listeners", _edit_hcm(required_cors)))


def test_clusters_eds_over_ads(good: XdsResources) -> None:
    assert list(gc.clusters_eds_over_ads(good)) == []

    def static(clusters: list[Message]) -> None:
        clusters[0].type = cluster_pb2.Cluster.DiscoveryType.STATIC  # type: ignore[attr-defined]

    def not_ads(clusters: list[Message]) -> None:
        clusters[0].eds_cluster_config.eds_config.CopyFrom(  # type: ignore[attr-defined]
            config_source_pb2.ConfigSource(path_config_source={"path": "/eds.yaml"})
        )

    assert (
        "type is not EDS" in _caught(gc.clusters_eds_over_ads, broken(good, "clusters", static))[0]
    )
    assert "ADS" in _caught(gc.clusters_eds_over_ads, broken(good, "clusters", not_ads))[0]


def test_lb_policy_round_robin(good: XdsResources) -> None:
    assert list(gc.lb_policy_round_robin(good)) == []

    def least_request(clusters: list[Message]) -> None:
        clusters[0].lb_policy = cluster_pb2.Cluster.LbPolicy.LEAST_REQUEST  # type: ignore[attr-defined]

    _caught(gc.lb_policy_round_robin, broken(good, "clusters", least_request))


def test_localities_have_weight(good: XdsResources) -> None:
    assert list(gc.localities_have_weight(good)) == []

    def unweighted(assignments: list[Message]) -> None:
        next(a for a in assignments if a.endpoints).endpoints[0].ClearField("load_balancing_weight")  # type: ignore[attr-defined]

    _caught(gc.localities_have_weight, broken(good, "load_assignments", unweighted))


def test_virtual_host_domains_match_target(good: XdsResources) -> None:
    assert list(gc.virtual_host_domains_match_target(good)) == []

    def other_domains(configs: list[Message]) -> None:
        for c in configs:
            for v in c.virtual_hosts:  # type: ignore[attr-defined]
                del v.domains[:]
                v.domains.append("web.other.svc.cluster.local:80")

    _caught(gc.virtual_host_domains_match_target, broken(good, "route_configs", other_domains))


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("web.shop.svc.cluster.local:80", "web.shop.svc.cluster.local:80", True),
        ("WEB.shop.svc.cluster.local:80", "web.shop.svc.cluster.local:80", True),
        ("*", "anything", True),
        ("*.cluster.local:80", "web.shop.svc.cluster.local:80", True),
        ("web.*", "web.shop", True),
        ("web*", "web", False),
        ("web", "web.shop.svc.cluster.local:80", False),
    ],
)
def test_domain_matching_follows_grpc(pattern: str, host: str, matches: bool) -> None:
    assert gc.domain_matches(pattern, host) is matches


def test_retry_num_retries_positive(good: XdsResources) -> None:
    assert list(gc.retry_num_retries_positive(good)) == []
    assert any(r.route.HasField("retry_policy") for r in _forward_routes(list(good.route_configs)))  # type: ignore[attr-defined]

    def zero(configs: list[Message]) -> None:
        for r in _forward_routes(configs):
            if r.route.HasField("retry_policy"):  # type: ignore[attr-defined]
                r.route.retry_policy.num_retries.value = 0  # type: ignore[attr-defined]

    _caught(gc.retry_num_retries_positive, broken(good, "route_configs", zero))


def test_retry_base_interval_positive(good: XdsResources) -> None:
    assert list(gc.retry_base_interval_positive(good)) == []

    def zero(configs: list[Message]) -> None:
        for r in _forward_routes(configs):
            if r.route.HasField("retry_policy"):  # type: ignore[attr-defined]
                r.route.retry_policy.retry_back_off.base_interval.FromMilliseconds(0)  # type: ignore[attr-defined]

    _caught(gc.retry_base_interval_positive, broken(good, "route_configs", zero))


def test_path_specifier_supported(good: XdsResources) -> None:
    assert list(gc.path_specifier_supported(good)) == []

    def separated(configs: list[Message]) -> None:
        route = configs[0].virtual_hosts[0].routes[0]  # type: ignore[attr-defined]
        route.match.path_separated_prefix = "/api"

    problems = _caught(gc.path_specifier_supported, broken(good, "route_configs", separated))
    assert "path_separated_prefix" in problems[0]


def test_weights_not_all_zero(good: XdsResources) -> None:
    assert list(gc.weights_not_all_zero(good)) == []

    def zero(configs: list[Message]) -> None:
        for r in _forward_routes(configs):
            for cw in r.route.weighted_clusters.clusters:  # type: ignore[attr-defined]
                cw.weight.value = 0

    _caught(gc.weights_not_all_zero, broken(good, "route_configs", zero))


def test_referenced_clusters_exist(good: XdsResources) -> None:
    assert list(gc.referenced_clusters_exist(good)) == []

    def drop_web(clusters: list[Message]) -> None:
        clusters[:] = [c for c in clusters if c.name != "shop/web:80"]  # type: ignore[attr-defined]

    _caught(gc.referenced_clusters_exist, broken(good, "clusters", drop_web))


def test_every_rule_has_a_test() -> None:
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    assert {rule.__name__ for rule in gc.GRPC_RULES} <= tested
