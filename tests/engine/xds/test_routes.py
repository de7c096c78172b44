"""Routes (docs/xds.md "RouteConfiguration"): matchers, precedence order, actions, timeouts,
retries and the `turnout` route metadata."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.config.route.v3 import route_components_pb2 as rc
from google.protobuf import json_format

from tests.conftest import GOLDEN
from tests.engine.xds.builders import (
    mk_backend,
    mk_invalid,
    mk_match,
    mk_rule,
    mk_service_parent,
    mk_table,
    mk_target,
    route_of,
    routes_of,
    translate_one,
)
from turnout.engine import config, ir
from turnout.engine.pipeline import compile_files
from turnout.engine.xds import INVALID_CLUSTER, METADATA_KEY, translate
from turnout.engine.xds.routes import match_records, route_matches_from, rule_route

# --------------------------------------------------------------------------- matchers


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        pytest.param(ir.ExactPath(value="/login"), "path", "/login", id="exact-is-path"),
        pytest.param(ir.PrefixPath(value="/"), "prefix", "/", id="root-prefix-is-prefix"),
        pytest.param(ir.PrefixPath(value="/api"), "path", "/api", id="prefix-first-route-is-path"),
        pytest.param(
            ir.PrefixPath(value="/api/"), "path", "/api", id="prefix-trailing-slash-removed"
        ),
    ],
)
def test_path_match_maps_to_path_specifier(path: ir.PathMatch, field: str, value: str) -> None:
    match = route_of(mk_rule(path)).match
    assert match.WhichOneof("path_specifier") == field
    assert getattr(match, field) == value


@pytest.mark.parametrize("value", ["/api", "/api/"])
def test_path_prefix_is_a_path_route_then_a_prefix_route_for_grpc_clients(value: str) -> None:
    """Element-wise PathPrefix `/api` == `path: /api` OR `prefix: /api/`; proxyless gRPC
    rejects `path_separated_prefix`, so both routes are emitted, same name, same action."""
    rule = mk_rule(ir.PrefixPath(value=value))
    first, second = routes_of(translate_one(rule))
    assert (first.match.path, second.match.prefix) == ("/api", "/api/")
    assert first.name == second.name == rule.matches[0].name
    assert first.route == second.route


def test_regex_path_is_safe_regex_with_google_re2() -> None:
    match = route_of(mk_rule(ir.RegexPath(pattern="/v[0-9]+/.*"))).match
    assert match.safe_regex.regex == "/v[0-9]+/.*"
    assert match.safe_regex.HasField("google_re2")


def test_headers_query_and_method_become_matchers() -> None:
    m = mk_match(
        ir.ExactPath(value="/x"),
        headers=(
            ir.HeaderMatch(name="x-env", kind="Exact", value="canary"),
            ir.HeaderMatch(name="x-user", kind="RegularExpression", value="a.*"),
        ),
        query=(
            ir.QueryMatch(name="v", kind="Exact", value="2"),
            ir.QueryMatch(name="q", kind="RegularExpression", value="[0-9]+"),
        ),
        method="POST",
    )
    match = route_of(mk_rule(matches=(m,))).match
    got_headers = [(h.name, h.string_match.WhichOneof("match_pattern")) for h in match.headers]
    assert got_headers == [(":method", "exact"), ("x-env", "exact"), ("x-user", "safe_regex")]
    assert match.headers[0].string_match.exact == "POST"
    assert match.headers[2].string_match.safe_regex.regex == "a.*"
    assert [
        (q.name, q.string_match.WhichOneof("match_pattern")) for q in match.query_parameters
    ] == [
        ("v", "exact"),
        ("q", "safe_regex"),
    ]


# --------------------------------------------------------------------------- precedence


def _order(*rules: ir.Rule) -> list[str]:
    """Route names in xDS order; the two routes of a PathPrefix (same name) count once."""
    names: list[str] = []
    for r in routes_of(translate_one(*rules)):
        if not names or names[-1] != r.name:
            names.append(r.name)
    return names


def test_exact_path_match_takes_precedence_over_prefix() -> None:
    """ "precedence must be given to the match having: Exact path match" (HTTPRouteRule)."""
    prefix = mk_rule(ir.PrefixPath(value="/login"), index=0)
    exact = mk_rule(ir.ExactPath(value="/login"), index=1)
    assert _order(prefix, exact) == [exact.matches[0].name, prefix.matches[0].name]


def test_prefix_with_largest_number_of_characters_takes_precedence() -> None:
    """ "Prefix path match with largest number of characters"."""
    short = mk_rule(ir.PrefixPath(value="/a"), index=0)
    long = mk_rule(ir.PrefixPath(value="/a/b"), index=1)
    assert _order(short, long) == [long.matches[0].name, short.matches[0].name]


def test_method_match_takes_precedence_over_none() -> None:
    """ "Method match"."""
    plain = mk_rule(index=0)
    method = mk_rule(index=1, matches=(mk_match(name="m/method", method="GET"),))
    assert _order(plain, method) == ["m/method", plain.matches[0].name]


def test_largest_number_of_header_matches_takes_precedence() -> None:
    """ "Largest number of header matches", then "Largest number of query param matches"."""
    h = (ir.HeaderMatch(name="a", kind="Exact", value="1"),)
    q = (ir.QueryMatch(name="a", kind="Exact", value="1"),)
    one_query = mk_rule(index=0, matches=(mk_match(name="m/query", query=q),))
    one_header = mk_rule(index=1, matches=(mk_match(name="m/header", headers=h),))
    assert _order(one_query, one_header) == ["m/header", "m/query"]


def test_ties_keep_rule_order_then_match_order() -> None:
    """Equal precedence: the earlier rule (tie-break order), then the earlier match."""
    first = mk_rule(ir.PrefixPath(value="/x"), ir.PrefixPath(value="/y"), index=0)
    second = mk_rule(ir.PrefixPath(value="/z"), index=1)
    assert _order(first, second) == [
        first.matches[0].name,
        first.matches[1].name,
        second.matches[0].name,
    ]


def test_route_name_is_the_match_name() -> None:
    rule = mk_rule(ir.PrefixPath(value="/a"), ir.PrefixPath(value="/b"))
    assert _order(rule) == [m.name for m in rule.matches]


# --------------------------------------------------------------------------- forward


def test_backends_are_weighted_clusters_in_ir_order() -> None:
    backends = (
        mk_backend("web-v2", weight=10, index=0),
        mk_backend("web", weight=90, index=1),
        mk_backend("web-v3", weight=0, index=2),
    )
    action = route_of(mk_rule(backends=backends)).route
    got = [(c.name, c.weight.value) for c in action.weighted_clusters.clusters]
    assert got == [("shop/web-v2:80", 10), ("shop/web:80", 90), ("shop/web-v3:80", 0)]
    assert not action.weighted_clusters.HasField("total_weight")


def test_invalid_backend_keeps_its_weight_on_the_invalid_cluster_with_a_full_abort() -> None:
    backends = (mk_backend(weight=90, index=0), mk_backend(mk_invalid(), weight=10, index=1))
    resources = translate_one(mk_rule(backends=backends))
    bad = routes_of(resources)[0].route.weighted_clusters.clusters[1]
    assert (bad.name, bad.weight.value) == (INVALID_CLUSTER, 10)
    fault = json_format.MessageToDict(bad.typed_per_filter_config["envoy.filters.http.fault"])
    assert fault["abort"] == {
        "httpStatus": 500,
        "percentage": {"numerator": 1000000, "denominator": "MILLION"},
    }
    assert INVALID_CLUSTER in [c.name for c in resources.clusters]
    assignment = next(a for a in resources.load_assignments if a.cluster_name == INVALID_CLUSTER)
    assert len(assignment.endpoints) == 0


def test_invalid_cluster_is_only_emitted_when_used() -> None:
    resources = translate_one(mk_rule())
    assert INVALID_CLUSTER not in [c.name for c in resources.clusters]


def test_route_metadata_carries_rule_source_backends_and_invalid() -> None:
    backends = (mk_backend(index=0), mk_backend(mk_invalid(status=503), index=1))
    route = route_of(mk_rule(backends=backends))
    meta = json_format.MessageToDict(route.metadata.filter_metadata[METADATA_KEY])
    assert meta == {
        "rule": "httproute/shop/web/rule/0",
        "source": "HTTPRoute/shop/web",
        "backends": ["httproute/shop/web/rule/0/backend/0", "httproute/shop/web/rule/0/backend/1"],
        "invalid": {
            "httproute/shop/web/rule/0/backend/1": {
                "status": 503,
                "reason": "BackendNotFound",
                "message": "service shop/gone not found",
                "ref": "shop/gone",
            }
        },
    }


@pytest.mark.parametrize(
    "backends",
    [
        pytest.param((), id="no-backends"),
        pytest.param((mk_backend(weight=0, index=0), mk_backend(weight=0, index=1)), id="all-zero"),
        pytest.param((mk_backend(mk_invalid(), weight=0),), id="all-zero-invalid"),
    ],
)
def test_no_usable_weight_is_a_direct_response(backends: tuple[ir.WeightedBackend, ...]) -> None:
    route = route_of(mk_rule(backends=backends))
    assert route.WhichOneof("action") == "direct_response"
    assert route.direct_response.status == config.NO_BACKEND_STATUS


def test_error_response_is_a_direct_response_with_its_status() -> None:
    error = ir.ErrorResponse(status=500, message="FaultInjection shop/chaos not found")
    route = route_of(mk_rule(filters=(error,)))
    assert route.direct_response.status == 500
    assert route.direct_response.body.inline_string == "FaultInjection shop/chaos not found"


def test_redirect_wins_over_backends() -> None:
    route = route_of(mk_rule(filters=(ir.RedirectFilter(status_code=301, scheme="https"),)))
    assert route.WhichOneof("action") == "redirect"


# --------------------------------------------------------------------------- timeouts, retries


def test_request_timeout_none_is_zero_seconds() -> None:
    """Envoy's default route timeout is 15 s; ours is none, spelled 0s."""
    action = route_of(mk_rule()).route
    assert action.HasField("timeout")
    assert action.timeout.ToMilliseconds() == 0


