"""Each built-in rule, table-driven; every case also runs through the reference CRDs
(jsonschema + cel-python) to show the two paths agree on field and message."""

from __future__ import annotations

from functools import cache

import pytest

from tests.conftest import GATEWAY_API, require_reference
from tests.engine.validate.builders import (
    Raw,
    errors_builtin,
    errors_crds,
    mk_backend,
    mk_filter,
    mk_gateway,
    mk_listener,
    mk_redirect,
    mk_route,
    mk_rule,
)
from turnout.engine.validate import CRDSet, load_crds

RHM = {"set": [{"name": "a", "value": "1"}]}
MIRROR = {"backendRef": {"name": "m", "port": 80}}
PREFIX = [{"path": {"type": "PathPrefix", "value": "/a"}}]
EXACT = [{"path": {"type": "Exact", "value": "/a"}}]
CERT = {"certificateRefs": [{"name": "c"}]}


def _grpc(*rules: Raw) -> Raw:
    return mk_route(*rules, kind="GRPCRoute")


def _path(value: str, kind: str = "PathPrefix") -> Raw:
    return mk_route(mk_rule(matches=[{"path": {"type": kind, "value": value}}]))


INVALID = [
    # spec.parentRefs
    pytest.param(
        mk_route(mk_rule(), parent_refs=[{"name": "gw"}, {"name": "gw", "sectionName": "a"}]),
        "spec.parentRefs",
        "sectionName or port must be specified",
        id="parent-twice-one-section",
    ),
    pytest.param(
        mk_route(mk_rule(), parent_refs=[{"name": "gw", "port": 80}, {"name": "gw", "port": 80}]),
        "spec.parentRefs",
        "sectionName or port must be unique",
        id="parent-same-port-twice",
    ),
    # spec.rules
    pytest.param(
        mk_route(
            *[mk_rule(matches=EXACT * 64), mk_rule(matches=EXACT * 64), mk_rule(matches=EXACT)]
        ),
        "spec.rules",
        "total number of matches",
        id="more-than-128-matches",
    ),
    pytest.param(
        mk_route(mk_rule(name="a"), mk_rule(name="a")),
        "spec.rules",
        "Rule name must be unique",
        id="rule-name-repeated",
    ),
    # spec.rules[i]
    pytest.param(
        mk_route(
            mk_rule(
                filters=[mk_filter("RequestRedirect", requestRedirect={})], backends=[mk_backend()]
            )
        ),
        "spec.rules[0]",
        "RequestRedirect filter must not be used together",
        id="redirect-with-backends",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                matches=EXACT,
                filters=[
                    mk_filter(
                        "RequestRedirect", requestRedirect=mk_redirect("ReplacePrefixMatch", "/b")
                    )
                ],
            )
        ),
        "spec.rules[0]",
        "When using RequestRedirect filter with path.replacePrefixMatch",
        id="redirect-prefix-needs-prefix-match",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                matches=PREFIX * 2,
                filters=[
                    mk_filter("URLRewrite", urlRewrite=mk_redirect("ReplacePrefixMatch", "/b"))
                ],
            )
        ),
        "spec.rules[0]",
        "When using URLRewrite filter with path.replacePrefixMatch",
        id="rewrite-prefix-needs-exactly-one-match",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                matches=EXACT,
                backends=[
                    mk_backend(
                        filters=[
                            mk_filter(
                                "URLRewrite", urlRewrite=mk_redirect("ReplacePrefixMatch", "/b")
                            )
                        ]
                    )
                ],
            )
        ),
        "spec.rules[0]",
        "Within backendRefs, When using URLRewrite filter",
        id="backend-rewrite-prefix-needs-prefix-match",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                matches=EXACT,
                backends=[
                    mk_backend(
                        filters=[
                            mk_filter(
                                "RequestRedirect",
                                requestRedirect=mk_redirect("ReplacePrefixMatch", "/b"),
                            )
                        ]
                    )
                ],
            )
        ),
        "spec.rules[0]",
        "Within backendRefs, when using RequestRedirect filter",
        id="backend-redirect-prefix-needs-prefix-match",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                backends=[
                    mk_backend(
                        filters=[
                            mk_filter("RequestRedirect", requestRedirect={}),
                            mk_filter("URLRewrite", urlRewrite={}),
                        ]
                    )
                ]
            )
        ),
        "spec.rules[0].backendRefs[0].filters",
        "either httpRouteFilterRequestRedirect or",
        id="backend-redirect-and-rewrite",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                backends=[
                    mk_backend(
                        filters=[mk_filter("RequestRedirect", requestRedirect={})] * 2,
                    )
                ]
            )
        ),
        "spec.rules[0].backendRefs[0].filters",
        "RequestRedirect filter cannot be repeated",
        id="backend-redirect-twice",
    ),
    # filters lists
    pytest.param(
        mk_route(
            mk_rule(
                filters=[
                    mk_filter("RequestRedirect", requestRedirect={}),
                    mk_filter("URLRewrite", urlRewrite={}),
                ]
            )
        ),
        "spec.rules[0].filters",
        "either httpRouteFilterRequestRedirect or",
        id="redirect-and-rewrite",
    ),
    pytest.param(
        mk_route(mk_rule(filters=[mk_filter("CORS", cors={}), mk_filter("CORS", cors={})])),
        "spec.rules[0].filters",
        "CORS filter cannot be repeated",
        id="cors-twice",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                backends=[
                    mk_backend(
                        filters=[mk_filter("ResponseHeaderModifier", responseHeaderModifier=RHM)]
                        * 2
                    )
                ]
            )
        ),
        "spec.rules[0].backendRefs[0].filters",
        "ResponseHeaderModifier filter cannot be repeated",
        id="backend-filter-twice",
    ),
    # each filter
    pytest.param(
        mk_route(mk_rule(filters=[mk_filter("RequestMirror")])),
        "spec.rules[0].filters[0]",
        "filter.requestMirror must be specified",
        id="union-member-missing",
    ),
    pytest.param(
        mk_route(mk_rule(filters=[mk_filter("RequestMirror", requestMirror=MIRROR, cors={})])),
        "spec.rules[0].filters[0]",
        "filter.cors must be nil",
        id="union-other-member-set",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                filters=[
                    mk_filter(
                        "RequestMirror",
                        requestMirror={**MIRROR, "percent": 5, "fraction": {"numerator": 1}},
                    )
                ]
            )
        ),
        "spec.rules[0].filters[0].requestMirror",
        "Only one of percent or fraction",
        id="mirror-percent-and-fraction",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                filters=[
                    mk_filter(
                        "RequestMirror",
                        requestMirror={**MIRROR, "fraction": {"numerator": 5, "denominator": 4}},
                    )
                ]
            )
        ),
        "spec.rules[0].filters[0].requestMirror.fraction",
        "numerator must be less than or equal",
        id="mirror-fraction-above-one",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                filters=[mk_filter("RequestMirror", requestMirror={"backendRef": {"name": "m"}})]
            )
        ),
        "spec.rules[0].filters[0].requestMirror.backendRef",
        "Must have port for Service reference",
        id="mirror-service-without-port",
    ),
    pytest.param(
        mk_route(mk_rule(backends=[mk_backend(port=None)])),
        "spec.rules[0].backendRefs[0]",
        "Must have port for Service reference",
        id="service-without-port",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                filters=[
                    mk_filter(
                        "URLRewrite",
                        urlRewrite=mk_redirect("ReplaceFullPath", "/x", field="replacePrefixMatch"),
                    )
                ]
            )
        ),
        "spec.rules[0].filters[0].urlRewrite.path",
        "replaceFullPath must be specified",
        id="path-modifier-type-without-field",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                filters=[
                    mk_filter(
                        "URLRewrite",
                        urlRewrite=mk_redirect("ReplaceFullPath", "/x", field="replacePrefixMatch"),
                    )
                ]
            )
        ),
        "spec.rules[0].filters[0].urlRewrite.path",
        "type must be 'ReplacePrefixMatch' when",
        id="path-modifier-field-without-type",
    ),
    pytest.param(
        mk_route(
            mk_rule(filters=[mk_filter("CORS", cors={"allowOrigins": ["*", "https://a.io"]})])
        ),
        "spec.rules[0].filters[0].cors.allowOrigins",
        "AllowOrigins cannot contain '*'",
        id="cors-star-with-other-origins",
    ),
    pytest.param(
        mk_route(mk_rule(filters=[mk_filter("CORS", cors={"allowMethods": ["*", "GET"]})])),
        "spec.rules[0].filters[0].cors.allowMethods",
        "AllowMethods cannot contain '*'",
        id="cors-star-with-other-methods",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                filters=[
                    mk_filter(
                        "ExternalAuth",
                        externalAuth={
                            "protocol": "GRPC",
                            "backendRef": {"name": "a", "port": 9},
                            "http": {},
                        },
                    )
                ]
            )
        ),
        "spec.rules[0].filters[0].externalAuth",
        "grpc must be specified when protocol",
        id="external-auth-grpc-without-grpc",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                filters=[
                    mk_filter(
                        "ExternalAuth",
                        externalAuth={
                            "protocol": "GRPC",
                            "backendRef": {"name": "a", "port": 9},
                            "http": {},
                        },
                    )
                ]
            )
        ),
        "spec.rules[0].filters[0].externalAuth",
        "protocol must be 'HTTP' when http is set",
        id="external-auth-http-block-with-grpc",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                filters=[
                    mk_filter(
                        "ExternalAuth",
                        externalAuth={"protocol": "HTTP", "backendRef": {"name": "a"}, "http": {}},
                    )
                ]
            )
        ),
        "spec.rules[0].filters[0].externalAuth.backendRef",
        "Must have port",
        id="external-auth-service-without-port",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                filters=[
                    mk_filter(
                        "RequestHeaderModifier",
                        requestHeaderModifier={
                            "add": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]
                        },
                    )
                ]
            )
        ),
        "spec.rules[0].filters[0].requestHeaderModifier.add[1]",
        'Duplicate value: {"name":"a"}',
        id="header-add-repeated",
    ),
    # matches[].path
    pytest.param(
        _path("a"), "spec.rules[0].matches[0].path", "must be an absolute path", id="path-relative"
    ),
    pytest.param(
        _path("/a//b"),
        "spec.rules[0].matches[0].path",
        "must not contain '//'",
        id="path-double-slash",
    ),
    pytest.param(
        _path("/a/./b", "Exact"),
        "spec.rules[0].matches[0].path",
        "must not contain '/./'",
        id="path-dot",
    ),
    pytest.param(
        _path("/a/../b"),
        "spec.rules[0].matches[0].path",
        "must not contain '/../'",
        id="path-dotdot",
    ),
    pytest.param(
        _path("/a%2fb"),
        "spec.rules[0].matches[0].path",
        "must not contain '%2f'",
        id="path-encoded-slash",
    ),
    pytest.param(
        _path("/a%2Fb"),
        "spec.rules[0].matches[0].path",
        "must not contain '%2F'",
        id="path-encoded-slash-upper",
    ),
    pytest.param(
        _path("/a#b"), "spec.rules[0].matches[0].path", "must not contain '#'", id="path-fragment"
    ),
    pytest.param(
        _path("/a/.."),
        "spec.rules[0].matches[0].path",
        "must not end with '/..'",
        id="path-ends-dotdot",
    ),
    pytest.param(
        _path("/a/."), "spec.rules[0].matches[0].path", "must not end with '/.'", id="path-ends-dot"
    ),
    pytest.param(
        _path("/a b"),
        "spec.rules[0].matches[0].path",
        "must only contain valid characters",
        id="path-space",
    ),
    # timeouts
    pytest.param(
        mk_route(mk_rule(timeouts={"request": "1s", "backendRequest": "1m"})),
        "spec.rules[0].timeouts",
        "backendRequest timeout cannot be longer",
        id="backend-timeout-too-long",
    ),
    # sessionPersistence
    pytest.param(
        mk_route(mk_rule(sessionPersistence={"type": "Header"})),
        "spec.rules[0].sessionPersistence",
        "header must be specified for Header type",
        id="session-header-without-header",
    ),
    pytest.param(
        mk_route(
            mk_rule(sessionPersistence={"type": "Header", "header": {"name": "x"}, "cookie": {}})
        ),
        "spec.rules[0].sessionPersistence",
        "cookie must be nil if type is not Cookie",
        id="session-cookie-with-header-type",
    ),
    pytest.param(
        mk_route(mk_rule(sessionPersistence={"cookie": {"lifetimeType": "Permanent"}})),
        "spec.rules[0].sessionPersistence",
        "AbsoluteTimeout must be specified",
        id="session-permanent-without-timeout",
    ),
    # GRPCRoute
    pytest.param(
        _grpc(mk_rule(matches=[{"method": {"type": "Exact"}}])),
        "spec.rules[0].matches[0].method",
        "One or both of 'service' or 'method'",
        id="grpc-empty-method-match",
    ),
    pytest.param(
        _grpc(mk_rule(matches=[{"method": {"service": "a-b"}}])),
        "spec.rules[0].matches[0].method",
        "service must only contain valid characters",
        id="grpc-bad-service",
    ),
    pytest.param(
        _grpc(
            mk_rule(
                filters=[mk_filter("RequestMirror", requestMirror={"backendRef": {"name": "m"}})]
            )
        ),
        "spec.rules[0].filters[0].requestMirror.backendRef",
        "Must have port",
        id="grpc-mirror-without-port",
    ),
    # Gateway
    pytest.param(
        mk_gateway(mk_listener(), mk_listener(port=81)),
        "spec.listeners",
        "Listener name must be unique",
        id="listener-name-repeated",
    ),
    pytest.param(
        mk_gateway(mk_listener(), mk_listener(port=81)),
        "spec.listeners[1]",
        'Duplicate value: {"name":"http"}',
        id="listener-list-map-duplicate",
    ),
    pytest.param(
        mk_gateway(mk_listener("a"), mk_listener("b")),
        "spec.listeners",
        "Combination of port, protocol and hostname",
        id="listener-port-protocol-repeated",
    ),
    pytest.param(
        mk_gateway(mk_listener(protocol="TLS", port=443)),
        "spec.listeners",
        "tls mode must be set for protocol TLS",
        id="tls-listener-without-tls",
    ),
    pytest.param(
        mk_gateway(mk_listener(protocol="HTTPS", port=443, tls={})),
        "spec.listeners[0].tls",
        "certificateRefs or options must be specified",
        id="terminate-without-certs",
    ),
    pytest.param(
        mk_gateway(mk_listener(), addresses=[{"value": "10.0.0.1"}, {"value": "10.0.0.1"}]),
        "spec.addresses",
        "IPAddress values must be unique",
        id="address-repeated",
    ),
    pytest.param(
        mk_gateway(mk_listener(), addresses=[{"type": "Hostname", "value": "Bad_Host"}]),
        "spec.addresses[0]",
        "Hostname value must be empty or contain only valid",
        id="address-bad-hostname",
    ),
    pytest.param(
        mk_gateway(mk_listener(), infrastructure={"labels": {"-bad": "x"}}),
        "spec.infrastructure.labels",
        "Label keys must be in the form",
        id="infrastructure-bad-label-key",
    ),
]

