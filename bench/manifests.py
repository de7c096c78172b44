"""What the manifest caps cost: refusing hostile files, and reading ordinary ones.

Goals: the billion laughs (and a 5,000-deep nesting) are refused in under 50 ms, where
before the caps `mesh validate` ran 62-109 s at 3.3 GB on the bomb; and 10,000 routes in one
file load within 1.2x of libyaml's own `load_all` on the same text (with the loader the
caps wrap, which is what loading was before them) (the caps' walks and
counts are that much extra at most). Figures are the best of a few runs, measured here.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import yaml

from bench.synth import documents
from tests.engine.model import hostile
from turnout.engine.errors import LimitExceeded
from turnout.engine.model.limits import _Loader as UNCAPPED  # what loading was before
from turnout.engine.model.limits import load_yaml

REFUSE_GOAL_MS = 50.0
OVERHEAD_GOAL = 1.2


def best_of(n: int, fn: Callable[[], object]) -> float:
    """Seconds of the fastest of `n` runs (the cyclic GC paused, as the pipeline does)."""
    times = []
    for _ in range(n):
        gc.disable()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        gc.enable()
        gc.collect()
    return min(times)


def refused(text: str) -> Callable[[], object]:
    def run() -> object:
        try:
            list(load_yaml(text, file="bomb.yaml"))
        except LimitExceeded as exc:
            return exc
        raise AssertionError("not refused")

    return run


def main() -> None:
    print("== manifests: the caps on hostile input, and their cost on ordinary input")
    for name, text in (
        ("billion laughs (9 x 10) in spec", hostile.laughs_in_spec()),
        ("billion laughs in annotations", hostile.laughs_in_annotations()),
        ("5,000-deep nesting", hostile.nested(5000)),
    ):
        ms = best_of(5, refused(text)) * 1000
        verdict = "ok" if ms < REFUSE_GOAL_MS else "OVER GOAL"
        print(f"  refuse {name:34s} {ms:7.2f} ms (goal < {REFUSE_GOAL_MS:g} ms: {verdict})")
    text = yaml.safe_dump_all([d.raw for d in documents(10_000)])
    plain = best_of(5, lambda: list(yaml.load_all(text, Loader=UNCAPPED)))
    capped = best_of(5, lambda: list(load_yaml(text, file="routes.yaml")))
    ratio = capped / plain
    verdict = "ok" if ratio <= OVERHEAD_GOAL else "OVER GOAL"
    print(
        f"  10k routes ({len(text) / 2**20:.1f} MiB): libyaml load_all {plain:.2f} s,"
        f" capped {capped:.2f} s, ratio {ratio:.2f} (goal <= {OVERHEAD_GOAL}: {verdict})"
    )


if __name__ == "__main__":
    main()
