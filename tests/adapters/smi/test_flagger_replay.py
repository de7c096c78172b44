"""Replay Flagger's `linkerd` provider canary run (reference/flagger/fixtures/linkerd-canary):
after each step's full PUT of the TrafficSplit, the compiled table's weights for the apex
Service equal the TrafficSplit's weights (FLAGGER-CONTRACT §3, checklist item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REFERENCE, require_reference
from turnout.engine import ir
from turnout.engine.pipeline import compile_files

FIXTURES = REFERENCE / "flagger" / "fixtures" / "linkerd-canary"
STEPS = sorted(FIXTURES.glob("step-*.yaml")) or [FIXTURES / "step-*.yaml"]
"""The steps in time order; without the reference data one placeholder, which skips."""


def split_weights(path: Path) -> dict[str, int]:
    """The TrafficSplit's backend -> weight, as Flagger wrote it (quantity strings)."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    [split] = [d for d in docs if d.get("kind") == "TrafficSplit"]
    return {b["service"]: int(b["weight"]) for b in split["spec"]["backends"]}


def apex_weights(table: ir.RouteTable) -> dict[str, int]:
    [parent] = [p for p in table.parents if p.name == "service/test/podinfo:9898"]
    assert isinstance(parent, ir.ServiceParent)
    [rule] = parent.producer.rules
    assert rule.source.kind == "TrafficSplit"
    out: dict[str, int] = {}
    for b in rule.backends:
        assert isinstance(b.target, ir.ServiceTarget)
        out[b.target.service] = b.weight
    return out


def test_the_fixture_has_every_step() -> None:
    require_reference(FIXTURES)
    assert len(STEPS) >= 9


@pytest.mark.parametrize("step", STEPS, ids=lambda p: p.stem)
def test_compiled_apex_weights_follow_each_flagger_step(step: Path, tmp_path: Path) -> None:
    require_reference(FIXTURES)
    # step-00 holds the Services and the first TrafficSplit; later steps hold only the
    # TrafficSplit Flagger PUTs back, which replaces the one before (a full Update).
    snapshot = tmp_path / "cluster.yaml"
    initial = (FIXTURES / "step-00-initialized.yaml").read_text()
    services = [d for d in yaml.safe_load_all(initial) if d and d.get("kind") == "Service"]
    puts = [d for d in yaml.safe_load_all(step.read_text()) if d and d.get("kind") != "Service"]
    snapshot.write_text(yaml.safe_dump_all([*services, *puts]))
    compiled = compile_files([snapshot])
    assert not [d for d in compiled.diagnostics if d.severity.value != "info"]
    assert apex_weights(compiled.result.table) == split_weights(step)
