"""Golden SMI tests: every `tests/golden/smi/*.in.yaml` against its `.out.yaml`.

Each case is a multi-document manifest with TrafficSplits (and HTTPRouteGroups); the output
is the compiled table, route status and diagnostics, exactly as for `tests/golden/compile/`
(STYLE.md §3). Run ``pytest --update-golden`` to rewrite the outputs, then review the diff
against HTTPROUTE-SEMANTICS §14 and FLAGGER-CONTRACT §3.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import GOLDEN
from turnout.engine.pipeline import compile_files, golden_data
from turnout.engine.render import dump_yaml

CASES = sorted(GOLDEN.glob("smi/*.in.yaml"))


def out_path(src: Path) -> Path:
    return src.with_name(src.name.replace(".in.yaml", ".out.yaml"))


@pytest.mark.parametrize("src", CASES, ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_smi_golden(src: Path, update_golden: bool) -> None:
    got = dump_yaml(golden_data(compile_files([src]), root=GOLDEN))
    out = out_path(src)
    if update_golden:
        out.write_text(got)
    assert got == out.read_text()


def test_there_are_golden_cases_for_every_smi_version() -> None:
    text = "".join(p.read_text() for p in CASES)
    for version in ("v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"):
        assert f"split.smi-spec.io/{version}" in text