VALID = [
    pytest.param(
        mk_route(mk_rule(timeouts={"request": "0s", "backendRequest": "1h"})),
        id="request-0s-means-no-limit",
    ),
    pytest.param(
        mk_route(mk_rule(timeouts={"request": "1m", "backendRequest": "59s"})),
        id="backend-timeout-shorter",
    ),
    pytest.param(_path("/a/b..c/.d"), id="path-dots-inside-segments"),
    pytest.param(_path("/(a|b)//x", "RegularExpression"), id="regex-path-skips-value-rules"),
    pytest.param(
        mk_route(mk_rule(filters=[mk_filter("RequestMirror", requestMirror=MIRROR)] * 2)),
        id="mirror-may-repeat",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                matches=PREFIX,
                filters=[
                    mk_filter("URLRewrite", urlRewrite=mk_redirect("ReplacePrefixMatch", "/b"))
                ],
            )
        ),
        id="rewrite-prefix-with-one-prefix-match",
    ),
    pytest.param(
        mk_route(mk_rule(), parent_refs=[{"name": "gw", "port": 80}, {"name": "gw", "port": 81}]),
        id="parent-twice-by-port",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                backends=[mk_backend(filters=[mk_filter("RequestRedirect", requestRedirect={})])]
            )
        ),
        id="backend-redirect-is-not-a-rule-redirect-with-backends",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                backends=[
                    mk_backend(filters=[mk_filter("RequestRedirect", requestRedirect={})]),
                    mk_backend(filters=[mk_filter("URLRewrite", urlRewrite={})]),
                ]
            )
        ),
        id="redirect-and-rewrite-on-different-backends",
    ),
    pytest.param(
        mk_route(
            mk_rule(
                matches=EXACT,
                backends=[
                    mk_backend(
                        filters=[
                            mk_filter(
                                "RequestRedirect",
                                requestRedirect=mk_redirect("ReplacePrefixMatch", "/b"),
                            )
                        ]
                    ),
                    mk_backend(
                        filters=[
                            mk_filter(
                                "RequestRedirect",
                                requestRedirect=mk_redirect("ReplacePrefixMatch", "/b"),
                            )
                        ]
                    ),
                ],
            )
        ),
        # The CRD's `exists_one`: with two backendRefs using ReplacePrefixMatch the rule
        # does not fire, so the API server accepts the route; Turnout's validator agrees.
        id="backend-prefix-redirect-on-two-backends-escapes-exists-one",
    ),
    pytest.param(
        mk_route(mk_rule(backends=[mk_backend(port=None, group="example.io", kind="Bucket")])),
        id="non-service-backend-without-port",
    ),
    pytest.param(
        mk_gateway(mk_listener(protocol="TLS", port=443, tls={"mode": "Passthrough"})),
        id="tls-passthrough-listener",
    ),
    pytest.param(
        mk_gateway(mk_listener(), addresses=[{"type": "Hostname"}]), id="address-without-value"
    ),
]


