"""Compile time: a full compile of 1k and 10k routes, and one change among 10k.

```
full        parse -> validate -> compile_table -> translate    each stage, 1k and 10k
one change  IncrementalCompiler over a directory (100 route files + Services + a slice):
            one route edited -> read/validate that file, compile (incremental), policy
            one EndpointSlice edited -> the same path, no route recompiled (EDS only)
```
Both layouts: 10k routes on one Service parent, and 10k over 1,000 Services (10 each).
Figures are CPU seconds (`process_time`) of this process, median of several runs (each
stage's median over `--rounds` full runs): the machine is shared, so wall time says more
about the neighbours than about the code.
Goals (issue 16 §2): full 10k < 1 s end to end, one change compiled in < 50 ms.
The figures are stored in ``bench/results/compile.json`` and each run prints how they moved
against the stored ones (`bench.results`; ``--no-store``: compare only).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import yaml

from bench.results import Figures, add_no_store, report
from bench.synth import documents, route, service
from turnout.engine.compile import compile_table
from turnout.engine.model import parse_documents
from turnout.engine.pipeline import IncrementalCompiler, gc_paused
from turnout.engine.validate import validate_documents
from turnout.engine.xds import translate

T = TypeVar("T")
NS = "bench"
FILES = 100
LAYOUTS = {"one parent": 1, "1,000 Services": 1_000}
SHORT = {"one parent": "one parent", "1,000 Services": "1k Services"}
"""Layout -> the prefix of its stored figures."""


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def stage_times(n: int, services: int = 1) -> dict[str, float]:
    """Each stage as `mesh` runs it (the pipeline pauses the cyclic GC for the batch)."""
    docs = documents(n, services=services)
    with gc_paused():
        (resources, _), t_parse = timed(lambda: parse_documents(docs))
        _, t_validate = timed(lambda: validate_documents(docs, resources))
        result, t_compile = timed(lambda: compile_table(resources))
        _, t_xds = timed(lambda: translate(result.table))
    gc.collect()
    times = {"parse": t_parse, "validate": t_validate, "compile": t_compile, "xds": t_xds}
    times["total"] = sum(times.values())
    return times


def _slice(ready: bool, svc: str = "v1", address: str = "10.0.0.1") -> dict[str, object]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{svc}-a",
            "namespace": NS,
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": ready}}],
    }


def _routes(lo: int, hi: int, services: int, edit: int | None = None) -> list[object]:
    out: list[object] = []
    for i in range(lo, hi):
        r = route(NS, i, parent="web" if services == 1 else f"web{i % services}")
        if i == edit:
            r["spec"]["rules"][0]["backendRefs"][0]["weight"] = 50 + i % 40  # type: ignore[index]
        out.append(r)
    return out


def one_change(n: int, services: int, runs: int = 7) -> dict[str, float]:
    """Median CPU seconds of `IncrementalCompiler` after one route / one slice changed."""
    per = n // FILES
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        parents = ["web"] if services == 1 else [f"web{k}" for k in range(services)]
        docs = [service(NS, p) for p in [*parents, "v1", "v2"]]
        (root / "services.yaml").write_text(yaml.safe_dump_all(docs))
        (root / "slices.yaml").write_text(yaml.safe_dump_all([_slice(True), _slice(True, "v2")]))
        for f in range(FILES):
            text = yaml.safe_dump_all(_routes(f * per, (f + 1) * per, services))
            (root / f"routes-{f:03d}.yaml").write_text(text)
        past = time.time() - 3600  # files edited long ago, as in a real checkout
        for p in root.iterdir():
            os.utime(p, (past, past))
        compiler = IncrementalCompiler()
        paths = [root]
        _, full = timed(lambda: compiler(paths))
        compiler(paths)  # the stat pre-check is trusted from here on
        route_times, slice_times = [], []
        for k in range(runs):
            f = (k * 37) % FILES
            edit = f * per + k
            text = yaml.safe_dump_all(_routes(f * per, (f + 1) * per, services, edit=edit))
            (root / f"routes-{f:03d}.yaml").write_text(text)
            out, t = timed(lambda: compiler(paths))
            assert compiler._table.units_compiled == 1, compiler._table.units_compiled
            route_times.append(t)
            slices = [_slice(True, address=f"10.0.1.{k}"), _slice(True, "v2")]  # a pod replaced
            (root / "slices.yaml").write_text(yaml.safe_dump_all(slices))
            _, t = timed(lambda: compiler(paths))
            assert compiler._table.units_compiled == 0
            slice_times.append(t)
            gc.collect()
        del out
    return {
        "first": full,
        "route": statistics.median(route_times),
        "slice": statistics.median(slice_times),
    }


def median_stage_times(n: int, services: int, rounds: int) -> dict[str, float]:
    """Each stage's median over `rounds` runs (the total: the median of the totals)."""
    runs = [stage_times(n, services) for _ in range(rounds)]
    return {stage: statistics.median(r[stage] for r in runs) for stage in runs[0]}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compile", description=__doc__)
    parser.add_argument(
        "--rounds", type=int, default=3, help="full compiles of 10k per layout; medians count"
    )
    add_no_store(parser, "compile")
    args = parser.parse_args(argv)
    print(f"== compile (CPU seconds of this process; load: {os.getloadavg()[0]:.2f})")
    figures: Figures = {}
    for layout, services in LAYOUTS.items():
        print(f"-- N HTTPRoutes (2 matches, 2 backends each) on {layout}")
        small = median_stage_times(1_000, services, args.rounds)
        large = median_stage_times(10_000, services, args.rounds)
        for stage in small:
            ratio = large[stage] / small[stage] if small[stage] else float("nan")
            print(
                f"  {stage:9s} 1k: {small[stage] * 1000:8.1f} ms   10k: "
                f"{large[stage] * 1000:8.1f} ms   10k/1k: {ratio:5.1f}x"
            )
            figures[f"{SHORT[layout]}: 10k {stage}"] = (large[stage] * 1000, "ms", "lower")
        verdict = "ok" if large["total"] < 1.0 else "OVER GOAL"
        print(f"  10k routes end to end: {large['total']:.2f} s (goal < 1 s: {verdict})")
        inc = one_change(10_000, services)
        verdict = "ok" if inc["route"] < 0.05 else "OVER GOAL"
        print(
            f"  directory of 10k, IncrementalCompiler: first {inc['first']:.2f} s, one route "
            f"changed {inc['route'] * 1000:.1f} ms (goal < 50 ms: {verdict}), one "
            f"EndpointSlice changed {inc['slice'] * 1000:.1f} ms (no route recompiled)"
        )
        figures[f"{SHORT[layout]}: directory first"] = (inc["first"] * 1000, "ms", "lower")
        figures[f"{SHORT[layout]}: one route changed"] = (inc["route"] * 1000, "ms", "lower")
        figures[f"{SHORT[layout]}: one slice changed"] = (inc["slice"] * 1000, "ms", "lower")
    report("compile", figures, store=not args.no_store)


if __name__ == "__main__":
    main()
