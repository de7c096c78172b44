"""Shared by the proxy's metrics tests: a strict parser for the Prometheus text format 0.0.4
and small `ProxyMetrics` builders (STYLE §12: one shared test kit, no test module imports
another).

```
parse_exposition(text) -> {name: Family}   fails on anything Prometheus would reject
value(fams, "response_total", status_code="200") -> the sum of the matching samples
mk_metrics(deployment, pod=) -> ProxyMetrics;  serve(m, 200, 503, direction=) -> counted
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from turnout.proxy.metrics import ProxyMetrics

# -- a strict parser for the text format 0.0.4 ------------------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
SAMPLE = re.compile(rf"({NAME})(?:\{{(.*)\}})? (\S+)")
TYPES = {"counter", "gauge", "histogram"}
Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    name: str
    type: str
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_labels(body: str) -> Labels:
    pairs, pos = [], 0
    while pos < len(body):
        m = LABEL.match(body, pos)
        assert m, f"bad label syntax at {body[pos:]!r}"
        pairs.append((m.group(1), unescape(m.group(2))))
        pos = m.end()
        if pos < len(body):
            assert body[pos] == ",", f"expected ',' at {body[pos:]!r}"
            pos += 1
    names = [k for k, _ in pairs]
    assert len(names) == len(set(names)), f"duplicate label in {body!r}"
    return tuple(pairs)


def parse_exposition(text: str) -> dict[str, Family]:
    """Families by name. Fails on anything Prometheus would reject or that the format says
    must not happen: samples before HELP/TYPE, a family split up, duplicate series,
    non-cumulative buckets, a +Inf bucket unequal to _count, a missing _sum."""
    assert text.endswith("\n")
    families: dict[str, Family] = {}
    current: Family | None = None
    pending_help: tuple[str, str] | None = None
    seen: set[tuple[str, Labels]] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert re.fullmatch(NAME, name) and name not in families
            pending_help = (name, help_text)
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert pending_help and pending_help[0] == name, f"TYPE without HELP: {line}"
            assert kind in TYPES
            current = families[name] = Family(name, kind, pending_help[1])
            pending_help = None
        else:
            m = SAMPLE.fullmatch(line)
            assert m and current, f"bad sample line or no TYPE: {line!r}"
            name, labels = m.group(1), parse_labels(m.group(2) or "")
            suffixes = ("_bucket", "_sum", "_count") if current.type == "histogram" else ("",)
            assert name in {current.name + s for s in suffixes}, f"{name} outside its family"
            assert (name, labels) not in seen, f"duplicate series {name}{labels}"
            seen.add((name, labels))
            current.samples.append((name, labels, float(m.group(3))))
    for fam in families.values():
        if fam.type == "histogram":
            check_histogram(fam)
    return families


def check_histogram(fam: Family) -> None:
    groups: dict[Labels, dict[str, list[tuple[str, float]]]] = {}
    for name, labels, value in fam.samples:
        base = tuple((k, v) for k, v in labels if k != "le")
        le = dict(labels).get("le", "")
        groups.setdefault(base, {}).setdefault(name.removeprefix(fam.name), []).append((le, value))
    for base, parts in groups.items():
        buckets = parts["_bucket"]
        assert [float(le) for le, _ in buckets] == sorted(float(le) for le, _ in buckets)
        assert buckets[-1][0] == "+Inf", base
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), f"buckets not cumulative: {base}"
        assert parts["_count"] == [("", buckets[-1][1])]
        assert len(parts["_sum"]) == 1


def value(fams: dict[str, Family], name: str, **match: str) -> float:
    """Sum of the samples of `name` whose labels include `match`."""
    fam = fams[name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")]
    return sum(
        v for n, labels, v in fam.samples if n == name and match.items() <= dict(labels).items()
    )


# -- builders ---------------------------------------------------------------------------------


def mk_metrics(deployment: str = "podinfo", *, pod: str = "podinfo-7d9f-abc12") -> ProxyMetrics:
    return ProxyMetrics(namespace="test", workload_name=deployment, pod=pod, start_time=1.5)


def serve(m: ProxyMetrics, *statuses: int, direction: str = "inbound", latency: float = 3) -> None:
    if direction == "inbound":
        key = m.http(direction="inbound", authority="podinfo:9898", target_addr=("10.1.0.5", 9898))
    else:
        key = m.http(
            direction="outbound",
            authority="backend.test.svc.cluster.local:80",
            target_addr=("10.1.0.9", 8080),
            dst_namespace="test",
            dst_service="backend",
        )
    for status in statuses:
        m.request(key)
        m.response(key, status_code=status, latency_ms=latency)