@cache
def _experimental_crds() -> CRDSet:
    crds, _ = load_crds([str(GATEWAY_API / "crd" / "experimental")])
    return crds


def _found(errors: list, path: str, text: str) -> bool:  # type: ignore[type-arg]
    return any(e.pos.path == path and text in e.message for e in errors)


@pytest.mark.parametrize(("raw", "path", "text"), INVALID)
def test_builtin_rule_reports_the_crd_message_at_the_field(raw: Raw, path: str, text: str) -> None:
    errors = errors_builtin(raw)
    assert _found(errors, path, text), [str(e) for e in errors]


@pytest.mark.parametrize(("raw", "path", "text"), INVALID)
def test_crd_cel_path_reports_the_same_message_at_the_same_field(
    raw: Raw, path: str, text: str
) -> None:
    require_reference(GATEWAY_API / "crd" / "experimental")
    errors = errors_crds(raw, _experimental_crds())
    assert _found(errors, path, text), [str(e) for e in errors]


@pytest.mark.parametrize("raw", VALID)
def test_edge_case_that_the_crds_accept_passes_both_paths(raw: Raw) -> None:
    assert errors_builtin(raw) == []
    require_reference(GATEWAY_API / "crd" / "experimental")
    assert errors_crds(raw, _experimental_crds()) == []


def test_standard_channel_parent_refs_ignore_port() -> None:
    raw = mk_route(mk_rule(), parent_refs=[{"name": "gw", "port": 80}, {"name": "gw", "port": 81}])
    errors = errors_builtin(raw, channel="standard")
    assert _found(errors, "spec.parentRefs", "sectionName must be unique")


def test_forbidding_rules_use_the_forbidden_reason() -> None:
    raw = mk_route(mk_rule(filters=[mk_filter("RequestMirror", requestMirror=MIRROR, cors={})]))
    assert [e.reason for e in errors_builtin(raw)] == ["FieldValueForbidden"]
