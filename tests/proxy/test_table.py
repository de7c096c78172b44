"""Building the runtime table from xDS: actions, policies, clusters and every rejection."""

from __future__ import annotations

from collections import Counter

import pytest
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from tests.proxy.builders import (
    LISTENER,
    mk_backend,
    mk_cla,
    mk_cluster,
    mk_fault,
    mk_gateway_listener,
    mk_listener,
    mk_match,
    mk_retry,
    mk_route,
    mk_route_config,
    mk_table,
    mk_vhost,
    service_domains,
    wrap_bool,
)
from turnout.proxy import (
    NO_LISTENER,
    NO_ROUTE,
    DirectResponse,
    Forward,
    RequestInfo,
    RuntimeTable,
    TableError,
)

GET = RequestInfo(method="GET", authority="web.shop:80", path="/")


def test_weighted_pick_uses_cumulative_weights_and_skips_zero() -> None:
    """§6: "weight 0 -> must never receive traffic"; 70/30/0 -> 0.7/0.3/0.0."""
    route = mk_route(
        backends=[
            mk_backend("shop/a:80", 70),
            mk_backend("shop/z:80", 0),
            mk_backend("shop/b:80", 30),
        ]
    )
    action = mk_table(route).decide(GET, listener=LISTENER).action
    assert isinstance(action, Forward)
    assert action.cumulative == (70, 70, 100) and action.total == 100
    counts = Counter(action.pick(r).cluster for r in range(action.total))
    assert counts == {"shop/a:80": 70, "shop/b:80": 30}
    with pytest.raises(ValueError):
        action.pick(100)


def test_invalid_backend_keeps_its_share() -> None:
    """§6: "two equal-weight refs, one invalid -> 50% 500s"."""
    route = mk_route(
        backends=[
            mk_backend("shop/a:80", 1, name="b/0"),
            mk_backend(
                "shop/missing:80",
                1,
                name="b/1",
                invalid=(500, "BackendNotFound", "service shop/missing not found"),
            ),
        ]
    )
    action = mk_table(route).decide(GET, listener=LISTENER).action
    assert isinstance(action, Forward)
    good, bad = action.pick(0), action.pick(1)
    assert good.invalid is None and good.name == "b/0"
    assert bad.cluster == "turnout/invalid" and bad.name == "b/1"
    assert bad.invalid is not None and (bad.invalid.status, bad.invalid.reason) == (
        500,
        "BackendNotFound",
    )


def test_no_match_unknown_host_and_unknown_listener_answer_404() -> None:
    table = mk_table(mk_route("/only"), domains=service_domains())
    assert table.decide(GET, listener=LISTENER) is NO_ROUTE
    assert (
        table.decide(RequestInfo(method="GET", authority="other", path="/only"), listener=LISTENER)
        is NO_ROUTE
    )
    assert table.decide(GET, listener="nope:80") is NO_LISTENER
    assert isinstance(NO_ROUTE.action, DirectResponse) and NO_ROUTE.action.status == 404


def test_direct_response_route() -> None:
    d = mk_table(mk_route(direct_status=500, direct_body="no backend")).decide(
        GET, listener=LISTENER
    )
    assert d.action == DirectResponse(status=500, body="no backend")


def test_route_policies_are_decoded() -> None:
    cors = cors_pb2.CorsPolicy(
        allow_origin_string_match=[
            string_pb2.StringMatcher(exact="https://a.example"),
            string_pb2.StringMatcher(
                safe_regex=regex_pb2.RegexMatcher(regex=r"https://.*\.b\.example")
            ),
        ],
        allow_methods="GET, POST",
        max_age="5",
        allow_credentials=wrap_bool(True),
    )
    route = mk_route(
        timeout_ms=1500,
        retry=mk_retry(attempts=3, codes=(500, 503), backoff_ms=50, per_try_ms=200),
        fault=mk_fault(delay_ms=100, delay_pm=500_000, abort_status=503, abort_pm=10_000),
        mirrors=[("shop/mirror:80", 250_000)],
        cors=cors,
    )
    d = mk_table(route).decide(GET, listener=LISTENER)
    assert (d.request_timeout_ms, d.per_try_timeout_ms) == (1500, 200)
    assert d.retry is not None
    assert (d.retry.attempts, d.retry.codes, d.retry.backoff_base_ms, d.retry.backoff_max_ms) == (
        3,
        frozenset({500, 503}),
        50,
        500,
    )
    assert "retriable-status-codes" in d.retry.retry_on
    assert d.fault is not None
    assert (
        d.fault.delay_ms,
        d.fault.delay_per_million,
        d.fault.abort_http_status,
        d.fault.abort_per_million,
    ) == (100, 500_000, 503, 10_000)
    assert [(m.cluster, m.per_million) for m in d.mirrors] == [("shop/mirror:80", 250_000)]
    assert (
        d.cors is not None and d.cors.allow_methods == ("GET", "POST") and d.cors.allow_credentials
    )
    assert any(p.fullmatch("https://x.b.example") for p in d.cors.allow_origins)


