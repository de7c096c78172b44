"""Rewrite and redirect paths hold only what a request line and a Location can carry.

The CRD gives `replaceFullPath` and `replacePrefixMatch` a maxLength and nothing else, so
the API server stores ``/a b``; Turnout's built-in rule (`validate.filters.PATH_VALUE`)
applies the character pattern the CRD gives path matches, at every place a path modifier
can be: rule and backendRef level, URLRewrite and RequestRedirect.
"""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import GATEWAY_API, require_reference
from tests.engine.validate.builders import (
    Raw,
    errors_builtin,
    errors_crds,
    mk_backend,
    mk_filter,
    mk_redirect,
    mk_route,
    mk_rule,
)
from turnout.engine.model.httproute import HTTPPathMatch
from turnout.engine.validate import CRDSet, load_crds
from turnout.engine.validate.filters import PATH_VALUE
from turnout.engine.validate.httproute import _PATH_RULES, path_match_failures

PREFIX = [{"path": {"type": "PathPrefix", "value": "/a"}}]


def _rewrite(kind: str, value: str, *, backend: bool = False, redirect: bool = False) -> Raw:
    member = "requestRedirect" if redirect else "urlRewrite"
    f = mk_filter(
        "RequestRedirect" if redirect else "URLRewrite", **{member: mk_redirect(kind, value)}
    )
    if backend:
        return mk_route(mk_rule(matches=PREFIX, backends=[mk_backend(filters=[f])]))
    return mk_route(
        mk_rule(matches=PREFIX, filters=[f], backends=None if redirect else [mk_backend()])
    )


BAD = [
    pytest.param("/a b", id="space"),
    pytest.param("/a\0b", id="nul"),
    pytest.param("/a\r\nx-injected: 1", id="crlf"),
    pytest.param("/a\tb", id="tab"),
    pytest.param("/é", id="non-ascii"),
    pytest.param("/a%zz", id="malformed-escape"),
    pytest.param("/new?x=1", id="query"),
    pytest.param("/a#b", id="fragment"),
    pytest.param("/a\\b", id="backslash"),
]
GOOD = ["/", "/a%20b", "/x/y-z_~.!$&'()*+,;=:@", "/%C3%A9"]


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize(
    ("kind", "field", "where"),
    [
        ("ReplaceFullPath", "replaceFullPath", {}),
        ("ReplacePrefixMatch", "replacePrefixMatch", {}),
        ("ReplaceFullPath", "replaceFullPath", {"backend": True}),
        ("ReplaceFullPath", "replaceFullPath", {"redirect": True}),
        ("ReplacePrefixMatch", "replacePrefixMatch", {"redirect": True}),
    ],
    ids=["rewrite-full", "rewrite-prefix", "backend-rewrite", "redirect-full", "redirect-prefix"],
)
def test_a_path_modifier_that_no_request_line_can_carry_is_an_error(
    value: str, kind: str, field: str, where: dict[str, bool]
) -> None:
    errors = errors_builtin(_rewrite(kind, value, **where))
    member = "requestRedirect" if where.get("redirect") else "urlRewrite"
    base = (
        "spec.rules[0].backendRefs[0].filters[0]"
        if where.get("backend")
        else ("spec.rules[0].filters[0]")
    )
    assert [(e.pos.path, e.message, e.reason) for e in errors] == [
        (f"{base}.{member}.path.{field}", PATH_VALUE, "FieldValueInvalid")
    ]


@pytest.mark.parametrize("value", [*GOOD, ""])
def test_path_modifiers_in_path_characters_pass(value: str) -> None:
    assert errors_builtin(_rewrite("ReplacePrefixMatch", value)) == []
    assert errors_builtin(_rewrite("ReplaceFullPath", value, redirect=True)) == []


@cache
def _experimental_crds() -> CRDSet:
    crds, _ = load_crds([str(GATEWAY_API / "crd" / "experimental")])
    return crds


def test_the_crds_themselves_accept_them_the_rule_is_ours() -> None:
    require_reference(GATEWAY_API / "crd" / "experimental")
    assert errors_crds(_rewrite("ReplaceFullPath", "/a b"), _experimental_crds()) == []


@given(st.text(alphabet="/.%2fF#a~ ", max_size=12), st.sampled_from(["Exact", "PathPrefix"]))
def test_the_clean_path_shortcut_finds_what_every_rule_finds(value: str, type_: str) -> None:
    """`path_match_failures` skips the eleven rules for a path that passes a shorter check;
    whatever the value, it returns what running every rule returns."""
    path = HTTPPathMatch(type=type_, value=value)
    assert path_match_failures(path) == [m for m, ok in _PATH_RULES if not ok(value)]
