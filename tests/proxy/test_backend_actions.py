"""A backend's own RequestRedirect and URLRewrite (HTTPROUTE-SEMANTICS §7.9), read back from
`typed_per_filter_config["turnout.filters.http.backend"]` on its ClusterWeight (docs/xds.md
"Backend filters"): first the translator's own output for the golden case, then the
encoding's edge cases by hand."""

from __future__ import annotations

import pytest
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2

from tests.conftest import GOLDEN
from tests.proxy.builders import mk_backend, mk_redirect, mk_route, mk_table
from turnout.engine.pipeline import compile_files
from turnout.engine.xds import translate
from turnout.proxy import (
    Backend,
    Decision,
    DirectResponse,
    Forward,
    Redirect,
    RequestInfo,
    RuntimeTable,
    TableError,
    apply_request_filters,
    redirect_location,
)
from turnout.proxy.mutations import FullPath, PrefixReplace, RegexReplace

CASE = GOLDEN / "compile" / "httproute-backend-redirect-rewrite.in.yaml"
LISTENER = "web.shop.svc.cluster.local:8080"
KEY = "turnout.filters.http.backend"


@pytest.fixture(scope="module")
def golden_table() -> RuntimeTable:
    res = translate(compile_files([CASE]).result.table)
    return RuntimeTable.from_xds(
        res.listeners,
        res.route_configs,
        clusters=res.clusters,
        load_assignments=res.load_assignments,
    )


def _decide(table: RuntimeTable, target: str) -> tuple[Decision, RequestInfo, Forward]:
    request = RequestInfo.from_target("GET", LISTENER, target)
    decision = table.decide(request, listener=LISTENER)
    assert isinstance(decision.action, Forward)
    return decision, request, decision.action


def test_the_split_serves_one_share_and_redirects_the_other(golden_table: RuntimeTable) -> None:
    decision, request, forward = _decide(golden_table, "/shop/cart?id=7")
    served, moved = forward.backends
    assert (served.weight, moved.weight) == (50, 50)
    assert served.redirect is None and served.local is None
    up = apply_request_filters(decision, request, served)
    assert (up.authority, up.path_and_query) == ("store.example", "/store/cart?id=7")
    assert moved.local is moved.redirect
    assert moved.redirect == Redirect(
        status=301, host="moved.example", port=8080, path=moved.redirect.path
    )
    location = redirect_location(decision, request, "http", moved)
    assert location == "http://moved.example:8080/new/cart?id=7"


def test_the_prefix_itself_is_replaced_on_both_routes_of_a_prefix(
    golden_table: RuntimeTable,
) -> None:
    """`/shop` is matched by the `path: /shop` route, `/shop/...` by `prefix: /shop/`."""
    decision, request, forward = _decide(golden_table, "/shop")
    served, moved = forward.backends
    assert apply_request_filters(decision, request, served).path_and_query == "/store"
    assert redirect_location(decision, request, "http", moved) == "http://moved.example:8080/new"


def test_a_backend_rewrite_wins_over_the_rule_rewrite(golden_table: RuntimeTable) -> None:
    decision, request, forward = _decide(golden_table, "/full?x=1")
    rewritten, redirecting = forward.backends
    assert decision.host_rewrite == "rule.example"
    up = apply_request_filters(decision, request, rewritten)
    assert (up.authority, up.path_and_query) == ("v1.example", "/other?x=1")
    assert isinstance(rewritten.path_rewrite, RegexReplace | FullPath)
    # The redirect is built from the client's request, not from the rule's host rewrite.
    assert redirecting.redirect is not None and redirecting.redirect.scheme == "https"
    assert (
        redirect_location(decision, request, "http", redirecting)
        == f"https://{LISTENER[:-5]}/full?x=1"
    )


def test_the_root_prefix_rewrite_reads_back_as_a_prefix_replacement(
    golden_table: RuntimeTable,
) -> None:
    decision, request, forward = _decide(golden_table, "/a/b")
    (backend,) = forward.backends
    assert backend.path_rewrite == PrefixReplace(prefix="", replacement="/v1")
    assert apply_request_filters(decision, request, backend).path_and_query == "/v1/a/b"


def test_a_route_without_backend_filters_leaves_backends_plain() -> None:
    decision, _, forward = _decide_hand(mk_route("/", backends=[mk_backend("shop/a:80")]), "/")
    (backend,) = forward.backends
    assert backend == Backend(cluster="shop/a:80", name="backend/shop/a:80", weight=1)
    assert backend.local is None and not backend.rewrites
    assert decision.path_rewrite is None


