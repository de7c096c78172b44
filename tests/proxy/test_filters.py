"""Redirects, rewrites and header filters (HTTPROUTE-SEMANTICS §7.1-§7.4, §7.9)."""

from __future__ import annotations

import pytest
from envoy.config.route.v3 import route_components_pb2 as rc

from tests.proxy.builders import LISTENER, mk_backend, mk_match, mk_redirect, mk_route, mk_table
from tests.semantics import REPLACE_PREFIX_TABLE, table_ids
from turnout.proxy import (
    Decision,
    Forward,
    Redirect,
    RequestInfo,
    apply_request_filters,
    apply_response_filters,
    redirect_location,
)


def decide(
    route: rc.Route,
    target: str,
    *,
    host: str = "example.org",
    headers: tuple[tuple[str, str], ...] = (),
) -> tuple[Decision, RequestInfo]:
    table = mk_table(route)
    request = RequestInfo.from_target("GET", host, target, headers=headers)
    return table.decide(request, listener=LISTENER), request


PREFIX_TABLE = REPLACE_PREFIX_TABLE
PREFIX_IDS = table_ids(PREFIX_TABLE)


@pytest.mark.parametrize(("path", "prefix", "replace", "want"), PREFIX_TABLE, ids=PREFIX_IDS)
def test_url_rewrite_replace_prefix_match_reproduces_the_api_table(
    path: str, prefix: str, replace: str, want: str
) -> None:
    decision, request = decide(
        mk_route(mk_match(prefix=prefix), prefix_rewrite=replace), path + "?k=v"
    )
    assert isinstance(decision.action, Forward)
    up = apply_request_filters(decision, request, decision.action.pick(0))
    # "Query strings are preserved by rewrites."
    assert up.path_and_query == f"{want}?k=v"


@pytest.mark.parametrize(("path", "prefix", "replace", "want"), PREFIX_TABLE, ids=PREFIX_IDS)
def test_redirect_replace_prefix_match_reproduces_the_api_table(
    path: str, prefix: str, replace: str, want: str
) -> None:
    redirect = mk_redirect(prefix=replace, matched=prefix, port=0)
    decision, request = decide(mk_route(mk_match(prefix=prefix), redirect=redirect), path)
    assert redirect_location(decision, request, "http") == f"http://example.org{want}"


REDIRECTS = [
    # "listener 8080, no scheme/port -> http://example.org:8080/..." (port resolved by the compiler)
    pytest.param(
        mk_redirect(port=8080), "http", "http://example.org:8080/a/b?x=1", id="listener-port-kept"
    ),
    # "scheme: https + no port -> no port" (compiler: None = omit, or the well-known 443)
    pytest.param(
        mk_redirect(scheme="https"), "http", "https://example.org/a/b?x=1", id="https-no-port"
    ),
    pytest.param(
        mk_redirect(scheme="https", port=443),
        "http",
        "https://example.org/a/b?x=1",
        id="https-443-omitted",
    ),
    # "HTTPS listener + scheme: http -> http://example.org/..."
    pytest.param(
        mk_redirect(scheme="http", port=80),
        "https",
        "http://example.org/a/b?x=1",
        id="http-80-omitted",
    ),
    pytest.param(
        mk_redirect(scheme="https", port=8443),
        "http",
        "https://example.org:8443/a/b?x=1",
        id="port-8443-kept",
    ),
    # "hostname: filter value, else the request Host (without port)"
    pytest.param(
        mk_redirect(host="other.example"),
        "http",
        "http://other.example/a/b?x=1",
        id="hostname-replaced",
    ),
    pytest.param(
        mk_redirect(),
        "https",
        "https://example.org/a/b?x=1",
        id="request-scheme-and-host-without-port",
    ),
    # Conf HTTPRouteRedirectPath: ReplaceFullPath
    pytest.param(
        mk_redirect(path="/full-path-replacement"),
        "http",
        "http://example.org/full-path-replacement?x=1",
        id="full-path",
    ),
    pytest.param(mk_redirect(code=301), "http", "http://example.org/a/b?x=1", id="code-301"),
]


@pytest.mark.parametrize(("redirect", "scheme", "want"), REDIRECTS)
def test_redirect_location(redirect: rc.RedirectAction, scheme: str, want: str) -> None:
    decision, request = decide(
        mk_route(mk_match(prefix="/a"), redirect=redirect), "/a/b?x=1", host="example.org:8080"
    )
    assert redirect_location(decision, request, scheme) == want


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirect_status_codes(code: int) -> None:
    decision, _ = decide(mk_route(redirect=mk_redirect(code=code)), "/")
    assert isinstance(decision.action, Redirect)
    assert decision.action.status == code


def test_redirect_strip_query_drops_the_query() -> None:
    r = mk_redirect()
    r.strip_query = True
    decision, request = decide(mk_route(redirect=r), "/p?x=1")
    assert redirect_location(decision, request, "http") == "http://example.org/p"


