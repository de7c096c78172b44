"""The benchmarks' figures from one run to the next: each benchmark stores its figures in
``bench/results/<name>.json`` (committed) and prints how each moved against the stored ones.

```
bench.proxy / bench.request_path ── figures {name: (value, unit, better)} ──► report()
   bench/results/<name>.json (the previous run) ──► "was X, now Y (+Z %, better|worse)"
   then the new figures replace the stored ones (--no-store: not)
```

A figure moves "better" or "worse" by its `better` ("higher" or "lower"); a move under
`NOISE_PCT` is printed as "~" (these machines are shared: single runs move by 10 % and
more, which is why the same-run ratios, ours against nginx or the bare forwarder, are the
figures to judge). Each stored file also keeps the machine's load average when it was
measured, printed next to the deltas.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Literal

RESULTS = Path(__file__).resolve().parent / "results"
NO_STORE_ENV = "TURNOUT_BENCH_NO_STORE"
"""Set (by `python -m bench --no-store`): print the moves, store nothing."""
NOISE_PCT = 5.0
"""Moves smaller than this are shown as noise (~)."""

Better = Literal["higher", "lower"]
Figures = dict[str, tuple[float, str, Better]]
"""name -> (value, unit, which way is better)."""


def load(name: str, directory: Path = RESULTS) -> dict[str, object] | None:
    path = directory / f"{name}.json"
    try:
        data: dict[str, object] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def _fmt(value: float, unit: str) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f} {unit}".rstrip()
    return f"{value:.3g} {unit}".rstrip()


def deltas(figures: Figures, previous: dict[str, object] | None) -> list[str]:
    """One line per figure: its value, and its move against `previous` (when it has it)."""
    before = previous.get("figures", {}) if previous else {}
    assert isinstance(before, dict)
    lines = []
    for key, (value, unit, better) in figures.items():
        old = before.get(key)
        if not isinstance(old, int | float) or old == 0:
            lines.append(f"    {key:34s} {_fmt(value, unit):>16s}   (no previous figure)")
            continue
        pct = (value - old) / abs(old) * 100
        if abs(pct) < NOISE_PCT:
            word = "~"
        else:
            word = "better" if (pct > 0) == (better == "higher") else "worse"
        lines.append(
            f"    {key:34s} {_fmt(value, unit):>16s}   was {_fmt(float(old), unit):>14s}   "
            f"{pct:+6.1f} % {word}"
        )
    return lines


def add_no_store(parser: argparse.ArgumentParser, name: str) -> None:
    """The benchmark's `--no-store` flag: print the moves against `name`'s stored figures but
    keep them (`python -m bench --no-store` says the same through `NO_STORE_ENV`)."""
    parser.add_argument(
        "--no-store",
        action="store_true",
        help=f"print the moves against bench/results/{name}.json but keep it as it is",
    )


def report(name: str, figures: Figures, *, store: bool = True, directory: Path = RESULTS) -> None:
    """Print the figures' moves against the stored run, then store these."""
    previous = load(name, directory)
    load1 = os.getloadavg()[0]
    when = previous.get("when", "?") if previous else None
    was_load = previous.get("load1", "?") if previous else None
    head = f"  against the stored run ({when}, load {was_load}):" if previous else "  figures:"
    print(f"\n{head} now load {load1:.2f}")
    for line in deltas(figures, previous):
        print(line)
    if not store or os.environ.get(NO_STORE_ENV):
        return
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load1": round(load1, 2),
        "cpus": os.cpu_count(),
        "figures": {k: round(v, 4) for k, (v, _, _) in figures.items()},
    }
    (directory / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
