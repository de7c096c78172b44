"""The per-test report: one line per upstream test, then a count per outcome."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.conformance.runner import Outcome

FAILING = frozenset({"FAIL", "XPASS"})


def render(results: Sequence[Outcome], seconds: float) -> tuple[str, bool]:
    """The report's text, and whether any test failed."""
    lines = []
    for r in results:
        features = ",".join(r.features)
        lines.append(f"{r.outcome:<5} {r.name:<50} {r.seconds:4.1f}s  {r.folder}  [{features}]")
        if r.outcome != "PASS":
            lines += [f"      {d}" for d in r.details[:12]]
            if len(r.details) > 12:
                lines.append(f"      ... {len(r.details) - 12} more")
    counts = Counter(r.outcome for r in results)
    summary = ", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items()))
    lines.append(f"{len(results)} upstream tests: {summary} in {seconds:.1f}s")
    return "\n".join(lines), any(r.outcome in FAILING for r in results)
