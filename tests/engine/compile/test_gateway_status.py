"""Gateway status (ListenerStatus and Gateway conditions, apis/v1/gateway_types.go):
attachedRoutes per listener, supportedKinds, and every listener condition and reason the
compiler gives."""

from __future__ import annotations

import pytest

from tests.certs import Authority
from tests.engine.compile.builders import (
    Raw,
    compile_objects,
    gateway_parent,
    mk_gateway,
    mk_gateway_class,
    mk_listener,
    mk_namespace,
    mk_route,
    mk_rule,
    mk_tls_secret,
)
from turnout.engine import ir
from turnout.engine.compile import CompileResult

LEAF = Authority().leaf("foo.example.com")
HTTP_KINDS = [
    ("gateway.networking.k8s.io", "HTTPRoute"),
    ("gateway.networking.k8s.io", "GRPCRoute"),
]


def gw_status(result: CompileResult) -> ir.GatewayStatus:
    (st,) = result.gateway_statuses
    return st


def listener(result: CompileResult, name: str) -> ir.ListenerStatus:
    (li,) = [li for li in gw_status(result).listeners if li.name == name]
    return li


def attached(result: CompileResult) -> dict[str, int]:
    return {li.name: li.attached_routes for li in gw_status(result).listeners}


def cond(conds: tuple[ir.Condition, ...], type_: str) -> tuple[str, str]:
    (c,) = [c for c in conds if c.type == type_]
    return c.status, c.reason


def route(ns: str, name: str, **kw: object) -> Raw:
    return mk_route(ns, name, rules=[mk_rule(path=f"/{name}")], **kw)  # type: ignore[arg-type]


def with_kinds(li: Raw, *kinds: tuple[str, str]) -> Raw:
    li.setdefault("allowedRoutes", {})["kinds"] = [{"group": g, "kind": k} for g, k in kinds]  # type: ignore[index]
    return li


def https(name: str, port: int, *refs: Raw, hostname: str | None = None) -> Raw:
    li = mk_listener(name, port, protocol="HTTPS", hostname=hostname)
    li["tls"] = {"certificateRefs": list(refs)}
    return li


# --------------------------------------------------------------------------- attachedRoutes


def test_a_route_without_section_name_counts_on_every_listener_it_attached_to() -> None:
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway("edge", "gw", mk_listener("a", 80), mk_listener("b", 8080)),
        route("edge", "whole", parents=[gateway_parent("gw")]),
        route("edge", "only-b", parents=[gateway_parent("gw", section="b")]),
    )
    assert attached(result) == {"a": 1, "b": 2}


def test_a_route_counts_once_per_listener_even_through_two_parent_refs() -> None:
    refs = [gateway_parent("gw"), gateway_parent("gw", section="a")]
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway("edge", "gw", mk_listener("a", 80), mk_listener("b", 8080)),
        route("edge", "twice", parents=refs),
    )
    assert attached(result) == {"a": 1, "b": 1}


@pytest.mark.parametrize(
    ("allowed_from", "expected"),
    [
        pytest.param(None, {"li": 1}, id="same-is-the-default"),
        pytest.param("Same", {"li": 1}, id="same"),
        pytest.param("All", {"li": 3}, id="all"),
    ],
)
def test_allowed_routes_namespaces_decide_what_counts(
    allowed_from: str | None, expected: dict[str, int]
) -> None:
    """ "A Route is successfully attached to a Listener when it is selected by the
    Listener's AllowedRoutes field" (ListenerStatus.AttachedRoutes)."""
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway("edge", "gw", mk_listener("li", 80, allowed_from=allowed_from)),
        route("edge", "r", parents=[gateway_parent("gw")]),
        route("blue", "r", parents=[gateway_parent("gw", ns="edge")]),
        route("red", "r", parents=[gateway_parent("gw", ns="edge")]),
    )
    assert attached(result) == expected


def test_a_selector_counts_routes_of_matching_namespaces_only() -> None:
    li = mk_listener("li", 80)
    li["allowedRoutes"] = {
        "namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "blue"}}}
    }
    result = compile_objects(
        mk_namespace("blue", team="blue"),
        mk_namespace("red", team="red"),
        mk_gateway_class(),
        mk_gateway("edge", "gw", li),
        route("blue", "r", parents=[gateway_parent("gw", ns="edge")]),
        route("red", "r", parents=[gateway_parent("gw", ns="edge")]),
    )
    assert attached(result) == {"li": 1}


def test_hostnames_decide_per_listener_and_a_mismatch_counts_nowhere() -> None:
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway(
            "edge",
            "gw",
            mk_listener("foo", 80, hostname="foo.example.com"),
            mk_listener("bar", 80, hostname="bar.example.com"),
        ),
        route("edge", "to-foo", parents=[gateway_parent("gw")], hostnames=["foo.example.com"]),
        route("edge", "nowhere", parents=[gateway_parent("gw")], hostnames=["x.other.org"]),
        route("edge", "any", parents=[gateway_parent("gw")]),
    )
    assert attached(result) == {"foo": 2, "bar": 1}
    (nowhere,) = [s for s in result.statuses if s.route.name == "nowhere"]
    assert cond(nowhere.parents[0].conditions, "Accepted") == (
        "False",
        "NoMatchingListenerHostname",
    )


