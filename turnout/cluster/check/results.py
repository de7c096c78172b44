"""What `mesh check` found, and how it is printed: Linkerd's `check` output, line for line.

```
Report ─ categories ─ Category(name) ─ checks ─ Check(description, result, error, hint)
render_text(report)        every category: name, a line of dashes, `√ description` per check;
                           under a ‼/× the error and the hint, indented 4; a blank line; then
                           "Status check results are √" (or ×)
render_text(short=True)    only the categories and checks that are not √ (Linkerd's -o short)
render_json(report)        {"success", "categories": [{"categoryName", "checks":
                           [{"description", "hint", "error", "result"}]}]} (+ "proxies")
```

The marks and the JSON shape are Linkerd's (`pkg/healthcheck/healthcheck_output.go`); our
hints are explanations of what to do, not URLs. A warning (‼) never fails the report; a
failure (×) does (exit 1, `cli.cluster_check`).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field


class Result(enum.Enum):
    """A check's outcome; the value is what `-o json` prints."""

    OK = "success"
    WARNING = "warning"
    ERROR = "error"

    @property
    def mark(self) -> str:
        return {"success": "√", "warning": "‼", "error": "×"}[self.value]


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One line of the report."""

    description: str
    result: Result = Result.OK
    error: str = ""
    """What is wrong (‼ and ×), naming the object; "" when √."""
    hint: str = ""
    """What to do about it, in a sentence (no URL)."""


def ok(description: str) -> Check:
    return Check(description=description)


def failed(description: str, error: str, hint: str) -> Check:
    return Check(description=description, result=Result.ERROR, error=error, hint=hint)


def warned(description: str, error: str, hint: str) -> Check:
    return Check(description=description, result=Result.WARNING, error=error, hint=hint)


def either(description: str, error: str, hint: str, *, warning: bool = False) -> Check:
    """√ when `error` is empty, else ‼ (`warning`) or ×."""
    if not error:
        return ok(description)
    return (warned if warning else failed)(description, error, hint)


@dataclass(slots=True)
class Category:
    name: str
    checks: list[Check] = field(default_factory=list)


@dataclass(slots=True)
class Report:
    categories: list[Category] = field(default_factory=list)
    proxies: list[dict[str, object]] | None = None
    """`--proxy`: one row per meshed pod (`proxies.proxy_rows`), for `-o json` and the table."""

    @property
    def success(self) -> bool:
        return all(c.result is not Result.ERROR for cat in self.categories for c in cat.checks)

    def category(self, name: str) -> Category:
        cat = Category(name)
        self.categories.append(cat)
        return cat


def render_text(report: Report, *, short: bool = False) -> str:
    lines: list[str] = []
    for cat in report.categories:
        checks = [c for c in cat.checks if not short or c.result is not Result.OK]
        if not checks:
            continue
        lines += [cat.name, "-" * len(cat.name)]
        for c in checks:
            lines.append(f"{c.result.mark} {c.description}")
            if c.result is not Result.OK:
                lines += [f"    {part}" for part in c.error.splitlines() if part]
                if c.hint:
                    lines.append(f"    {c.hint}")
        lines.append("")
    lines.append(f"Status check results are {'√' if report.success else '×'}")
    return "\n".join(lines) + "\n"


def report_data(report: Report) -> dict[str, object]:
    data: dict[str, object] = {
        "success": report.success,
        "categories": [
            {
                "categoryName": cat.name,
                "checks": [
                    {
                        "description": c.description,
                        "hint": c.hint,
                        "error": c.error,
                        "result": c.result.value,
                    }
                    for c in cat.checks
                ],
            }
            for cat in report.categories
        ],
    }
    if report.proxies is not None:
        data["proxies"] = report.proxies
    return data


def render_json(report: Report) -> str:
    return json.dumps(report_data(report), indent=2) + "\n"
