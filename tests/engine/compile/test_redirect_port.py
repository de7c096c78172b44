"""RequestRedirect ports (HTTPROUTE-SEMANTICS §7.2, Conf HTTPRouteRedirectPortAndScheme).

"port: filter value; else if the filter sets a scheme -> that scheme's well-known port (http
80, https 443); else the listener's port (mesh: the Service port). Omit the port from
`Location` when it is 80 with http or 443 with https." None below means "omit".
"""

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
    redirect,
    service_parent,
)
from turnout.engine import ir
from turnout.engine.compile.filters import ParentPort, redirect_port

HTTP_80 = ParentPort(port=80, scheme="http")
HTTP_8080 = ParentPort(port=8080, scheme="http")
HTTPS_443 = ParentPort(port=443, scheme="https")
HTTPS_8443 = ParentPort(port=8443, scheme="https")


@pytest.mark.parametrize(
    ("parent", "scheme", "port", "expected"),
    [
        pytest.param(HTTP_8080, None, None, 8080, id="listener-8080-no-scheme-keeps-listener-port"),
        pytest.param(HTTP_80, None, 8080, 8080, id="listener-80-port-8080"),
        pytest.param(HTTP_80, "https", None, None, id="scheme-https-no-port"),
        pytest.param(HTTPS_443, "http", None, None, id="https-listener-scheme-http-no-port"),
        pytest.param(HTTP_80, "https", 8443, 8443, id="explicit-port-8443-kept"),
        pytest.param(HTTP_80, None, None, None, id="listener-80-nothing-set"),
        pytest.param(HTTPS_443, None, None, None, id="https-listener-443-nothing-set"),
        pytest.param(HTTPS_8443, None, None, 8443, id="https-listener-8443-nothing-set"),
        pytest.param(HTTP_80, "http", 443, 443, id="port-443-with-http-kept"),
        pytest.param(HTTPS_443, None, 80, 80, id="port-80-on-https-kept"),
        pytest.param(HTTP_8080, "http", None, None, id="scheme-http-on-8080-is-80"),
        pytest.param(HTTP_80, None, 80, None, id="explicit-80-with-http-omitted"),
    ],
)
def test_redirect_port_follows_the_conformance_rows(
    parent: ParentPort, scheme: str | None, port: int | None, expected: int | None
) -> None:
    assert redirect_port(filter_port=port, scheme=scheme, parent=parent) == expected


def _redirect(rule: ir.Rule) -> ir.RedirectFilter:
    (f,) = rule.filters
    assert isinstance(f, ir.RedirectFilter)
    return f


def test_gateway_redirect_defaults_to_the_listener_port() -> None:
    """Conf: "listener 8080, no scheme/port -> `http://example.org:8080/...`"."""
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway("web", "edge", mk_listener("alt", 8080)),
        mk_route(
            "web",
            "r",
            parents=[gateway_parent("edge")],
            rules=[mk_rule(filters=[redirect(hostname="example.org")])],
        ),
    )
    parent = result.table.parent("gateway/web/edge:8080")
    assert isinstance(parent, ir.GatewayParent)
    assert _redirect(parent.vhosts[0].rules[0]).port == 8080


def test_https_listener_redirect_to_http_omits_the_port() -> None:
    """Conf: "HTTPS listener + `scheme: http` -> `http://example.org/...`"."""
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway("web", "edge", mk_listener("https", 443, protocol="HTTPS")),
        mk_route(
            "web",
            "r",
            parents=[gateway_parent("edge")],
            rules=[mk_rule(filters=[redirect(scheme="http")])],
        ),
    )
    parent = result.table.parent("gateway/web/edge:443")
    assert isinstance(parent, ir.GatewayParent)
    got = _redirect(parent.vhosts[0].rules[0])
    assert (got.scheme, got.port, got.status_code) == ("http", None, 302)


def test_mesh_redirect_defaults_to_the_service_port() -> None:
    """§7.2: "else the listener's port (mesh: the Service port)"."""
    result = compile_objects(
        mk_service("web", "app", 8080),
        mk_route(
            "web",
            "r",
            parents=[service_parent("app", 8080)],
            rules=[mk_rule(filters=[redirect(hostname="example.org")])],
        ),
    )
    parent = result.table.parent("service/web/app:8080")
    assert isinstance(parent, ir.ServiceParent)
    assert _redirect(parent.producer.rules[0]).port == 8080
