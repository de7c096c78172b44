"""The table the admin port serves as JSON (`render.to_data`) turns back into the very same
IR (`render.from_data`), for every golden compile case: what `mesh routes` shows from a
running control plane is what `-f` would show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import GOLDEN
from turnout.engine import ir
from turnout.engine.diagnostics import Diagnostic, Severity, SourcePos
from turnout.engine.pipeline import compile_files
from turnout.engine.render import diagnostic_data, diagnostic_from_data, from_data, to_data

CASES = sorted((GOLDEN / "compile").glob("*.in.yaml"))


def through_json(data: object) -> object:
    return json.loads(json.dumps(data))


@pytest.mark.parametrize("src", CASES, ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_to_data_then_from_data_gives_the_same_table_and_status(src: Path) -> None:
    result = compile_files([src]).result
    table = from_data(ir.RouteTable, through_json(to_data(result.table)))
    assert table == result.table
    statuses = tuple(from_data(ir.RouteStatus, through_json(to_data(s))) for s in result.statuses)
    assert statuses == result.statuses


def test_the_golden_cases_cover_every_tagged_union_member() -> None:
    """So the round trip above exercises each `type:` tag at least once."""
    seen: set[str] = set()

    def walk(data: object) -> None:
        if isinstance(data, dict):
            if "type" in data:
                seen.add(str(data["type"]))
            for v in data.values():
                walk(v)
        elif isinstance(data, list):
            for v in data:
                walk(v)

    for src in CASES:
        walk(to_data(compile_files([src]).result.table))
    assert {"ServiceParent", "GatewayParent", "ServiceTarget", "InvalidBackend"} <= seen
    assert {"ExactPath", "PrefixPath", "RegexPath", "RedirectFilter"} <= seen


def test_a_diagnostic_round_trips() -> None:
    d = Diagnostic(
        severity=Severity.ERROR,
        reason="FieldValueInvalid",
        message="must be 0..1000000, got -5",
        pos=SourcePos("routes.yaml", 2, "spec.rules[0].backendRefs[1].weight"),
    )
    assert diagnostic_from_data(through_json(diagnostic_data(d))) == d


@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param({"parents": {}}, "table.parents: expected a list", id="not-a-list"),
        pytest.param(
            {"clusters": [{"name": 1}]}, "table.clusters[0].name: expected str", id="bad-field"
        ),
        pytest.param(
            {"parents": [{"type": "Nope"}]},
            "table.parents[0]: type 'Nope' is not one of",
            id="bad-tag",
        ),
        pytest.param({"routes": []}, "table: unknown field(s) routes", id="unknown-field"),
    ],
)
def test_data_that_does_not_fit_names_the_field(data: object, error: str) -> None:
    with pytest.raises(ValueError) as caught:
        from_data(ir.RouteTable, data, path="table")
    assert str(caught.value).startswith(error)