def test_zero_timeout_means_none_and_grpc_abort() -> None:
    d = mk_table(mk_route(fault=mk_fault(grpc=14, abort_pm=1_000_000))).decide(
        GET, listener=LISTENER
    )
    assert d.request_timeout_ms is None and d.retry is None
    assert d.fault is not None and (d.fault.abort_grpc_status, d.fault.abort_http_status) == (
        14,
        None,
    )


def test_clusters_and_endpoints() -> None:
    rcfg = mk_route_config(LISTENER, [mk_vhost([mk_route()])])
    cla = mk_cla("shop/web:80", [("10.0.0.1", 8080, True), ("10.0.0.2", 8080, False)], zone="z1")
    table = RuntimeTable.from_xds(
        [mk_listener()],
        [rcfg],
        clusters=[mk_cluster("shop/web:80")],
        load_assignments=[cla, mk_cla("gone/x:1", [])],
    )
    info = table.clusters["shop/web:80"]
    assert info.endpoints_known and [(e.address, e.healthy, e.zone) for e in info.endpoints] == [
        ("10.0.0.1", True, "z1"),
        ("10.0.0.2", False, "z1"),
    ]


def test_gateway_listener_filter_chain() -> None:
    name = "gateway/infra/gw:8080"
    vh = mk_vhost([mk_route(mk_match("gw/m", prefix="/"))], domains=["foo.example.com"])
    rcfg = mk_route_config(name, [vh])
    table = RuntimeTable.from_xds(
        [mk_gateway_listener(name, 8080)], [rcfg], clusters=[mk_cluster("shop/web:80")]
    )
    d = table.decide(
        RequestInfo(method="GET", authority="foo.example.com:8080", path="/x"), listener=name
    )
    assert d.route is not None and d.route.name == "gw/m"


def _rejects(match: str, **kw: object) -> None:
    with pytest.raises(TableError, match=match):
        mk_table(**kw)  # type: ignore[arg-type]


def test_invalid_regex_is_rejected_naming_the_route_and_field() -> None:
    route = mk_route(mk_match("bad/match/0", regex="/(unclosed"))
    with pytest.raises(TableError) as err:
        mk_table(route)
    assert err.value.field == "match.safe_regex.regex"
    assert '"bad/match/0"' in err.value.resource and "RouteConfiguration" in err.value.resource


def test_missing_route_configuration_is_rejected() -> None:
    with pytest.raises(TableError, match='RouteConfiguration "elsewhere" not found') as err:
        RuntimeTable.from_xds([mk_listener(LISTENER, "elsewhere")], [])
    assert err.value.resource == f'Listener "{LISTENER}"'


def test_unknown_cluster_is_rejected() -> None:
    rcfg = mk_route_config(LISTENER, [mk_vhost([mk_route()])])
    with pytest.raises(TableError, match='cluster "shop/web:80" not found'):
        RuntimeTable.from_xds([mk_listener()], [rcfg], clusters=[])


def test_router_must_be_last() -> None:
    rcfg = mk_route_config(LISTENER, [mk_vhost([mk_route()])])
    lst = mk_listener(filters=("envoy.filters.http.router", "envoy.filters.http.fault"))
    with pytest.raises(TableError, match="must be last"):
        RuntimeTable.from_xds([lst], [rcfg], clusters=[mk_cluster("shop/web:80")])


