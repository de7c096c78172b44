"""Clusters and assignments (docs/xds.md "Cluster and ClusterLoadAssignment")."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import json_format

from tests.engine.xds.builders import mk_cluster, mk_table
from turnout.engine import ir
from turnout.engine.xds import METADATA_KEY, translate

H2_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def _one(cluster: ir.Cluster) -> tuple[cluster_pb2.Cluster, endpoint_pb2.ClusterLoadAssignment]:
    resources = translate(mk_table(clusters=(cluster,)))
    return resources.clusters[0], resources.load_assignments[0]


def test_cluster_is_eds_over_ads_with_round_robin() -> None:
    cluster, _ = _one(mk_cluster())
    assert cluster.name == "shop/web:80"
    assert cluster.type == cluster.EDS
    source = cluster.eds_cluster_config.eds_config
    assert source.HasField("ads")
    assert source.resource_api_version == 2  # V3
    assert cluster.lb_policy == cluster.ROUND_ROBIN


def test_retry_budget_is_in_circuit_breakers_and_exactly_in_metadata() -> None:
    cluster, _ = _one(mk_cluster())
    budget = cluster.circuit_breakers.thresholds[0].retry_budget
    assert budget.budget_percent.value == 20
    assert budget.min_retry_concurrency.value == 10
    meta = json_format.MessageToDict(cluster.metadata.filter_metadata[METADATA_KEY])
    assert meta["retryBudget"] == {
        "percent": 20,
        "intervalMs": 10000,
        "minRetryCount": 10,
        "minRetryIntervalMs": 1000,
    }
    assert (meta["protocol"], meta["endpointsKnown"]) == ("http1", True)


@pytest.mark.parametrize(("protocol", "http2"), [("http1", False), ("h2c", True), ("grpc", True)])
def test_http2_protocol_options_for_h2c_and_grpc(protocol: str, http2: bool) -> None:
    cluster, _ = _one(mk_cluster(protocol=protocol))
    options = cluster.typed_extension_protocol_options
    assert (H2_OPTIONS in options) == http2
    if http2:
        got = http_protocol_options_pb2.HttpProtocolOptions()
        assert options[H2_OPTIONS].Unpack(got)
        assert got.explicit_http_config.HasField("http2_protocol_options")


def test_assignment_has_one_locality_per_zone_each_with_weight_one() -> None:
    endpoints = (
        ir.Endpoint(address="10.0.0.2", port=8080, zone="b"),
        ir.Endpoint(address="10.0.0.1", port=8080, zone="a"),
        ir.Endpoint(address="10.0.0.3", port=8080, zone="a", ready=False),
        ir.Endpoint(address="10.0.0.4", port=8080),
    )
    _, cla = _one(mk_cluster(endpoints=endpoints))
    assert cla.cluster_name == "shop/web:80"
    got = [
        (
            loc.locality.zone,
            loc.load_balancing_weight.value,
            [
                (
                    e.endpoint.address.socket_address.address,
                    e.endpoint.address.socket_address.port_value,
                    e.health_status,
                )
                for e in loc.lb_endpoints
            ],
        )
        for loc in cla.endpoints
    ]
    healthy, unhealthy = health_check_pb2.HEALTHY, health_check_pb2.UNHEALTHY
    assert got == [
        ("", 1, [("10.0.0.4", 8080, healthy)]),
        ("a", 1, [("10.0.0.1", 8080, healthy), ("10.0.0.3", 8080, unhealthy)]),
        ("b", 1, [("10.0.0.2", 8080, healthy)]),
    ]


def test_cluster_without_endpoints_has_an_empty_assignment() -> None:
    _, cla = _one(mk_cluster(endpoints=()))
    assert len(cla.endpoints) == 0


def test_clusters_and_assignments_are_sorted_by_name() -> None:
    table = mk_table(clusters=(mk_cluster("b"), mk_cluster("a"), mk_cluster("c", ns="alpha")))
    resources = translate(table)
    assert [c.name for c in resources.clusters] == ["alpha/c:80", "shop/a:80", "shop/b:80"]
    assert [a.cluster_name for a in resources.load_assignments] == [
        "alpha/c:80",
        "shop/a:80",
        "shop/b:80",
    ]


def test_a_meshed_endpoint_carries_its_identity_in_lb_endpoint_metadata_only() -> None:
    ident = "web.shop.serviceaccount.identity.cluster.local"
    meshed = ir.Endpoint(address="10.0.0.1", port=8080, identity=ident)
    bare = ir.Endpoint(address="10.0.0.2", port=8080)
    _, cla = _one(mk_cluster(endpoints=(meshed, bare)))
    first, second = cla.endpoints[0].lb_endpoints
    meta = json_format.MessageToDict(first.metadata.filter_metadata[METADATA_KEY])
    assert meta == {"identity": ident}
    assert not second.HasField("metadata")
