"""A small Prometheus registry: integer cells, families of them, and the text exposition.

```
Family("request_total", "counter", help) ──cell('direction="inbound",...')──> Cell  (.v += 1)
HistogramFamily("response_latency_ms", help) ──cell(labels)──> Histogram (.counts[i], .sum)
PlainTally(cells, histograms)   one increment standing for several cells; fold() adds it in
family.render(out) ─┐
process_lines(...) ─┴─> text exposition 0.0.4 (series sorted by label body; the only formatting)
merge_metrics([text, ...]) -> one text: `mesh proxy --workers` sums its processes' series
```

A cell is looked up once per label combination (the label body, ``a="1",b="2"``, is the
key) and then kept by its caller, so counting is an integer increment. Histograms use one
bucket layout, `LATENCY_BOUNDS_MS` (Linkerd's latency buckets, whole milliseconds), and keep
per-bucket counts that are cumulated only when rendered.

What the families are called and which labels they carry is not here: that is Linkerd's
side (`families.py`, `metrics.py`). Not here either: locking (one event loop owns a
registry), series expiry, summaries, exemplars, the OpenMetrics format.
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Iterable, Sequence
from typing import Final

log = logging.getLogger(__name__)

LATENCY_BOUNDS_MS: Final[tuple[int, ...]] = (
    *(1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500),
    *(1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000),
)
"""Upper bounds of every histogram here (Linkerd's ``linkerd/metrics/src/latency.rs``); a
last ``+Inf`` bucket follows. Values are recorded as whole (truncated) milliseconds."""

N_BUCKETS: Final = len(LATENCY_BOUNDS_MS) + 1
"""Buckets per histogram, ``+Inf`` included."""
_LE: Final = tuple(f'le="{b}"' for b in (*LATENCY_BOUNDS_MS, "+Inf"))

_EARLIEST = frozenset({"process_start_time_seconds", "identity_cert_expiration_timestamp_seconds"})
"""Series `merge_metrics` merges by taking the smallest value (the others are summed)."""


def escape_label_value(value: str) -> str:
    """Escape a label value for the text format: backslash, double quote and newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def join_labels(pairs: Iterable[tuple[str, str]]) -> str:
    """A label body, ``a="1",b="2"``, values escaped, in the order given."""
    return ",".join(f'{k}="{escape_label_value(v)}"' for k, v in pairs)


class Cell:
    """One counter or gauge series: its value."""

    __slots__ = ("v",)

    def __init__(self) -> None:
        self.v = 0


class Histogram:
    """One histogram series over `LATENCY_BOUNDS_MS`."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * N_BUCKETS
        """Per-bucket (not cumulative) counts; cumulated at render."""
        self.sum = 0


class Family:
    """A counter or gauge family: label body (``a="1",b="2"``) -> cell."""

    __slots__ = ("help", "kind", "name", "series")

    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name, self.kind, self.help = name, kind, help_text
        self.series: dict[str, Cell] = {}

    def cell(self, labels: str) -> Cell:
        c = self.series.get(labels)
        if c is None:
            c = self.series[labels] = Cell()
        return c

    def render(self, out: list[str]) -> None:
        out.append(f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.kind}\n")
        out.extend(f"{self.name}{{{k}}} {c.v}\n" for k, c in sorted(self.series.items()))


class HistogramFamily:
    """A histogram family (``*_ms``, `LATENCY_BOUNDS_MS` buckets): label body -> histogram."""

    __slots__ = ("help", "name", "series")

    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self.series: dict[str, Histogram] = {}

    def cell(self, labels: str) -> Histogram:
        h = self.series.get(labels)
        if h is None:
            h = self.series[labels] = Histogram()
        return h

    def render(self, out: list[str]) -> None:
        n = self.name
        out.append(f"# HELP {n} {self.help}\n# TYPE {n} histogram\n")
        for labels, h in sorted(self.series.items()):
            total = 0
            for le, count in zip(_LE, h.counts, strict=True):
                total += count
                out.append(f"{n}_bucket{{{labels},{le}}} {total}\n")
            out.append(f"{n}_sum{{{labels}}} {h.sum}\n{n}_count{{{labels}}} {total}\n")


class PlainTally:
    """Events that all count in the same cells and histograms, counted with one increment
    each (`n`, plus the latency in `counts`/`sum`) and added to those cells by `fold`: the
    request path then touches one object instead of a dozen."""

    __slots__ = ("cells", "counts", "hists", "n", "sum")

    def __init__(self, cells: tuple[Cell, ...], hists: tuple[Histogram, ...]) -> None:
        self.cells, self.hists = cells, hists
        """Where each event counts once; where its latency counts."""
        self.n = 0
        self.counts = [0] * N_BUCKETS
        """Latency per bucket (as `Histogram.counts`), since the last fold."""
        self.sum = 0

    def fold(self) -> None:
        n = self.n
        if not n:
            return
        for c in self.cells:
            c.v += n
        counts = self.counts
        for h in self.hists:
            hc = h.counts
            for i, k in enumerate(counts):
                hc[i] += k
            h.sum += self.sum
        self.n = self.sum = 0
        self.counts = [0] * N_BUCKETS


def process_lines(workload_labels: str, start_time: float) -> str:
    """The ``process_start_time_seconds`` and ``process_resident_memory_bytes`` gauges."""
    w = f"{{{workload_labels}}}" if workload_labels else ""
    return (
        "# HELP process_start_time_seconds Time that the process started (in seconds since the UNIX epoch)\n"
        f"# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds{w} {start_time!r}\n"
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        f"# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes{w} {resident_memory_bytes()}\n"
    )  # fmt: skip


def resident_memory_bytes() -> int:
    """Current RSS from ``/proc/self/statm`` (a procfs read never waits on a disk), else the
    peak RSS that ``getrusage`` reports (in KiB on Linux)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def merge_metrics(texts: Sequence[str]) -> str:
    """Prometheus texts of several processes as one: each series summed over them
    (``process_start_time_seconds``: the earliest); families keep their first order and
    stay grouped, as the text format requires."""
    families: dict[str, tuple[list[str], dict[str, float]]] = {}
    for text in texts:
        family: tuple[list[str], dict[str, float]] | None = None
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = families.setdefault(parts[2], ([], {}))
                    if line not in family[0]:
                        family[0].append(line)
                continue
            key, _, value = line.rpartition(" ")
            if family is None:
                family = families.setdefault(key.partition("{")[0], ([], {}))
            samples = family[1]
            v = float(value)
            if key not in samples:
                samples[key] = v
            elif key.partition("{")[0] in _EARLIEST:
                samples[key] = min(samples[key], v)
            else:
                samples[key] += v
    out: list[str] = []
    for comments, samples in families.values():
        out += comments
        out += (f"{key} {_number(v)}" for key, v in samples.items())
    return "\n".join(out) + "\n"


def _number(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)