def test_request_and_backend_timeouts_map_to_timeout_and_per_try_timeout() -> None:
    rule = mk_rule(
        timeouts=ir.Timeouts(request_ms=2500, backend_request_ms=500),
        retry=ir.RetryPolicy(attempts=2, codes=(503,), backoff_ms=25),
    )
    action = route_of(rule).route
    assert action.timeout.ToMilliseconds() == 2500
    assert action.retry_policy.per_try_timeout.ToMilliseconds() == 500


def test_backend_timeout_without_retries_bounds_the_single_try() -> None:
    rule = mk_rule(timeouts=ir.Timeouts(request_ms=None, backend_request_ms=700))
    action = route_of(rule).route
    assert action.timeout.ToMilliseconds() == 700
    assert not action.HasField("retry_policy")


def test_retry_policy_maps_attempts_codes_and_backoff() -> None:
    rule = mk_rule(retry=ir.RetryPolicy(attempts=3, codes=(500, 503), backoff_ms=100))
    retry = route_of(rule).route.retry_policy
    assert retry.retry_on.startswith("connect-failure,reset,retriable-status-codes,")
    assert "unavailable" in retry.retry_on.split(",")
    assert retry.num_retries.value == 3
    assert list(retry.retriable_status_codes) == [500, 503]
    assert retry.retry_back_off.base_interval.ToMilliseconds() == 100
    assert retry.retry_back_off.max_interval.ToMilliseconds() == 1000