def test_a_route_that_is_not_accepted_does_not_count() -> None:
    """ "Routes with any other value for the Accepted condition MUST NOT be included"."""
    bad = mk_route(
        "edge",
        "bad",
        parents=[gateway_parent("gw")],
        rules=[mk_rule(path="(", path_type="RegularExpression")],
    )
    result = compile_objects(mk_gateway_class(), mk_gateway("edge", "gw"), bad)
    (st,) = result.statuses
    assert cond(st.parents[0].conditions, "Accepted")[0] == "False"
    assert attached(result) == {"http": 0}


def test_a_route_rejected_by_kind_does_not_count() -> None:
    li = with_kinds(mk_listener("grpc", 80), ("gateway.networking.k8s.io", "GRPCRoute"))
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway("edge", "gw", li),
        route("edge", "web", parents=[gateway_parent("gw")]),
    )
    assert attached(result) == {"grpc": 0}
    assert listener(result, "grpc").supported_kinds == (
        ir.RouteGroupKind(group="gateway.networking.k8s.io", kind="GRPCRoute"),
    )


# --------------------------------------------------------------------------- conditions


def test_a_valid_gateway_is_accepted_and_programmed_at_its_generation() -> None:
    gw = mk_gateway("edge", "gw")
    gw["metadata"]["generation"] = 7  # type: ignore[index]
    result = compile_objects(mk_gateway_class(), gw)
    st = gw_status(result)
    assert st.generation == 7
    assert cond(st.conditions, "Accepted") == ("True", "Accepted")
    assert cond(st.conditions, "Programmed") == ("True", "Programmed")
    (li,) = st.listeners
    assert [(c.type, c.status, c.reason) for c in li.conditions] == [
        ("Accepted", "True", "Accepted"),
        ("Programmed", "True", "Programmed"),
        ("ResolvedRefs", "True", "ResolvedRefs"),
        ("Conflicted", "False", "NoConflicts"),
    ]
    assert [(k.group, k.kind) for k in li.supported_kinds] == HTTP_KINDS
    every = [*st.conditions, *li.conditions]
    assert {c.observed_generation for c in every} == {7}


def test_an_unsupported_route_kind_is_invalid_route_kinds_and_left_out_of_supported_kinds() -> None:
    """ "If both valid and invalid Route kinds are specified, the implementation MUST
    reference the valid Route kinds that have been specified"."""
    li = with_kinds(
        mk_listener("li", 80),
        ("gateway.networking.k8s.io", "TCPRoute"),
        ("gateway.networking.k8s.io", "HTTPRoute"),
    )
    result = compile_objects(mk_gateway_class(), mk_gateway("edge", "gw", li))
    st = listener(result, "li")
    assert [k.kind for k in st.supported_kinds] == ["HTTPRoute"]
    assert cond(st.conditions, "ResolvedRefs") == ("False", "InvalidRouteKinds")
    assert cond(st.conditions, "Accepted") == ("True", "Accepted")


def test_an_unsupported_protocol_is_not_accepted_and_the_gateway_says_listeners_not_valid() -> None:
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway("edge", "gw", mk_listener("web", 80), mk_listener("udp", 53, protocol="UDP")),
    )
    udp = listener(result, "udp")
    assert cond(udp.conditions, "Accepted") == ("False", "UnsupportedProtocol")
    assert cond(udp.conditions, "Programmed") == ("False", "Invalid")
    assert udp.supported_kinds == ()
    st = gw_status(result)
    assert cond(st.conditions, "Accepted") == ("True", "ListenersNotValid")
    assert cond(st.conditions, "Programmed") == ("True", "Programmed")


def test_a_gateway_without_a_valid_listener_is_not_accepted_nor_programmed() -> None:
    result = compile_objects(
        mk_gateway_class(), mk_gateway("edge", "gw", mk_listener("tcp", 9000, protocol="TCP"))
    )
    st = gw_status(result)
    assert cond(st.conditions, "Accepted") == ("False", "ListenersNotValid")
    assert cond(st.conditions, "Programmed") == ("False", "Invalid")


