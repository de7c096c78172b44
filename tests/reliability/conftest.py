"""The attack set's table (`test_attacks.py`), printed in the terminal summary of any run
that played at least one case: id, input, the proxy's answer, what reached the backend,
what nginx answers, and the verdict."""

from __future__ import annotations

import pytest

from tests.reliability.attacks import RESULTS, Result

COLUMNS = (("case", 30), ("input", 46), ("proxy answered", 30), ("reached the backend", 44))


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def row(result: Result) -> list[str]:
    out = result.outcome
    answer = " ".join(out.answers) + (f" ({out.figures})" if out.figures else "")
    reached = "; ".join(out.reached) if out.reached else "nothing"
    return [result.case.id, result.case.shown, answer, reached]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    tr = terminalreporter
    tr.write_sep("=", f"issue 11 attack set: {len(RESULTS)} cases")
    tr.write_line("  ".join(name.ljust(w) for name, w in COLUMNS) + "  nginx / verdict")
    for result in RESULTS:
        cells = [_cut(c, w).ljust(w) for c, (_, w) in zip(row(result), COLUMNS, strict=True)]
        verdict = result.verdict
        tr.write_line(
            "  ".join(cells) + f"  {_cut(result.case.nginx, 28)} / {verdict}",
            red=verdict in ("FAIL", "XPASS"),
            yellow=verdict.startswith("xfail"),
        )
        for problem in result.problems if verdict == "FAIL" else ():
            tr.write_line(f"    {problem}", red=True)