def test_redirect_location_refuses_a_forward_decision() -> None:
    decision, request = decide(mk_route(), "/")
    with pytest.raises(ValueError, match="not a redirect"):
        redirect_location(decision, request, "http")


def test_full_path_rewrite_keeps_query_and_host_rewrite_replaces_authority() -> None:
    route = mk_route(
        mk_match(prefix="/one"), full_path_rewrite="/two", host_rewrite="one.example.org"
    )
    decision, request = decide(
        route, "/one/x?q=1", host="rewrite.example", headers=(("Host", "rewrite.example"),)
    )
    assert isinstance(decision.action, Forward)
    up = apply_request_filters(decision, request, decision.action.pick(0))
    assert (up.authority, up.path_and_query) == ("one.example.org", "/two?q=1")
    assert ("Host", "one.example.org") in up.headers


def test_header_modifier_is_case_insensitive() -> None:
    """§7.1: "request x-header-set: original-val-set + set X-Header-Set: header-set -> backend sees
    only header-set; add onto lower-case existing -> original-val-add,header-add; remove
    X-Header-Remove removes x-header-remove"."""
    route = mk_route(
        request_set={"X-Header-Set": "header-set"},
        request_add={"X-Header-Add": "header-add"},
        request_remove=["X-Header-Remove"],
    )
    headers = (
        ("x-header-set", "original-val-set"),
        ("x-header-add", "original-val-add"),
        ("x-header-remove", "gone"),
        ("keep", "1"),
    )
    decision, request = decide(route, "/", headers=headers)
    assert isinstance(decision.action, Forward)
    up = apply_request_filters(decision, request, decision.action.pick(0))
    assert dict(up.headers) == {
        "keep": "1",
        "X-Header-Set": "header-set",
        "x-header-add": "original-val-add,header-add",
    }


def test_backend_filters_apply_only_to_the_picked_backend() -> None:
    """§7.9: "every request must carry the header of the backend it reached"."""
    route = mk_route(
        backends=[
            mk_backend("shop/a:80", 10, request_set={"Backend": "a"}, host_rewrite="a.example"),
            mk_backend("shop/b:80", 10, request_set={"Backend": "b"}),
        ],
        request_set={"Backend": "route"},
        host_rewrite="route.example",
    )
    decision, request = decide(route, "/")
    assert isinstance(decision.action, Forward)
    a, b = decision.action.pick(0), decision.action.pick(10)
    up_a, up_b = (apply_request_filters(decision, request, x) for x in (a, b))
    assert dict(up_a.headers)["Backend"] == "a" and up_a.authority == "a.example"
    assert dict(up_b.headers)["Backend"] == "b" and up_b.authority == "route.example"


def test_response_filters_run_route_then_backend() -> None:
    route = mk_route(
        backends=[mk_backend(response_set={"X-B": "b"})], response_set={"X-R": "r", "X-B": "route"}
    )
    decision, _ = decide(route, "/")
    assert isinstance(decision.action, Forward)
    out = apply_response_filters(
        decision, decision.action.pick(0), 200, (("x-r", "upstream"), ("other", "1"))
    )
    assert dict(out) == {"other": "1", "X-R": "r", "X-B": "b"}


def test_multidict_headers_are_accepted() -> None:
    from multidict import CIMultiDict

    route = mk_route(mk_match(prefix="/", headers={"x": "1,2"}))
    table = mk_table(route)
    request = RequestInfo(
        method="GET", authority="web", path="/", headers=CIMultiDict([("X", "1"), ("x", "2")])
    )
    decision = table.decide(request, listener=LISTENER)
    assert decision.route is not None
    assert isinstance(decision.action, Forward)
    up = apply_request_filters(decision, request, decision.action.pick(0))
    assert up.headers == (("X", "1"), ("x", "2"))


def test_regex_rewrite_translates_re2_groups() -> None:
    route = mk_route(mk_match(prefix="/api"))
    route.route.regex_rewrite.pattern.regex = r"^/api/(\w+)/(\d+)$"
    route.route.regex_rewrite.substitution = r"/v2/\2/\1"
    decision, request = decide(route, "/api/items/42?x=1")
    assert isinstance(decision.action, Forward)
    up = apply_request_filters(decision, request, decision.action.pick(0))
    assert up.path_and_query == "/v2/42/items?x=1"


def test_regex_rewrite_with_a_missing_group_is_rejected() -> None:
    from turnout.proxy import TableError

    route = mk_route(mk_match(prefix="/api"))
    route.route.regex_rewrite.pattern.regex = "^/api"
    route.route.regex_rewrite.substitution = r"/\1"
    with pytest.raises(TableError, match="refers to group 1"):
        mk_table(route)
