"""The control plane's own metrics, written in the Prometheus text format (0.0.4).

```
Counter.inc(*label values)        at the event (a compile, a push, an ACK, a NACK)
Histogram.observe(seconds)        compile durations
Gauge(name, help, samples)        read at scrape time (versions, connected clients)
            │
            v
render([...families]) ──> "# HELP ...\n# TYPE ...\nname{label="value"} 1\n" ──> /metrics
```

Every family is written whole (HELP, TYPE, then its samples sorted by labels), a histogram
with cumulative ``le`` buckets, ``+Inf``, ``_sum`` and ``_count``. Label values are escaped
as the format says (backslash, double quote, newline).

Nothing here costs a proxied request anything: the control plane counts its own events (one
per compile, per xDS response and per ACK or NACK), and gauges are computed when scraped.
Deliberately not here: the proxy's metrics (`turnout.proxy.metrics`, Linkerd's names) and
serving them over HTTP (`engine.server.admin`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

Labels = tuple[str, ...]
"""Label values, in the order of the family's label names."""

COMPILE_SECONDS_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Bucket bounds of compile durations (seconds): a small directory compiles in milliseconds,
10,000 routes in about a second."""


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _series(name: str, names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{n}="{escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return f"{name}{{{','.join(pairs)}}}" if pairs else name


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _head(name: str, help_text: str, kind: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _samples(
    name: str, help_text: str, kind: str, names: Sequence[str], values: Mapping[Labels, float]
) -> list[str]:
    out = _head(name, help_text, kind)
    out += [f"{_series(name, names, key)} {_number(values[key])}" for key in sorted(values)]
    return out


@dataclass(slots=True)
class Counter:
    name: str
    help: str
    labels: tuple[str, ...] = ()
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, *labels: str, by: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + by

    def value(self, *labels: str) -> float:
        return self.values.get(labels, 0)

    def lines(self) -> list[str]:
        return _samples(self.name, self.help, "counter", self.labels, self.values)


@dataclass(slots=True)
class Gauge:
    """A gauge whose samples the owner computes when scraped."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    samples: Mapping[Labels, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return _samples(self.name, self.help, "gauge", self.labels, self.samples)


@dataclass(slots=True)
class Histogram:
    name: str
    help: str
    bounds: tuple[float, ...] = COMPILE_SECONDS_BOUNDS
    counts: list[int] = field(default_factory=list)
    """Observations per bucket (not cumulative); the last one is ``+Inf``."""
    sum: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)
        i = next((i for i, b in enumerate(self.bounds) if value <= b), len(self.bounds))
        self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self) -> list[str]:
        out = _head(self.name, self.help, "histogram")
        counts = self.counts or [0] * (len(self.bounds) + 1)
        running = 0
        for bound, n in zip((*self.bounds, math.inf), counts, strict=True):
            running += n
            out.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {running}')
        out.append(f"{self.name}_sum {_number(self.sum)}")
        out.append(f"{self.name}_count {self.count}")
        return out


Family = Counter | Gauge | Histogram


def render(families: Iterable[Family]) -> str:
    """The exposition of `families`, in the order given."""
    lines = [line for f in families for line in f.lines()]
    return "\n".join(lines) + "\n"
