"""Destinations from the table (`destinations.py`): Service addresses from the listener
metadata, endpoint addresses from the load assignments, IP literals in Host headers."""

from __future__ import annotations

import pytest
from envoy.config.listener.v3 import listener_pb2
from google.protobuf import struct_pb2

from turnout.proxy.actions import Forward
from turnout.proxy.clusters import ClusterInfo, Endpoint
from turnout.proxy.destinations import (
    TcpTarget,
    address_of,
    build_destinations,
    service_addresses,
    service_of,
    service_opaque,
)
from turnout.proxy.errors import TableError


def listener(meta: dict[str, object] | None) -> listener_pb2.Listener:
    lst = listener_pb2.Listener(name="pay.shop.svc.cluster.local:8080")
    if meta is not None:
        s = struct_pb2.Struct()
        s.update(meta)
        lst.metadata.filter_metadata["turnout"].CopyFrom(s)
    return lst


def test_service_addresses_come_from_the_listener_metadata() -> None:
    assert service_addresses(listener(None)) == []
    got = service_addresses(listener({"addresses": ["10.96.0.10", "fd00::a"], "port": 8080}))
    assert got == [("10.96.0.10", 8080), ("fd00::a", 8080)]


@pytest.mark.parametrize(
    ("meta", "field"),
    [
        ({"addresses": ["10.0.0.1"]}, "metadata.turnout"),
        ({"addresses": ["10.0.0.1"], "port": 0}, "metadata.turnout.port"),
        ({"addresses": ["10.0.0.1"], "port": 80.5}, "metadata.turnout.port"),
        ({"addresses": ["web.shop"], "port": 80}, "metadata.turnout.addresses[0]"),
    ],
)
def test_bad_metadata_is_a_table_error_naming_the_field(
    meta: dict[str, object], field: str
) -> None:
    with pytest.raises(TableError) as err:
        service_addresses(listener(meta))
    assert err.value.field == field


def test_endpoints_pass_through_unless_a_service_has_the_address() -> None:
    eps = (
        Endpoint(address="10.1.0.5", port=8080, healthy=False),
        Endpoint(address="10.96.0.10", port=80, healthy=True),
    )
    clusters = {"shop/pay:80": ClusterInfo(name="shop/pay:80", endpoints=eps, endpoints_known=True)}
    dests, extra = build_destinations([("pay:80", ("10.96.0.10", 80))], clusters)
    assert dests.lookup(("10.96.0.10", 80)) == "pay:80"
    through = dests.lookup(("10.1.0.5", 8080))
    assert through is not None and not isinstance(through, str)
    assert isinstance(through.action, Forward)
    [backend] = through.action.backends
    # a pass-through cluster of its own, its one endpoint used even when not ready
    assert extra[backend.cluster].endpoints == (
        Endpoint(address="10.1.0.5", port=8080, healthy=True),
    )
    assert list(extra) == ["passthrough/10.1.0.5:8080"]
    assert dests.lookup(("10.1.0.5", 80)) is None


@pytest.mark.parametrize(
    ("host", "want"),
    [
        ("10.96.0.10:8080", ("10.96.0.10", 8080)),
        ("10.96.0.10", ("10.96.0.10", 80)),
        ("[fd00::a]:8080", ("fd00::a", 8080)),
        ("[fd00::a]", ("fd00::a", 80)),
        ("web.shop:80", None),
        ("1web.shop", None),
        ("10.96.0.10:http", None),
        ("", None),
    ],
)
def test_ip_literal_hosts(host: str, want: tuple[str, int] | None) -> None:
    assert address_of(host) == want


def test_tcp_targets_of_services_and_of_an_opaque_services_pods() -> None:
    assert service_opaque(listener({"addresses": ["10.0.0.1"], "port": 80})) is None
    assert service_opaque(listener({"opaque": "shop/pay:8080"})) == "shop/pay:8080"
    with pytest.raises(TableError) as err:
        service_opaque(listener({"opaque": 1}))
    assert err.value.field == "metadata.turnout.opaque"
    assert service_of("pay.shop.svc.cluster.local:8080") == ("shop", "pay", 8080)
    assert service_of("gateway/shop/web") is None
    ep = Endpoint(address="10.1.0.5", port=8080, healthy=True)
    clusters = {"shop/pay:8080": ClusterInfo(name="shop/pay:8080", endpoints=(ep,))}
    pay = TcpTarget(cluster="shop/pay:8080", opaque=True, namespace="shop", service="pay")
    dests, _ = build_destinations([("pay", ("10.96.0.10", 8080))], clusters, {"pay": pay})
    assert dests.tcp[("10.96.0.10", 8080)] is pay
    assert dests.tcp[("10.1.0.5", 8080)] == TcpTarget(
        cluster="passthrough/10.1.0.5:8080", opaque=True
    )
