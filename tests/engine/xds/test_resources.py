"""`XdsResources` and its wire views, plus the smoke test: every message survives an `Any`
round trip and passes cheap protoc-gen-validate checks (pgv.py)."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from tests.engine.xds.builders import mk_full_table
from tests.engine.xds.pgv import pgv_problems
from turnout.engine.xds import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    LOAD_ASSIGNMENT_TYPE,
    ROUTE_CONFIGURATION_TYPE,
    TYPE_URLS,
    XdsResources,
    translate,
)

MESSAGE_TYPES: dict[str, type[Message]] = {
    LISTENER_TYPE: listener_pb2.Listener,
    ROUTE_CONFIGURATION_TYPE: route_pb2.RouteConfiguration,
    CLUSTER_TYPE: cluster_pb2.Cluster,
    LOAD_ASSIGNMENT_TYPE: endpoint_pb2.ClusterLoadAssignment,
}


@pytest.fixture(scope="module", params=[None, "checkout"], ids=["producer", "consumer"])
def resources(request: pytest.FixtureRequest) -> XdsResources:
    return translate(mk_full_table(), client_namespace=request.param)


def test_each_resource_list_is_sorted_by_name(resources: XdsResources) -> None:
    for named in resources.by_type_url().values():
        assert list(named) == sorted(named)
    assert [m.name for m in resources.listeners] == sorted(m.name for m in resources.listeners)


def test_by_type_url_keys_every_type_and_names_each_resource(resources: XdsResources) -> None:
    by_type = resources.by_type_url()
    assert tuple(by_type) == TYPE_URLS
    assert set(by_type[CLUSTER_TYPE]) == set(by_type[LOAD_ASSIGNMENT_TYPE])
    for url, named in by_type.items():
        assert named, url
        for message in named.values():
            assert isinstance(message, MESSAGE_TYPES[url])


def test_translate_is_deterministic() -> None:
    first = translate(mk_full_table()).packed()
    second = translate(mk_full_table()).packed()
    flat = [
        (url, name, m.SerializeToString(deterministic=True))
        for url, named in first.items()
        for name, m in named.items()
    ]
    again = [
        (url, name, m.SerializeToString(deterministic=True))
        for url, named in second.items()
        for name, m in named.items()
    ]
    assert flat == again


def test_any_round_trip_gives_back_equal_messages(resources: XdsResources) -> None:
    """What the ADS server will send: each resource packed, serialized, parsed and unpacked."""
    originals = resources.by_type_url()
    for url, named in resources.packed().items():
        for name, packed in named.items():
            assert packed.type_url == url
            wire = any_pb2.Any.FromString(packed.SerializeToString())
            message = MESSAGE_TYPES[url]()
            assert wire.Unpack(message)
            assert message == originals[url][name]


def test_every_message_passes_protoc_gen_validate_basics(resources: XdsResources) -> None:
    problems = [
        p
        for named in resources.by_type_url().values()
        for name, message in named.items()
        for p in ([f"{name}: empty name"] if not name else pgv_problems(message, name))
    ]
    assert problems == []


def test_pgv_check_catches_what_it_claims_to() -> None:
    from envoy.config.route.v3 import route_components_pb2 as rc

    assert pgv_problems(rc.Route(match=rc.RouteMatch(prefix="/"))) == [
        "Route: oneof action is required"
    ]
    bad = rc.RouteAction(cluster="")
    bad.timeout.seconds = -1
    assert pgv_problems(bad) == [
        "RouteAction.cluster: shorter than 1",
        "RouteAction.timeout: negative duration",
    ]


def test_to_dict_renders_proto_field_names(resources: XdsResources) -> None:
    rendered = resources.to_dict()
    assert list(rendered) == ["listeners", "route_configs", "clusters", "load_assignments"]
    assert "eds_cluster_config" in rendered["clusters"][0]
