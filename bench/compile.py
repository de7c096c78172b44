"""Compile time for 1k and 10k routes on one parent (goal: 10k under 2 s).

Measures the stages separately (parse = typed models, validate = built-in schema/CEL rules,
compile = the pure compiler, xds = translation) and prints each figure plus the 10k/1k ratio,
which should stay near 10 (linear).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import TypeVar

from bench.synth import documents
from turnout.engine.compile import compile_table
from turnout.engine.model import parse_documents
from turnout.engine.pipeline import gc_paused
from turnout.engine.validate import validate_documents
from turnout.engine.xds import translate

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def stage_times(n: int) -> dict[str, float]:
    """Each stage as `mesh` runs it (the pipeline pauses the cyclic GC for the batch)."""
    docs = documents(n)
    with gc_paused():
        (resources, _), t_parse = timed(lambda: parse_documents(docs))
        _, t_validate = timed(lambda: validate_documents(docs, resources))
        result, t_compile = timed(lambda: compile_table(resources))
        _, t_xds = timed(lambda: translate(result.table))
    gc.collect()
    times = {"parse": t_parse, "validate": t_validate, "compile": t_compile, "xds": t_xds}
    times["total"] = sum(times.values())
    return times


def main() -> None:
    print("== compile: N HTTPRoutes (2 matches, 2 backends each) on one Service parent")
    small = stage_times(1_000)
    large = stage_times(10_000)
    for stage in small:
        ratio = large[stage] / small[stage] if small[stage] else float("nan")
        print(
            f"  {stage:9s} 1k: {small[stage] * 1000:8.1f} ms   10k: {large[stage] * 1000:8.1f} ms"
            f"   10k/1k: {ratio:5.1f}x"
        )
    verdict = "ok" if large["total"] < 2.0 else "OVER GOAL"
    print(f"  10k routes end to end: {large['total']:.2f} s (goal < 2 s: {verdict})")


if __name__ == "__main__":
    main()
