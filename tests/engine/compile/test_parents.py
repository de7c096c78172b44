"""Attachment rules of HTTPROUTE-SEMANTICS §5 and §9 that goldens show only as a whole:
label selectors, listener protocol, Service port protocol, and not-accepted routes."""

from __future__ import annotations

import pytest

from tests.engine.compile.builders import (
    compile_objects,
    gateway_parent,
    mk_gateway,
    mk_gateway_class,
    mk_listener,
    mk_route,
    mk_rule,
    mk_service,
    service_parent,
)
from turnout.engine import ir
from turnout.engine.compile.parents import selector_matches
from turnout.engine.model.base import LabelSelector

LABELS = {"team": "blue", "env": "prod"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param({"matchLabels": {"team": "blue"}}, True, id="match-labels"),
        pytest.param({"matchLabels": {"team": "red"}}, False, id="match-labels-differ"),
        pytest.param(
            {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]},
            True,
            id="in",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]},
            False,
            id="in-missing-key",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]},
            False,
            id="not-in",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]},
            True,
            id="not-in-missing-key",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "team", "operator": "Exists"}]}, True, id="exists"
        ),
        pytest.param(
            {"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]},
            False,
            id="does-not-exist",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "team", "operator": "Gt", "values": ["1"]}]},
            False,
            id="unknown-operator-never-matches",
        ),
        pytest.param(
            {
                "matchLabels": {"team": "blue"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}],
            },
            False,
            id="labels-and-expressions",
        ),
    ],
)
def test_selector_namespaces_need_every_requirement(
    selector: dict[str, object], expected: bool
) -> None:
    """§5: "`Selector` = route namespace's labels match the selector" (Kubernetes selector
    semantics; an operator the API server would refuse must not widen access)."""
    assert selector_matches(LabelSelector.model_validate(selector), LABELS) is expected


def _accepted(result_statuses: tuple[ir.RouteStatus, ...]) -> list[tuple[str, str]]:
    return [
        (c.status, c.reason)
        for s in result_statuses
        for p in s.parents
        for c in p.conditions
        if c.type == "Accepted"
    ]


def test_tcp_listener_listing_httproute_kind_admits_no_http_route() -> None:
    """§5: "The listener protocol supports HTTPRoute (HTTP/HTTPS) and `allowedRoutes.kinds`
    (if set) contains HTTPRoute" — both; this used to crash the compiler."""
    gw = mk_gateway("web", "edge", mk_listener("tcp", 9000, protocol="TCP"))
    gw_spec = gw["spec"]
    assert isinstance(gw_spec, dict)
    gw_spec["listeners"][0]["allowedRoutes"] = {"kinds": [{"kind": "HTTPRoute"}]}
    result = compile_objects(
        mk_gateway_class(),
        gw,
        mk_route("web", "r", parents=[gateway_parent("edge", section="tcp")]),
    )
    assert _accepted(result.statuses) == [("False", "NotAllowedByListeners")]
    assert not [p for p in result.table.parents if isinstance(p, ir.GatewayParent) and p.vhosts]


def test_route_without_port_attaches_only_to_tcp_service_ports() -> None:
    """§9: "without them the route applies to all ports of the Service" — the HTTP ones: a
    UDP port is no HTTP frontend."""
    svc = mk_service("mesh", "dns", ("http", 80))
    svc_spec = svc["spec"]
    assert isinstance(svc_spec, dict)
    svc_spec["ports"].append({"name": "dns", "port": 53, "protocol": "UDP"})
    result = compile_objects(svc, mk_route("mesh", "r", parents=[service_parent("dns")]))
    assert [p.name for p in result.table.parents] == ["service/mesh/dns:80"]


def test_not_accepted_route_keeps_the_default_rule() -> None:
    """§10: "A not-accepted parent gets no routing at all"; the Service behaves as if no route
    attached (Conf MeshBasic), instead of answering 404 from an empty table."""
    bad_regex = mk_rule(path="/(unclosed", path_type="RegularExpression")
    result = compile_objects(
        mk_service("mesh", "web", 80),
        mk_route("mesh", "r", parents=[service_parent("web", 80)], rules=[bad_regex]),
    )
    assert _accepted(result.statuses) == [("False", "UnsupportedValue")]
    parent = result.table.parent("service/mesh/web:80")
    assert isinstance(parent, ir.ServiceParent)
    assert [r.name for r in parent.producer.rules] == ["service/mesh/web:80/default"]


def test_not_accepted_consumer_route_creates_no_consumer_view() -> None:
    """§9: consumer routes replace the producer routes for their namespace — only when they
    are accepted; otherwise the client namespace keeps the producer view."""
    bad_regex = mk_rule(path="/(unclosed", path_type="RegularExpression")
    result = compile_objects(
        mk_service("shop", "web", 80),
        mk_route("client", "r", parents=[service_parent("web", 80, ns="shop")], rules=[bad_regex]),
    )
    parent = result.table.parent("service/shop/web:80")
    assert isinstance(parent, ir.ServiceParent)
    assert parent.consumers == ()


def test_a_service_parent_may_be_written_with_group_core() -> None:
    """Linkerd and Flagger write `{group: core, kind: Service}` for a mesh parent; it is the
    same parent as `group: ""`, and status echoes the ref as written."""
    parent = {"group": "core", "kind": "Service", "name": "web", "port": 80}
    result = compile_objects(
        mk_service("shop", "web", 80),
        mk_service("shop", "v2", 80),
        mk_route(
            "shop", "r", parents=[parent], rules=[mk_rule(backends=[{"name": "v2", "port": 80}])]
        ),
    )
    assert not [d for d in result.diagnostics if d.reason == "InvalidKind"]
    (status,) = result.statuses
    assert status.parents[0].parent_ref.group == "core"
    assert status.parents[0].conditions[0].status == "True"
