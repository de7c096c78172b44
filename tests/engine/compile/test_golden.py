"""Golden compile tests: every `tests/golden/compile/*.in.yaml` against its `.out.yaml`.

Each case is a multi-document manifest as a user writes it; the output is the compiled table,
route status and diagnostics (STYLE.md §3). Run ``pytest --update-golden`` to rewrite the
outputs, then review the diff line by line against HTTPROUTE-SEMANTICS.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import GOLDEN
from turnout.engine.pipeline import compile_files, golden_data
from turnout.engine.render import dump_yaml

CASES = sorted(GOLDEN.glob("compile/*.in.yaml"))


def out_path(src: Path) -> Path:
    return src.with_name(src.name.replace(".in.yaml", ".out.yaml"))


@pytest.mark.parametrize("src", CASES, ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_compile_golden(src: Path, update_golden: bool) -> None:
    got = dump_yaml(golden_data(compile_files([src]), root=GOLDEN))
    out = out_path(src)
    if update_golden:
        out.write_text(got)
    assert got == out.read_text()


def test_golden_paths_are_relative_to_the_golden_root() -> None:
    """STYLE.md §3: "file paths relative to `tests/golden/`", whatever the working directory."""
    src = GOLDEN / "compile" / "httproute-retry-invalid-codes.in.yaml"
    data = golden_data(compile_files([src]), root=GOLDEN)
    diags = data["diagnostics"]
    assert isinstance(diags, list) and diags
    assert {d["file"] for d in diags} == {"compile/httproute-retry-invalid-codes.in.yaml"}


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 15
