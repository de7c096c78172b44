"""Findings the compiler adds on top of the schema: conflicting routes (warnings) and regexes
that Python accepts but RE2 (Envoy, gRPC) would refuse (errors that drop the rule)."""

from __future__ import annotations

import pytest

from tests.engine.compile.builders import (
    compile_objects,
    mk_backend,
    mk_route,
    mk_rule,
    mk_service,
    service_parent,
)
from turnout.engine.compile.matches import check_regex
from turnout.engine.diagnostics import Severity, SourcePos

POS = SourcePos(file="f.yaml", doc_index=0, path="spec")


def test_identical_matches_in_two_routes_warn_at_the_one_that_never_wins() -> None:
    """ "If ties still exist across multiple Routes ... The oldest Route based on creation
    timestamp" wins; the other never matches, which the compiler reports."""
    rule = mk_rule(path="/api", headers={"x-team": "a"}, backends=[mk_backend("api")])
    result = compile_objects(
        mk_service("shop", "web", 80),
        mk_service("shop", "api", 80),
        mk_route(
            "shop",
            "older",
            parents=[service_parent("web", 80)],
            rules=[rule],
            created="2024-01-01T00:00:00Z",
        ),
        mk_route(
            "shop",
            "newer",
            parents=[service_parent("web", 80)],
            rules=[rule],
            created="2025-01-01T00:00:00Z",
        ),
    )
    (diag,) = [d for d in result.diagnostics if d.reason == "ConflictingRoutes"]
    assert diag.severity is Severity.WARNING
    assert diag.pos.doc_index == 3
    assert diag.pos.path == "spec.rules[0].matches[0]"
    assert "httproute/shop/older/rule/0/match/0" in diag.message


def test_matches_that_differ_in_a_header_do_not_conflict() -> None:
    result = compile_objects(
        mk_service("shop", "web", 80),
        mk_route(
            "shop",
            "a",
            parents=[service_parent("web", 80)],
            rules=[mk_rule(path="/api", headers={"x-team": "a"})],
        ),
        mk_route(
            "shop",
            "b",
            parents=[service_parent("web", 80)],
            rules=[mk_rule(path="/api", headers={"x-team": "b"})],
        ),
    )
    assert not [d for d in result.diagnostics if d.reason == "ConflictingRoutes"]


@pytest.mark.parametrize(
    ("pattern", "refused"),
    [
        pytest.param("/v[0-9]+/.*", False, id="plain-re2"),
        pytest.param("(?:a|b)+", False, id="non-capturing-group"),
        pytest.param(r"\\1", False, id="escaped-backslash-then-digit"),
        pytest.param("(?=a)b", True, id="lookahead"),
        pytest.param("a(?<!b)", True, id="lookbehind"),
        pytest.param(r"(a)\1", True, id="backreference"),
        pytest.param("(?P<n>a)(?P=n)", True, id="named-backreference"),
        pytest.param("(?>a)", True, id="atomic-group"),
        pytest.param("(", True, id="does-not-compile"),
    ],
)
def test_regexes_must_be_re2(pattern: str, refused: bool) -> None:
    diag = check_regex(pattern, POS)
    assert (diag is not None) is refused
    if diag is not None:
        assert diag.reason == "UnsupportedValue" and diag.severity is Severity.ERROR


@pytest.mark.parametrize("pattern", ["a++b", r"\Z", "(?#comment)x", "a{2}+"])
def test_patterns_python_takes_but_re2_refuses_are_errors(pattern: str) -> None:
    """Envoy and gRPC clients compile route regexes with RE2; a pattern only Python's `re`
    accepts would be NACKed by every xDS client, so the compiler refuses it first."""
    diag = check_regex(pattern, POS)
    assert diag is not None and "is not RE2" in diag.message
