"""The attack set of issue 11 against one real proxy process: every case in
`attack_cases.CASES`, its answer and what reached the backend appended to `RESULTS` (printed
as a table at the end of the run by `conftest.py`).

A case with `xfail=REASON` is a known defect not fixed yet: a strict xfail, so the fix makes
pytest report XPASS(strict) as a failure until the fix also removes `xfail=` from the case.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.attack_cases import CASES
from tests.reliability.attacks import RESULTS, Case, Lab, Result, judge, running_lab


def _param(case: Case) -> object:
    marks = []
    if case.xfail:
        marks.append(pytest.mark.xfail(strict=True, reason=f"known defect: {case.xfail}"))
    return pytest.param(case, id=case.id, marks=marks)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(Path(tmp_path_factory.mktemp("attacks"))) as lab:
        yield lab


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_attack(lab: Lab, case: Case) -> None:
    outcome = lab.run(case)
    problems = judge(case, outcome, lab.recorder)
    RESULTS.append(Result(case, outcome, problems))
    assert not problems, f"{case.id}: " + "; ".join(problems)


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
