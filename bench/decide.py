"""Micro-benchmark of `RuntimeTable.decide()`: 10 vs 10,000 routes on one listener.

Run: ``.venv/bin/python bench/decide.py``. Prints ns/request per request kind and the
10k/10 ratio (goal <= 1.5: the lookup must not depend on the number of routes).
Routes are distinct: ``Exact /svcN/exact``, ``PathPrefix /svcN/api`` with an ``x-canary``
header variant on every third N, and a plain ``PathPrefix /svcN/api``; built like the tests
do (tests/proxy/builders.py), in docs/xds.md precedence order.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.proxy.builders import (
    LISTENER,
    by_precedence,
    mk_match,
    mk_route,
    mk_table,
    service_domains,
)
from turnout.proxy import RequestInfo, RuntimeTable

log = logging.getLogger(__name__)

ITERATIONS = 200_000


def build(n_services: int) -> RuntimeTable:
    matches = []
    for i in range(n_services):
        matches.append(mk_match(f"svc{i}/exact", exact=f"/svc{i}/exact"))
        if i % 3 == 0:
            matches.append(
                mk_match(f"svc{i}/canary", prefix=f"/svc{i}/api", headers={"x-canary": "true"})
            )
        matches.append(mk_match(f"svc{i}/api", prefix=f"/svc{i}/api"))
    return mk_table(*(mk_route(m) for m in by_precedence(matches)), domains=service_domains())


def requests(n_services: int) -> dict[str, list[RequestInfo]]:
    picks = sorted(
        {0, 3, n_services // 2 - n_services // 2 % 3, n_services - 1 - (n_services - 1) % 3}
    )
    hdrs = (("user-agent", "bench"), ("accept", "*/*"))
    canary = (*hdrs, ("X-Canary", "true"))

    def r(path: str, headers: tuple[tuple[str, str], ...] = hdrs) -> RequestInfo:
        return RequestInfo(
            method="GET", authority="web.shop.svc.cluster.local:80", path=path, headers=headers
        )

    return {
        "exact": [r(f"/svc{i}/exact") for i in picks],
        "prefix-deep": [r(f"/svc{i}/api/v1/items/42") for i in picks],
        "prefix-header-miss": [r(f"/svc{i}/api/x") for i in picks],
        "prefix-header-hit": [r(f"/svc{i}/api/x", canary) for i in picks],
        "no-route-404": [r(f"/nothing/{i}/here") for i in picks],
    }


def time_ns(table: RuntimeTable, reqs: list[RequestInfo]) -> float:
    decide = table.decide
    n = ITERATIONS // len(reqs)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(n):
            for req in reqs:
                decide(req, listener=LISTENER)
        best = min(best, (time.perf_counter_ns() - start) / (n * len(reqs)))
    return best


def main() -> None:
    results: dict[int, dict[str, float]] = {}
    for n in (10, 10_000):
        t0 = time.perf_counter()
        table = build(n)
        routes = sum(len(vh.index.routes) for vhs in table.route_configs.values() for vh in vhs)
        print(f"built {routes} routes ({n} services) in {time.perf_counter() - t0:.2f}s")
        results[n] = {kind: time_ns(table, reqs) for kind, reqs in requests(n).items()}
    print(f"{'request':<22}{'10 svc ns':>12}{'10k svc ns':>12}{'ratio':>8}")
    for kind in results[10]:
        small, big = results[10][kind], results[10_000][kind]
        print(f"{kind:<22}{small:>12.0f}{big:>12.0f}{big / small:>8.2f}")
    total_small, total_big = sum(results[10].values()), sum(results[10_000].values())
    print(f"{'all':<22}{total_small:>12.0f}{total_big:>12.0f}{total_big / total_small:>8.2f}")


if __name__ == "__main__":
    main()
