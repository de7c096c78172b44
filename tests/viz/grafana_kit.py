"""What Grafana does with a dashboard's PromQL, done here so a test can run it: collect every
panel target and template variable, evaluate ``label_values(...)`` variables (with their
regex) against a Prometheus, and substitute the variables into the queries.

```
targets(board)    [Target(panel, ref, expr)]   every panel's (and row's) targets
variables(board)  [Variable(name, query, regex)]  the query variables, in dashboard order
combinations(url, board)  every chain of real values (namespace -> deployment -> ...)
substitute(expr, values)  $var / ${var} -> value; $__rate_interval -> RATE_INTERVAL
placeholders(board)       "x" for every variable: enough for a parse check
```
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

RATE_INTERVAL = "1m"
"""What Grafana's ``$__rate_interval`` becomes (4 x a 15 s scrape, its floor)."""
BUILTINS = {"__rate_interval": RATE_INTERVAL, "__interval": "15s", "__range": "15m"}
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"label_values\((?:(.*),\s*)?(\w+)\)")


@dataclass(frozen=True, slots=True)
class Target:
    panel: str
    ref: str
    expr: str


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    query: str
    regex: str


def panels(board: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for p in board["panels"]:
        yield p
        yield from p.get("panels", ())


def targets(board: Mapping[str, Any]) -> list[Target]:
    return [
        Target(p["title"], t["refId"], t["expr"])
        for p in panels(board)
        for t in p.get("targets", ())
    ]


def variables(board: Mapping[str, Any]) -> list[Variable]:
    out = []
    for v in board["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]
            out.append(Variable(v["name"], q["query"] if isinstance(q, dict) else q, v["regex"]))
    return out


def substitute(expr: str, values: Mapping[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        known = {**BUILTINS, **values}
        if name not in known:
            raise KeyError(f"${name} is not a variable of the dashboard")
        return known[name]

    return _VAR.sub(one, expr)


def js_regex(regex: str) -> re.Pattern[str] | None:
    """Grafana's ``/PATTERN/flags`` as a Python pattern (ours use no JS-only syntax)."""
    if not regex:
        return None
    body, _, flags = regex[1:].rpartition("/")
    return re.compile(body, re.IGNORECASE if "i" in flags else 0)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def label_values(prom: str, query: str, regex: str, window_s: float = 900) -> list[str]:
    """What Grafana lists for a ``label_values([selector, ]label)`` variable: the label's
    values on series matching the selector in the window, through the variable's regex (a
    capture group's text when it has one), de-duplicated and sorted."""
    m = _LABEL_VALUES.fullmatch(query.strip())
    assert m, f"not a label_values query: {query}"
    selector, label = m.group(1), m.group(2)
    now = time.time()
    params: list[tuple[str, str]] = [("start", f"{now - window_s:.0f}"), ("end", f"{now:.0f}")]
    if selector:
        params.append(("match[]", selector))
    answer = _get_json(f"{prom}/api/v1/label/{label}/values?{urllib.parse.urlencode(params)}")
    assert answer["status"] == "success", answer
    pattern = js_regex(regex)
    out = set()
    for value in answer["data"]:
        if pattern is None:
            out.add(value)
        elif mv := pattern.search(value):
            out.add(mv.group(1) if mv.groups() else mv.group(0))
    return sorted(out)


def combinations(prom: str, board: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every assignment of real values to the dashboard's query variables, each chosen from
    what its query lists given the ones before it (Grafana's chained variables)."""
    combos: list[dict[str, str]] = [{}]
    for var in variables(board):
        nxt = []
        for done in combos:
            query = substitute(var.query, done)
            for value in label_values(prom, query, var.regex):
                nxt.append({**done, var.name: value})
        combos = nxt
    return combos


def placeholders(board: Mapping[str, Any]) -> dict[str, str]:
    """A value for every variable, for parse-only checks."""
    return {v.name: "x" for v in variables(board)}