def test_order_contradicting_precedence_is_rejected() -> None:
    """The index relies on docs/xds.md's order; a shadowed route must not be silently rerouted."""
    routes = [mk_route(mk_match("short", prefix="/a")), mk_route(mk_match("long", prefix="/a/b"))]
    with pytest.raises(TableError, match="shadows it"):
        mk_table(*routes)
    with pytest.raises(TableError, match="regex routes must come last"):
        mk_table(mk_route(mk_match("re", regex=".*")), mk_route(mk_match("exact", exact="/x")))
    with pytest.raises(TableError, match="Exact /a/b is listed after PathPrefix /a"):
        mk_table(mk_route(mk_match("p", prefix="/a")), mk_route(mk_match("e", exact="/a/b")))


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        pytest.param(
            lambda r: r.metadata.filter_metadata.clear(), "missing", id="missing-metadata"
        ),
        pytest.param(
            lambda r: r.route.weighted_clusters.clusters[0].weight.Clear(),
            "all weights are zero",
            id="zero-weights",
        ),
        pytest.param(
            lambda r: r.match.headers.add(name="x", present_match=False),
            "unsupported header matcher",
            id="bad-header-matcher",
        ),
        pytest.param(
            lambda r: setattr(r.route.retry_policy, "retry_on", "bogus"),
            "unknown conditions",
            id="bad-retry-on",
        ),
        pytest.param(
            lambda r: r.match.headers.add(
                name="x", string_match=string_pb2.StringMatcher(prefix="a")
            ),
            "unsupported string matcher",
            id="prefix-string-matcher",
        ),
        pytest.param(
            lambda r: setattr(r.match, "prefix", "/ab"), "want '/' or a prefix", id="plain-prefix"
        ),
    ],
)
def test_unapplicable_routes_are_rejected(mutate: object, match: str) -> None:
    route = mk_route()
    mutate(route)  # type: ignore[operator]
    with pytest.raises(TableError, match=match):
        mk_table(route)


def test_duplicate_and_unsupported_domains_are_rejected() -> None:
    a = mk_vhost([mk_route(mk_match("a/m"))], name="a", domains=["x.example"])
    b = mk_vhost([mk_route(mk_match("b/m"))], name="b", domains=["x.example"])
    with pytest.raises(TableError, match="duplicate domain"):
        mk_table(vhosts=[a, b])
    c = mk_vhost([mk_route(mk_match("c/m"))], name="c", domains=["foo.*"])
    with pytest.raises(TableError, match="unsupported domain"):
        mk_table(vhosts=[c])


def test_path_and_prefix_pair_is_fused_back_into_one_path_prefix_route() -> None:
    """docs/xds.md emits PathPrefix /api as `path: /api` + `prefix: /api/`; the runtime table
    holds one element-wise PathPrefix route again, so explain shows what the user wrote."""
    from tests.proxy.builders import split_prefix_routes

    table = mk_table(
        *split_prefix_routes([mk_route("/api", name="m/api"), mk_route("/", name="m/root")])
    )
    for path, want in (("/api", "m/api"), ("/api/x", "m/api"), ("/apix", "m/root")):
        request = RequestInfo(method="GET", authority="web", path=path)
        assert table.decide(request, listener=LISTENER).route.name == want  # type: ignore[union-attr]
        verdicts = table.explain(request, listener=LISTENER).verdicts
        assert [v.route.name for v in verdicts] == ["m/api", "m/root"]
    winner = table.explain(
        RequestInfo(method="GET", authority="web", path="/api/x"), listener=LISTENER
    )
    assert "PathPrefix /api" in winner.verdicts[0].reason


def test_a_pair_with_different_actions_is_not_fused() -> None:
    from tests.proxy.builders import split_prefix_routes

    exact, below = split_prefix_routes([mk_route("/api", name="m/api")])
    below.route.timeout.FromMilliseconds(500)
    table = mk_table(exact, below)
    verdicts = table.explain(
        RequestInfo(method="GET", authority="web", path="/api/x"), listener=LISTENER
    ).verdicts
    assert len(verdicts) == 2