@pytest.mark.parametrize(
    ("objects", "reason"),
    [
        pytest.param((), "InvalidCertificateRef", id="secret-missing"),
        pytest.param(
            (mk_tls_secret("edge", "tls", LEAF.chain_pem, LEAF.chain_pem),),
            "InvalidCertificateRef",
            id="key-unusable",
        ),
    ],
)
def test_an_unresolved_certificate_ref_is_surfaced_and_the_listener_not_programmed(
    objects: tuple[Raw, ...], reason: str
) -> None:
    gw = mk_gateway("edge", "gw", https("tls", 443, {"name": "tls"}))
    result = compile_objects(mk_gateway_class(), gw, *objects)
    li = listener(result, "tls")
    assert cond(li.conditions, "ResolvedRefs") == ("False", reason)
    assert cond(li.conditions, "Accepted") == ("True", "Accepted")
    assert cond(li.conditions, "Programmed") == ("False", "Invalid")
    assert cond(gw_status(result).conditions, "Programmed") == ("False", "Invalid")


def test_a_cross_namespace_certificate_without_a_grant_is_ref_not_permitted() -> None:
    refs = [{"name": "tls"}, {"name": "tls", "namespace": "certs"}]
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway("edge", "gw", https("tls", 443, *refs)),
        mk_tls_secret("edge", "tls", LEAF.chain_pem, LEAF.key_pem),
        mk_tls_secret("certs", "tls", LEAF.chain_pem, LEAF.key_pem),
    )
    li = listener(result, "tls")
    assert cond(li.conditions, "ResolvedRefs") == ("False", "RefNotPermitted")
    # One certificate resolved: the listener still serves.
    assert cond(li.conditions, "Programmed") == ("True", "Programmed")


def test_a_resolved_certificate_is_resolved_refs() -> None:
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway("edge", "gw", https("tls", 443, {"name": "tls"})),
        mk_tls_secret("edge", "tls", LEAF.chain_pem, LEAF.key_pem),
    )
    li = listener(result, "tls")
    assert cond(li.conditions, "ResolvedRefs") == ("True", "ResolvedRefs")
    assert cond(li.conditions, "Programmed") == ("True", "Programmed")


def test_http_and_https_on_one_port_are_all_conflicted_and_none_served() -> None:
    """ "The implementation MUST NOT pick one conflicting Listener as the winner"."""
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway(
            "edge",
            "gw",
            mk_listener("plain", 443, hostname="a.example.com"),
            https("tls", 443, {"name": "tls"}, hostname="foo.example.com"),
            mk_listener("other", 80),
        ),
        mk_tls_secret("edge", "tls", LEAF.chain_pem, LEAF.key_pem),
        route("edge", "r", parents=[gateway_parent("gw")]),
    )
    for name in ("plain", "tls"):
        li = listener(result, name)
        assert cond(li.conditions, "Conflicted") == ("True", "ProtocolConflict")
        assert cond(li.conditions, "Accepted") == ("False", "ProtocolConflict")
        assert cond(li.conditions, "Programmed") == ("False", "Invalid")
    assert cond(listener(result, "other").conditions, "Conflicted") == ("False", "NoConflicts")
    assert [p.name for p in result.table.parents] == ["gateway/edge/gw:80"]
    # Attachment does not depend on listener status ("MUST be set ... even if the
    # Accepted condition of an individual Listener is set to False").
    assert attached(result) == {"plain": 1, "tls": 1, "other": 1}
    assert cond(gw_status(result).conditions, "Accepted") == ("True", "ListenersNotValid")


def test_one_port_protocol_and_hostname_twice_is_a_hostname_conflict() -> None:
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway(
            "edge",
            "gw",
            mk_listener("one", 80, hostname="a.example.com"),
            mk_listener("two", 80, hostname="a.example.com"),
            mk_listener("three", 80, hostname="b.example.com"),
        ),
    )
    for name in ("one", "two"):
        li = listener(result, name)
        assert cond(li.conditions, "Conflicted") == ("True", "HostnameConflict")
    assert cond(listener(result, "three").conditions, "Conflicted") == ("False", "NoConflicts")
    (parent,) = result.table.parents
    assert isinstance(parent, ir.GatewayParent)
    assert [li.name for li in parent.listeners] == ["three"]
    assert [d.reason for d in result.diagnostics] == ["HostnameConflict", "HostnameConflict"]


def test_passthrough_on_https_is_not_accepted() -> None:
    li = https("tls", 443, {"name": "tls"})
    li["tls"]["mode"] = "Passthrough"  # type: ignore[index]
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway("edge", "gw", li),
        route("edge", "r", parents=[gateway_parent("gw")]),
    )
    assert cond(listener(result, "tls").conditions, "Accepted") == ("False", "UnsupportedValue")
    assert result.table.parents == ()


# --------------------------------------------------------------------------- which Gateways


def test_gateways_of_another_class_get_no_status_and_of_an_unknown_class_do() -> None:
    foreign = compile_objects(
        mk_gateway_class("other", controller="example.com/other"),
        mk_gateway("edge", "gw", cls="other"),
    )
    assert foreign.gateway_statuses == ()
    unknown = compile_objects(mk_gateway("edge", "gw", cls="missing"))
    assert [s.gateway.name for s in unknown.gateway_statuses] == ["gw"]
