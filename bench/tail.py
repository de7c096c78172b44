"""Where the paced p99 of `bench.proxy` comes from: our proxy's pauses (garbage collections,
heap settles after a table swap), timed inside its own process, matched against the
pacer's slowest samples.

```
mesh proxy (python -m bench.tail -- proxy ..., BENCH_TAIL=FILE)
   gc.callbacks + a timed runner.settle_heap ──► pauses in memory ── SIGUSR1 ──► FILE (JSON)
pacer ──► its samples at or over p99: (sent_ns, latency_ns) ─┐
                                                            └─► explain(): which pauses
                                                                each slow sample overlaps
```

Both processes read CLOCK_MONOTONIC (`time.perf_counter_ns` on Linux), so the intervals
compare directly. Recording costs two clock reads per collection and nothing per request.
A slow sample that overlaps no pause of ours is the machine's (scheduling, the other
processes on the two cores) or the event loop's own work (a burst of requests in one round).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ENV = "BENCH_TAIL"
"""Names the file our proxy writes its pauses to on SIGUSR1."""

Pause = tuple[str, int, int]
"""(kind, start_ns, duration_ns); kind: gc0, gc1, gc2, settle."""


def install(path: str) -> None:
    """In the proxy's process, before it starts: time every collection and heap settle."""
    pauses: list[Pause] = []
    started = [0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter_ns()
        if phase == "start":
            started[0] = now
        else:
            pauses.append((f"gc{info['generation']}", started[0], now - started[0]))

    gc.callbacks.append(on_gc)
    from turnout.proxy import runner

    settle = runner.settle_heap

    def timed_settle() -> None:
        t0 = time.perf_counter_ns()
        settle()
        pauses.append(("settle", t0, time.perf_counter_ns() - t0))

    runner.settle_heap = timed_settle  # looked up at each call by `Proxy._settle_later`

    def dump(signum: int, frame: object) -> None:
        tmp = f"{path}.tmp"
        Path(tmp).write_text(json.dumps(pauses))
        os.replace(tmp, path)

    signal.signal(signal.SIGUSR1, dump)


def collect(pid: int, path: Path, timeout_s: float = 10.0) -> list[Pause]:
    """Ask the proxy `pid` for its pauses so far (SIGUSR1) and read them."""
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            return []
        time.sleep(0.02)
    return [(str(k), int(s), int(d)) for k, s, d in json.loads(path.read_text())]


def explain(
    pauses: Sequence[Pause], slow: Sequence[Sequence[int]], window: tuple[int, int]
) -> dict[str, Any]:
    """Pauses within `window` (the paced run) by kind (count, max ms, total ms), and how
    many of the `slow` samples (sent_ns, latency_ns) overlap one of each kind."""
    lo, hi = window
    inside = [p for p in pauses if lo <= p[1] + p[2] and p[1] <= hi]
    by_kind: dict[str, dict[str, float]] = {}
    for kind, _, dur in inside:
        k = by_kind.setdefault(kind, {"count": 0, "max_ms": 0.0, "total_ms": 0.0})
        k["count"] += 1
        k["max_ms"] = max(k["max_ms"], dur / 1e6)
        k["total_ms"] += dur / 1e6
    hit: Counter[str] = Counter()
    for sent, lat in slow:
        kinds = {kind for kind, start, dur in inside if start < sent + lat and sent < start + dur}
        for kind in kinds or {"none of ours"}:
            hit[kind] += 1
    return {"pauses": by_kind, "slow": len(slow), "overlapping": dict(hit)}


def describe(found: dict[str, Any]) -> str:
    """One line for the bench's output."""
    pauses = found["pauses"]
    if pauses:
        seen = ", ".join(
            f"{k} {v['count']:.0f}x (max {v['max_ms']:.2f} ms)" for k, v in sorted(pauses.items())
        )
    else:
        seen = "none"
    hits = ", ".join(f"{k} {n}" for k, n in sorted(found["overlapping"].items())) or "-"
    return (
        f"pauses of ours during the run: {seen}; the {found['slow']} samples >= p99 overlap: {hits}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.tail MESH_ARGS...``: `mesh MESH_ARGS` with its pauses timed (into
    $BENCH_TAIL): an entry of its own, importing next to nothing besides `mesh`, so that
    the proxy's RSS is what `mesh proxy` alone would show."""
    import sys

    from turnout.cli.main import main as mesh_main

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if os.environ.get(ENV):
        install(os.environ[ENV])
    return mesh_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