def test_zero_attempts_means_no_retry_policy() -> None:
    rule = mk_rule(retry=ir.RetryPolicy(attempts=0, codes=(503,), backoff_ms=25))
    assert not route_of(rule).route.HasField("retry_policy")


def test_zero_backoff_becomes_one_millisecond() -> None:
    rule = mk_rule(retry=ir.RetryPolicy(attempts=1, codes=(), backoff_ms=0))
    assert route_of(rule).route.retry_policy.retry_back_off.base_interval.ToMilliseconds() == 1


def test_weighted_clusters_name_clusters_that_exist() -> None:
    table = mk_table(
        mk_service_parent(mk_rule(backends=(mk_backend(mk_target("api", port=8080)),)))
    )
    resources = translate(table)
    assert [c.name for c in resources.clusters] == ["shop/api:8080"]


@pytest.mark.parametrize(
    ("codes", "grpc_names"),
    [
        pytest.param((), ["unavailable"], id="connection-errors-only"),
        pytest.param((503,), ["unavailable"], id="503-is-unavailable"),
        pytest.param((500, 504), ["deadline-exceeded", "internal", "unavailable"], id="500-504"),
        pytest.param((429, 502), ["resource-exhausted", "unavailable"], id="429-and-unmapped-502"),
    ],
)
def test_retry_on_lists_grpc_status_names_for_proxyless_clients(
    codes: tuple[int, ...], grpc_names: list[str]
) -> None:
    """gRPC clients retry only on gRPC status names; HTTP tokens stay for Envoy and us."""
    from turnout.engine.xds.routes import RETRY_ON, retry_on

    tokens = retry_on(codes).split(",")
    assert tokens[:3] == RETRY_ON.split(",")
    assert tokens[3:] == grpc_names


GOLDEN_CASES = sorted((GOLDEN / "compile").glob("*.in.yaml"))


@pytest.mark.parametrize("src", GOLDEN_CASES, ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_route_records_are_the_routes_serialized_whole(src: Path) -> None:
    """`match_records` writes match + template + name as bytes: for every rule of every golden
    case, what building each Route and serializing it (deterministic) gives."""
    table = compile_files([src]).result.table
    rules = [r for p in table.parents for v in _vhosts(p) for r in v.rules]
    for rule in rules:
        template = rule_route(rule)
        want = []
        for match in rule.matches:
            records = b""
            for path_match in route_matches_from(match):
                route = rc.Route()
                route.CopyFrom(template)
                route.name = match.name
                route.match.CopyFrom(path_match)
                records += rc.VirtualHost(routes=[route]).SerializeToString(deterministic=True)
            want.append(records)
        assert match_records(rule, template) == tuple(want), rule.name


def _vhosts(parent: ir.ServiceParent | ir.GatewayParent) -> list[ir.VirtualHost]:
    if isinstance(parent, ir.ServiceParent):
        return [parent.producer, *(c.vhost for c in parent.consumers)]
    return list(parent.vhosts)
