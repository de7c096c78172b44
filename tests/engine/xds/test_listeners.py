"""Listeners (docs/xds.md "Listener", "Names", "Views per client")."""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from tests.engine.xds.builders import (
    NS,
    mk_gateway_parent,
    mk_rule,
    mk_service_parent,
    mk_table,
    mk_vhost,
    routes_of,
    translate_one,
)
from turnout.engine import ir
from turnout.engine.xds import translate

AUTHORITY = "web.shop.svc.cluster.local:80"


def _hcm(listener: listener_pb2.Listener) -> hcm_pb2.HttpConnectionManager:
    hcm = hcm_pb2.HttpConnectionManager()
    if listener.HasField("api_listener"):
        assert listener.api_listener.api_listener.Unpack(hcm)
    else:
        assert listener.filter_chains[0].filters[0].typed_config.Unpack(hcm)
    return hcm


def test_service_parent_is_an_api_listener_named_after_the_authority() -> None:
    (listener,) = translate_one(mk_rule()).listeners
    assert listener.name == AUTHORITY
    hcm = _hcm(listener)
    assert hcm.rds.route_config_name == AUTHORITY
    assert hcm.rds.config_source.HasField("ads")
    assert hcm.rds.config_source.resource_api_version == 2  # V3


def test_http_filters_are_fault_then_router_last() -> None:
    hcm = _hcm(translate_one(mk_rule()).listeners[0])
    assert [f.name for f in hcm.http_filters] == [
        "envoy.filters.http.fault",
        "envoy.filters.http.router",
    ]
    assert hcm.http_filters[0].typed_config.type_url.endswith("fault.v3.HTTPFault")


def test_cors_filter_is_added_optional_only_when_used() -> None:
    hcm = _hcm(translate_one(mk_rule(filters=(ir.CorsFilter(allow_origins=("*",)),))).listeners[0])
    names = [f.name for f in hcm.http_filters]
    assert names == [
        "envoy.filters.http.fault",
        "envoy.filters.http.cors",
        "envoy.filters.http.router",
    ]
    assert hcm.http_filters[1].is_optional


def test_service_virtual_host_domains_are_the_compiled_ones() -> None:
    """The compiler decides the domains (the Service's names and `*`: mesh routing is by
    destination, not Host); the translator copies them."""
    parent = mk_service_parent(mk_rule())
    (config,) = translate(mk_table(parent)).route_configs
    domains = tuple(config.virtual_hosts[0].domains)
    assert domains == parent.producer.domains
    assert config.name in domains and domains[-1] == "*"


def test_gateway_parent_binds_its_port_with_the_hcm_in_a_filter_chain() -> None:
    vhost = mk_vhost(mk_rule(), name="gw/a.example", domains=("a.example", "*.b.example"))
    (listener,) = translate(mk_table(mk_gateway_parent(vhost, port=8080))).listeners
    assert listener.name == f"gateway/{NS}/edge:8080"
    assert listener.address.socket_address.address == "0.0.0.0"
    assert listener.address.socket_address.port_value == 8080
    assert (
        listener.filter_chains[0].filters[0].name == "envoy.filters.network.http_connection_manager"
    )
    hcm = _hcm(listener)
    assert hcm.rds.route_config_name == listener.name
    assert hcm.http_filters[-1].name == "envoy.filters.http.router"


def test_gateway_virtual_hosts_keep_their_domains_and_order() -> None:
    a = mk_vhost(mk_rule(), name="a", domains=("a.example",))
    star = mk_vhost(mk_rule(), name="star", domains=("*",))
    (config,) = translate(mk_table(mk_gateway_parent(a, star))).route_configs
    assert [(v.name, list(v.domains)) for v in config.virtual_hosts] == [
        ("a", ["a.example"]),
        ("star", ["*"]),
    ]


def _with_consumer() -> ir.RouteTable:
    consumer = mk_vhost(mk_rule(ir.ExactPath(value="/c"), route="web-for-shop"), name="c")
    parent = mk_service_parent(
        mk_rule(), consumers=(ir.ConsumerView(namespace="checkout", vhost=consumer),)
    )
    return mk_table(parent)


def test_consumer_namespace_sees_its_consumer_route_configuration() -> None:
    resources = translate(_with_consumer(), client_namespace="checkout")
    assert _hcm(resources.listeners[0]).rds.route_config_name == f"{AUTHORITY}@checkout"
    assert [c.name for c in resources.route_configs] == [f"{AUTHORITY}@checkout"]
    assert [r.match.path for r in routes_of(resources)] == ["/c"]


def test_other_namespaces_see_the_producer_routes() -> None:
    for ns in (None, "other"):
        resources = translate(_with_consumer(), client_namespace=ns)
        assert [c.name for c in resources.route_configs] == [AUTHORITY]
        assert [r.match.prefix for r in routes_of(resources)] == ["/"]
