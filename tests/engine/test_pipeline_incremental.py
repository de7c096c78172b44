"""The incremental pipeline's shortcuts against the plain functions they stand for."""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from pathlib import Path

import pytest

from tests.conftest import GOLDEN
from turnout.adapters.policy import compile_policy
from turnout.engine.compile import CompileResult, compile_table
from turnout.engine.compile.incremental import IncrementalTable
from turnout.engine.model import Resources
from turnout.engine.pipeline import (
    IncrementalCompiler,
    SnapshotCompiler,
    compile_files,
    compile_snapshot,
    load_inputs,
)
from turnout.engine.policy_reads import policy_reads

POLICY_CASES = sorted(GOLDEN.glob("policy/*.in.yaml")) + sorted(GOLDEN.glob("xds-policy/*.in.yaml"))


@pytest.mark.parametrize("src", POLICY_CASES, ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_the_policy_compiles_from_what_it_reads(src: Path) -> None:
    """`policy_reads` leaves out only what `compile_policy` never looks at."""
    resources = load_inputs([str(src)]).resources
    reads = Resources(tuple(o for o in resources.objects if policy_reads(o)))
    assert compile_policy(reads) == compile_policy(resources)


def test_snapshot_compiler_gives_what_compile_snapshot_gives() -> None:
    """Snapshots drawn from the golden inputs (compile and policy), objects kept, dropped
    and swapped between them, as a cluster's watch would deliver them."""
    objects = [
        o
        for src in [*sorted(GOLDEN.glob("compile/*.in.yaml")), *POLICY_CASES]
        for o in load_inputs([str(src)]).resources.objects
    ]
    rnd = random.Random(7)
    world = rnd.sample(objects, len(objects) // 4)
    compiler = SnapshotCompiler()
    for step in range(12):
        resources = Resources(tuple(world))
        got, want = compiler(resources), compile_snapshot(resources)
        assert got.result == want.result, step
        assert got.policy == want.policy, step
        assert (got.inputs, got.rejected) == (want.inputs, want.rejected), step
        for _ in range(3):
            world[rnd.randrange(len(world))] = rnd.choice(objects)


def _route(weight: int) -> str:
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: shop}}
spec:
  parentRefs: [{{group: "", kind: Service, name: web, port: 80}}]
  rules: [{{backendRefs: [{{name: web, port: 80, weight: {weight}}}]}}]
"""


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(tmp_path: Path) -> None:
    """The stat pre-check trusts (mtime, ctime, size, inode): restoring the mtime after a
    same-size edit still moves the ctime, which no one can set back."""
    path = tmp_path / "route.yaml"
    path.write_text(_route(10))
    past = time.time() - 3600
    os.utime(path, (past, past))
    compiler = IncrementalCompiler()
    first = compiler([tmp_path])
    path.write_text(_route(20))
    os.utime(path, (past, past))
    second = compiler([tmp_path])
    assert second.result == compile_files([tmp_path]).result
    assert second.result.table != first.result.table


def test_a_verified_increment_that_differs_falls_back_to_the_full_compile(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    resources = load_inputs([str(GOLDEN / "compile" / "httproute-weighted-backends.in.yaml")])
    inc = IncrementalTable(verify_every=1)
    real = IncrementalTable._result

    def broken(self: IncrementalTable, *args: object) -> CompileResult:
        return dataclasses.replace(real(self, *args), statuses=())  # type: ignore[arg-type]

    monkeypatch.setattr(IncrementalTable, "_result", broken)
    with caplog.at_level(logging.ERROR):
        got = inc.compile(resources.resources)
    assert got == compile_table(resources.resources)
    assert "differs from a full compile" in caplog.text


def test_the_control_planes_compilers_read_the_verify_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TURNOUT_VERIFY_INCREMENTAL", "3")
    assert IncrementalCompiler()._table.verify_every == 3
    compiler = SnapshotCompiler()
    compiler(Resources(()))
    assert compiler._table is not None and compiler._table.verify_every == 3