# --------------------------------------------------------------------------- the encoding


def _pack(msg: object, *, optional: bool | None = True) -> any_pb2.Any:
    inner = any_pb2.Any()
    inner.Pack(msg)  # type: ignore[arg-type]
    if optional is None:
        return inner  # bare, not wrapped in a FilterConfig
    outer = any_pb2.Any()
    outer.Pack(rc.FilterConfig(config=inner, is_optional=optional))
    return outer


def _with(config: any_pb2.Any, prefix: str = "/api") -> rc.Route:
    cw = mk_backend("shop/a:80")
    cw[0].typed_per_filter_config[KEY].CopyFrom(config)
    return mk_route(prefix, backends=[cw])


def _decide_hand(route: rc.Route, target: str) -> tuple[Decision, RequestInfo, Forward]:
    request = RequestInfo.from_target("GET", "example.org", target)
    decision = mk_table(route).decide(request, listener="web.shop.svc.cluster.local:80")
    assert isinstance(decision.action, Forward)
    return decision, request, decision.action


def test_a_bare_redirect_action_is_read_too() -> None:
    route = _with(_pack(mk_redirect(host="b.example", code=307), optional=None))
    decision, request, forward = _decide_hand(route, "/api/x")
    (backend,) = forward.backends
    assert backend.redirect == Redirect(status=307, host="b.example")
    assert redirect_location(decision, request, "http", backend) == "http://b.example/api/x"


def test_a_prefix_rewrite_replaces_the_route_prefix() -> None:
    route = _with(_pack(rc.RouteAction(prefix_rewrite="/v2")))
    decision, request, forward = _decide_hand(route, "/api/x?q")
    (backend,) = forward.backends
    assert apply_request_filters(decision, request, backend).path_and_query == "/v2/x?q"


def test_a_rewrite_with_anything_but_a_path_is_refused() -> None:
    action = rc.RouteAction(prefix_rewrite="/v2", host_rewrite_literal="x.example")
    with pytest.raises(TableError, match="a backend rewrite sets only a path"):
        mk_table(_with(_pack(action)))


def test_an_unknown_config_is_refused_unless_optional() -> None:
    unknown = string_pb2.StringMatcher(exact="x")
    with pytest.raises(TableError, match="want a RedirectAction or RouteAction"):
        mk_table(_with(_pack(unknown, optional=False)))
    _, _, forward = _decide_hand(_with(_pack(unknown)), "/api")
    assert forward.backends[0].local is None


def test_a_disabled_config_is_no_backend_action() -> None:
    outer = any_pb2.Any()
    outer.Pack(rc.FilterConfig(disabled=True))
    _, _, forward = _decide_hand(_with(outer), "/api")
    (backend,) = forward.backends
    assert backend.redirect is None and backend.path_rewrite is None


def test_an_unsendable_redirect_host_is_refused_with_its_field() -> None:
    with pytest.raises(TableError, match=r'\["turnout.filters.http.backend"\].redirect.host'):
        mk_table(_with(_pack(mk_redirect(host="a b"))))


# --------------------------------------------------------------------------- backend aborts


def _abort(status: int, per_million: int) -> any_pb2.Any:
    fault = fault_pb2.HTTPFault()
    fault.abort.http_status = status
    fault.abort.percentage.numerator = per_million
    fault.abort.percentage.denominator = percent_pb2.FractionalPercent.MILLION
    packed = any_pb2.Any()
    packed.Pack(fault)
    return packed


def test_a_real_backend_with_a_full_abort_answers_its_share() -> None:
    """docs/xds.md: a backend-level ErrorResponse (an unresolved ExtensionRef, which "MUST
    NOT be skipped") is a 100% abort on its ClusterWeight; the share answers it."""
    cw = mk_backend("shop/a:80")
    cw[0].typed_per_filter_config["envoy.filters.http.fault"].CopyFrom(_abort(500, 1_000_000))
    _, _, forward = _decide_hand(mk_route("/", backends=[cw]), "/")
    (backend,) = forward.backends
    assert backend.abort == DirectResponse(status=500, cause="invalid filter")
    assert backend.local is backend.abort and backend.invalid is None


def test_a_partial_abort_on_a_weighted_cluster_is_refused() -> None:
    cw = mk_backend("shop/a:80")
    cw[0].typed_per_filter_config["envoy.filters.http.fault"].CopyFrom(_abort(500, 500_000))
    with pytest.raises(TableError, match="must abort 100%"):
        mk_table(mk_route("/", backends=[cw]))
