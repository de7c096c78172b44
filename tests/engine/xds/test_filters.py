"""Filters (docs/xds.md "Actions"): header mutations, redirects, mirrors, fault, CORS and
backend-level filters on the ClusterWeight."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2

from tests.engine.xds.builders import (
    mk_backend,
    mk_invalid,
    mk_rule,
    mk_source,
    mk_target,
    route_of,
)
from turnout.engine import ir

OVERWRITE = base_pb2.HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD
APPEND = base_pb2.HeaderValueOption.HeaderAppendAction.APPEND_IF_EXISTS_OR_ADD

MODIFIER = ir.HeaderModifier(
    set=(ir.Header(name="X-Set", value="1"),),
    add=(ir.Header(name="X-Add", value="2"),),
    remove=("x-gone",),
)


def _options(options: Iterable[base_pb2.HeaderValueOption]) -> list[tuple[str, str, int]]:
    return [(o.header.key, o.header.value, o.append_action) for o in options]


# --------------------------------------------------------------------------- headers


def test_request_header_modifier_sets_adds_and_removes() -> None:
    route = route_of(mk_rule(filters=(ir.RequestHeaderFilter(modifier=MODIFIER),)))
    assert _options(route.request_headers_to_add) == [
        ("X-Set", "1", OVERWRITE),
        ("X-Add", "2", APPEND),
    ]
    assert list(route.request_headers_to_remove) == ["x-gone"]
    assert len(route.response_headers_to_add) == 0


def test_response_header_modifier_goes_on_response_headers() -> None:
    route = route_of(mk_rule(filters=(ir.ResponseHeaderFilter(modifier=MODIFIER),)))
    assert _options(route.response_headers_to_add) == [
        ("X-Set", "1", OVERWRITE),
        ("X-Add", "2", APPEND),
    ]
    assert list(route.response_headers_to_remove) == ["x-gone"]
    assert len(route.request_headers_to_add) == 0


def test_backend_header_filters_go_on_the_cluster_weight() -> None:
    """Conf HTTPRouteRequestHeaderModifierBackendWeights: each backend sets its own header."""
    backends = tuple(
        mk_backend(
            name,
            weight=10,
            index=i,
            filters=(
                ir.RequestHeaderFilter(
                    modifier=ir.HeaderModifier(set=(ir.Header(name="Backend", value=name),))
                ),
            ),
        )
        for i, name in enumerate(("web-v1", "web-v2"))
    )
    route = route_of(mk_rule(backends=backends))
    clusters = route.route.weighted_clusters.clusters
    assert [_options(c.request_headers_to_add) for c in clusters] == [
        [("Backend", "web-v1", OVERWRITE)],
        [("Backend", "web-v2", OVERWRITE)],
    ]
    assert len(route.request_headers_to_add) == 0


def test_backend_error_response_aborts_that_share() -> None:
    backend = mk_backend(filters=(ir.ErrorResponse(status=503, message="x"),))
    cw = route_of(mk_rule(backends=(backend,))).route.weighted_clusters.clusters[0]
    fault = fault_pb2.HTTPFault()
    cw.typed_per_filter_config["envoy.filters.http.fault"].Unpack(fault)
    assert fault.abort.http_status == 503
    assert fault.abort.percentage.numerator == 1_000_000


# --------------------------------------------------------------------------- redirects


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (301, rc.RedirectAction.MOVED_PERMANENTLY),
        (302, rc.RedirectAction.FOUND),
        (303, rc.RedirectAction.SEE_OTHER),
        (307, rc.RedirectAction.TEMPORARY_REDIRECT),
        (308, rc.RedirectAction.PERMANENT_REDIRECT),
    ],
)
def test_redirect_status_code_maps_to_response_code(status: int, code: int) -> None:
    route = route_of(mk_rule(filters=(ir.RedirectFilter(status_code=status),)))
    assert route.redirect.response_code == code


def test_redirect_scheme_host_and_port() -> None:
    redirect = ir.RedirectFilter(status_code=302, scheme="https", hostname="example.org", port=8443)
    action = route_of(mk_rule(filters=(redirect,))).redirect
    assert (action.scheme_redirect, action.host_redirect, action.port_redirect) == (
        "https",
        "example.org",
        8443,
    )


def test_redirect_without_port_omits_it() -> None:
    action = route_of(mk_rule(filters=(ir.RedirectFilter(status_code=302),))).redirect
    assert action.port_redirect == 0
    assert not action.scheme_redirect
    assert not action.host_redirect
    assert action.WhichOneof("path_rewrite_specifier") is None


# --------------------------------------------------------------------------- mirrors


def test_mirror_is_request_mirror_policy_over_a_million() -> None:
    mirror = ir.MirrorFilter(name="m", backend=mk_target("shadow"), per_million=250_000)
    policies = route_of(mk_rule(filters=(mirror,))).route.request_mirror_policies
    assert len(policies) == 1
    assert policies[0].cluster == "shop/shadow:80"
    fraction = policies[0].runtime_fraction.default_value
    assert (fraction.numerator, fraction.denominator) == (250_000, fraction.MILLION)


def test_mirror_to_an_invalid_backend_is_not_configured() -> None:
    mirror = ir.MirrorFilter(name="m", backend=mk_invalid(), per_million=1_000_000)
    assert len(route_of(mk_rule(filters=(mirror,))).route.request_mirror_policies) == 0


# --------------------------------------------------------------------------- fault


def _fault(
    *, delay: ir.FaultDelay | None = None, abort: ir.FaultAbort | None = None
) -> ir.FaultInjection:
    source = mk_source("chaos", kind="FaultInjection")
    return ir.FaultInjection(name="f", source=source, delay=delay, abort=abort)


def test_fault_delay_and_http_abort_are_per_route_http_fault() -> None:
    fault = _fault(
        delay=ir.FaultDelay(duration_ms=1500, per_million=100_000),
        abort=ir.FaultAbort(per_million=500_000, http_status=503),
    )
    route = route_of(mk_rule(fault=fault))
    got = fault_pb2.HTTPFault()
    assert route.typed_per_filter_config["envoy.filters.http.fault"].Unpack(got)
    assert got.delay.fixed_delay.ToMilliseconds() == 1500
    assert (got.delay.percentage.numerator, got.delay.percentage.denominator) == (100_000, 2)
    assert got.abort.http_status == 503
    assert got.abort.percentage.numerator == 500_000


def test_fault_grpc_abort() -> None:
    fault = _fault(abort=ir.FaultAbort(per_million=1_000_000, grpc_status=14))
    got = fault_pb2.HTTPFault()
    route_of(mk_rule(fault=fault)).typed_per_filter_config["envoy.filters.http.fault"].Unpack(got)
    assert got.abort.WhichOneof("error_type") == "grpc_status"
    assert got.abort.grpc_status == 14
    assert not got.HasField("delay")


# --------------------------------------------------------------------------- CORS


def test_cors_is_an_optional_per_route_cors_policy() -> None:
    cors = ir.CorsFilter(
        allow_origins=("https://a.example", "https://*.example.org"),
        allow_methods=("GET", "PUT"),
        allow_headers=("x-a",),
        expose_headers=("x-b",),
        allow_credentials=True,
        max_age_s=60,
    )
    route = route_of(mk_rule(filters=(cors,)))
    wrapper = rc.FilterConfig()
    assert route.typed_per_filter_config["envoy.filters.http.cors"].Unpack(wrapper)
    assert wrapper.is_optional
    policy = cors_pb2.CorsPolicy()
    assert wrapper.config.Unpack(policy)
    assert policy.allow_origin_string_match[0].exact == "https://a.example"
    assert policy.allow_origin_string_match[1].safe_regex.regex == r"https://.*\.example\.org"
    assert (policy.allow_methods, policy.allow_headers, policy.expose_headers) == (
        "GET,PUT",
        "x-a",
        "x-b",
    )
    assert (policy.max_age, policy.allow_credentials.value) == ("60", True)


# --------------------------------------------------------------------------- backend actions


def _backend_config(cw: rc.WeightedCluster.ClusterWeight) -> rc.FilterConfig:
    wrapper = rc.FilterConfig()
    assert cw.typed_per_filter_config["turnout.filters.http.backend"].Unpack(wrapper)
    return wrapper


def test_backend_redirect_is_an_optional_redirect_action_on_the_cluster_weight() -> None:
    """Envoy's ClusterWeight has no redirect: it travels under Turnout's key, optional, so
    Envoy and proxyless gRPC ignore it (docs/xds.md "Backend filters")."""
    redirect = ir.RedirectFilter(status_code=301, hostname="moved.example", port=8080)
    route = route_of(mk_rule(backends=(mk_backend(filters=(redirect,)),)))
    (cw,) = route.route.weighted_clusters.clusters
    wrapper = _backend_config(cw)
    assert wrapper.is_optional
    action = rc.RedirectAction()
    assert wrapper.config.Unpack(action)
    assert (action.host_redirect, action.port_redirect, action.response_code) == (
        "moved.example",
        8080,
        rc.RedirectAction.MOVED_PERMANENTLY,
    )
    assert route.WhichOneof("action") == "route"


def test_backend_path_rewrite_is_a_route_action_with_only_the_rewrite() -> None:
    rewrite = ir.URLRewriteFilter(
        hostname="h.example", path=ir.ReplacePrefix(prefix="/api", replacement="/v2")
    )
    (cw,) = route_of(
        mk_rule(backends=(mk_backend(filters=(rewrite,)),))
    ).route.weighted_clusters.clusters
    assert cw.host_rewrite_literal == "h.example"
    action = rc.RouteAction()
    assert _backend_config(cw).config.Unpack(action)
    assert [f.name for f, _ in action.ListFields()] == ["regex_rewrite"]
    assert (action.regex_rewrite.pattern.regex, action.regex_rewrite.substitution) == (
        "^/api",
        "/v2",
    )


@pytest.mark.parametrize(
    "rewrite",
    [
        pytest.param(ir.URLRewriteFilter(hostname="h.example"), id="hostname-only"),
        pytest.param(
            ir.URLRewriteFilter(path=ir.ReplacePrefix(prefix="/", replacement="")),
            id="root-prefix-to-nothing",
        ),
    ],
)
def test_a_backend_rewrite_that_keeps_the_path_adds_no_config(rewrite: ir.URLRewriteFilter) -> None:
    (cw,) = route_of(
        mk_rule(backends=(mk_backend(filters=(rewrite,)),))
    ).route.weighted_clusters.clusters
    assert "turnout.filters.http.backend" not in cw.typed_per_filter_config
