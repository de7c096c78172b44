"""Golden policy tests: every `tests/golden/policy/*.in.yaml` against its `.out.yaml`.

Each case is a manifest of Linkerd and/or Istio authorization kinds; the output is the
compiled policy table and every diagnostic (validation and compile), STYLE.md §3. Run
``pytest --update-golden`` to rewrite the outputs, then review the diff against
SECURITY-REFERENCE §2 and §3.5 and docs/policy.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import GOLDEN
from turnout.engine.pipeline import compile_policy_files, policy_golden_data
from turnout.engine.render import dump_yaml

CASES = sorted(GOLDEN.glob("policy/*.in.yaml"))


@pytest.mark.parametrize("src", CASES, ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_policy_golden(src: Path, update_golden: bool) -> None:
    inputs, result = compile_policy_files([src])
    got = dump_yaml(policy_golden_data(inputs, result, root=GOLDEN))
    out = src.with_name(src.name.replace(".in.yaml", ".out.yaml"))
    if update_golden:
        out.write_text(got)
    assert got == out.read_text()
