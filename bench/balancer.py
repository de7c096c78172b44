"""Micro-benchmark of the balancer and retry budget on the request path.

Run: ``.venv/bin/python bench/balancer.py``. Prints ns per request for `pick` + `start` +
`finish` with 3 and 100 endpoints (the cost must not grow with the endpoint count: P2C looks
at two), the same with one endpoint backed off after failures (the slow path that filters
the ready list), and ns per `deposit` + `try_withdraw` of a retry budget. Uses the real
monotonic clock and `random.random`, as the proxy does.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from turnout.proxy.balancer import Balancers, BalancerSettings
from turnout.proxy.budget import Budgets
from turnout.proxy.clusters import ClusterInfo, Endpoint

log = logging.getLogger(__name__)

ITERATIONS = 200_000
CLUSTER = "shop/web:80"


def cluster(n: int) -> dict[str, ClusterInfo]:
    eps = tuple(
        Endpoint(address=f"10.0.{i // 250}.{i % 250}", port=8080, healthy=True) for i in range(n)
    )
    return {CLUSTER: ClusterInfo(name=CLUSTER, endpoints=eps, endpoints_known=True)}


def time_balancer(n: int, *, tripped: bool = False) -> float:
    # A backoff longer than the run keeps the tripped endpoint out the whole time.
    hour_ms = 3_600_000
    settings = BalancerSettings(min_backoff_ms=hour_ms, max_backoff_ms=hour_ms)
    balancers = Balancers(settings=settings)
    balancers.update(cluster(n))
    balancer = balancers.get(CLUSTER)
    assert balancer is not None
    if tripped:
        bad = balancer.endpoints[0]
        for _ in range(7):
            balancer.finish(bad, 1.0, failed=True)
    rtts = [float(1 + i % 17) for i in range(64)]
    pick, start, finish = balancer.pick, balancer.start, balancer.finish
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for i in range(ITERATIONS):
            ep = pick()
            assert ep is not None
            start(ep)
            finish(ep, rtts[i & 63], failed=False)
        best = min(best, (time.perf_counter_ns() - t0) / ITERATIONS)
    return best


def time_budget() -> float:
    budgets = Budgets()
    budgets.update({CLUSTER: ClusterInfo(name=CLUSTER)})
    budget = budgets.get(CLUSTER)
    assert budget is not None
    deposit, try_withdraw = budget.deposit, budget.try_withdraw
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(ITERATIONS):
            deposit()
            try_withdraw()
        best = min(best, (time.perf_counter_ns() - t0) / ITERATIONS)
    return best


def main() -> None:
    print(f"{'balancer':<34}{'ns/request':>12}")
    for n in (3, 100):
        print(f"{f'pick+start+finish, {n} endpoints':<34}{time_balancer(n):>12.0f}")
    for n in (3, 100):
        label = f"  same, 1 of {n} backed off"
        print(f"{label:<34}{time_balancer(n, tripped=True):>12.0f}")
    print(f"{'budget deposit+try_withdraw':<34}{time_budget():>12.0f}")


if __name__ == "__main__":
    main()
