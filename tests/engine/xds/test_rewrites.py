"""HTTPROUTE-SEMANTICS §7.4 (ReplacePrefixMatch) and ReplaceFullPath, checked end to end: the
emitted `prefix_rewrite`/`regex_rewrite` is applied with Envoy's semantics (envoy_semantics.py)
and must give the table's result, for URLRewrite and for RequestRedirect alike."""

from __future__ import annotations

import pytest

from tests.engine.xds.builders import mk_backend, mk_rule, route_for, route_of
from tests.engine.xds.envoy_semantics import rewritten_path
from tests.semantics import REPLACE_PREFIX_TABLE
from turnout.engine import ir

# (request, prefix, replace, result): every row of the §7.4 table, then Conf HTTPRouteRewritePath.
SECTION_7_4 = [
    *REPLACE_PREFIX_TABLE,
    # The "/" prefix (matched as `prefix: "/"`): rest is the whole path.
    ("/foo/bar", "/", "/xyz", "/xyz/foo/bar"),
    ("/", "/", "/xyz", "/xyz/"),
    ("/foo", "/", "/", "/foo"),
    ("/foo", "/", "", "/foo"),
    # Regex metacharacters in the prefix are literal.
    ("/v1.0/x", "/v1.0", "", "/x"),
]


def _rule_with(filter_: ir.Filter, prefix: str) -> ir.Rule:
    return mk_rule(ir.PrefixPath(value=prefix), filters=(filter_,))


@pytest.mark.parametrize(
    ("request_path", "prefix", "replace", "expected"),
    SECTION_7_4,
    ids=[f"{r}|{p}|{v or 'empty'}" for r, p, v, _ in SECTION_7_4],
)
def test_replace_prefix_match_rewrite_reproduces_section_7_4(
    request_path: str, prefix: str, replace: str, expected: str
) -> None:
    rewrite = ir.URLRewriteFilter(path=ir.ReplacePrefix(prefix=prefix, replacement=replace))
    route = route_for(_rule_with(rewrite, prefix), request_path)
    assert rewritten_path(route, request_path) == expected


@pytest.mark.parametrize(
    ("request_path", "prefix", "replace", "expected"),
    SECTION_7_4,
    ids=[f"{r}|{p}|{v or 'empty'}" for r, p, v, _ in SECTION_7_4],
)
def test_replace_prefix_match_redirect_reproduces_section_7_4(
    request_path: str, prefix: str, replace: str, expected: str
) -> None:
    redirect = ir.RedirectFilter(
        status_code=302, path=ir.ReplacePrefix(prefix=prefix, replacement=replace)
    )
    route = route_for(_rule_with(redirect, prefix), request_path)
    assert route.HasField("redirect")
    assert rewritten_path(route, request_path) == expected


def test_empty_replacement_uses_regex_rewrite_never_double_slash() -> None:
    rewrite = ir.URLRewriteFilter(path=ir.ReplacePrefix(prefix="/foo", replacement="/"))
    action = route_of(_rule_with(rewrite, "/foo")).route
    assert not action.prefix_rewrite
    assert action.regex_rewrite.pattern.regex == "^/foo/?"
    assert action.regex_rewrite.substitution == "/"


def test_non_empty_replacement_uses_one_anchored_regex_for_both_routes() -> None:
    """A PathPrefix is two routes (`path: P`, `prefix: P/`); one `^P` regex serves both,
    where a `prefix_rewrite` would have to differ between them."""
    rewrite = ir.URLRewriteFilter(path=ir.ReplacePrefix(prefix="/foo/", replacement="/xyz/"))
    for path in ("/foo", "/foo/bar"):
        action = route_for(_rule_with(rewrite, "/foo"), path).route
        assert not action.prefix_rewrite
        assert action.regex_rewrite.pattern.regex == "^/foo"
        assert action.regex_rewrite.substitution == "/xyz"


def test_replace_full_path_rewrite_is_whole_path_regex() -> None:
    """Conf HTTPRouteRewritePath: ReplaceFullPath `/full-path-replacement`."""
    rewrite = ir.URLRewriteFilter(path=ir.ReplaceFullPath(value="/full-path-replacement"))
    route = route_for(_rule_with(rewrite, "/full"), "/full/path/original")
    assert route.route.regex_rewrite.pattern.regex == "^.*$"
    assert rewritten_path(route, "/full/path/original") == "/full-path-replacement"


def test_replace_full_path_redirect_is_path_redirect() -> None:
    redirect = ir.RedirectFilter(status_code=301, path=ir.ReplaceFullPath(value="/new"))
    route = route_for(_rule_with(redirect, "/old"), "/old/x")
    assert route.redirect.path_redirect == "/new"
    assert rewritten_path(route, "/old/x") == "/new"


def test_hostname_rewrite_is_host_rewrite_literal() -> None:
    """Conf HTTPRouteRewriteHost: the backend sees Host `one.example.org`."""
    route = route_of(mk_rule(filters=(ir.URLRewriteFilter(hostname="one.example.org"),)))
    assert route.route.host_rewrite_literal == "one.example.org"
    assert not route.route.prefix_rewrite


def test_backend_hostname_rewrite_goes_on_the_cluster_weight() -> None:
    backend = mk_backend(filters=(ir.URLRewriteFilter(hostname="b.example.org"),))
    route = route_of(mk_rule(backends=(backend,)))
    assert route.route.weighted_clusters.clusters[0].host_rewrite_literal == "b.example.org"
    assert not route.route.host_rewrite_literal
