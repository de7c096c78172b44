"""Retry budgets (`turnout.proxy.budget`) on a fake clock: ratio, floor, sliding window, swaps."""

from __future__ import annotations

import random

from turnout.proxy.budget import DEFAULT_RETRY_BUDGET, Budget, Budgets
from turnout.proxy.clusters import ClusterInfo, RetryBudget


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def mk_params(
    percent: int = 20, interval_ms: int = 10_000, min_count: int = 10, min_interval_ms: int = 1_000
) -> RetryBudget:
    return RetryBudget(
        percent=percent,
        interval_ms=interval_ms,
        min_retry_count=min_count,
        min_retry_interval_ms=min_interval_ms,
    )


def withdraw_all(budget: Budget) -> int:
    n = 0
    while budget.try_withdraw():
        n += 1
    return n


def test_defaults_are_twenty_percent_over_ten_seconds_plus_ten_per_second() -> None:
    assert mk_params(20, 10_000, 10, 1_000) == DEFAULT_RETRY_BUDGET


def test_hundred_requests_per_second_allow_twenty_retries_per_second_plus_the_floor() -> None:
    clock = FakeClock()
    budget = Budget(mk_params(), clock=clock)
    per_second: list[int] = []
    for _ in range(30):
        allowed = 0
        for _ in range(100):  # 100 requests/s, each retried as often as the budget lets
            clock.advance(0.010)
            budget.deposit()
            allowed += withdraw_all(budget)
        per_second.append(allowed)
    steady = per_second[10:]  # once the 10 s window is full
    assert all(28 <= n <= 32 for n in steady), steady  # 20 % of 100 + 10
    assert sum(steady) / len(steady) == 30


def test_a_failing_backend_never_causes_a_retry_storm() -> None:
    clock = FakeClock()
    budget = Budget(mk_params(), clock=clock)
    rng = random.Random(3388)
    seconds, rate, max_retries = 60, 100, 3
    requests = retries = denied = 0
    for _ in range(seconds * rate):
        clock.advance(1 / rate)
        budget.deposit()
        requests += 1
        for _ in range(max_retries):
            if rng.random() >= 0.5:  # this try succeeded
                break
            if not budget.try_withdraw():
                denied += 1
                break
            retries += 1
    # Unbudgeted this would be ~0.875 retries per request (0.5 + 0.25 + 0.125).
    floor = 10 * seconds
    assert retries <= 0.2 * requests + floor
    assert retries >= 0.2 * requests  # the budget is used, not just capped
    assert denied > 0


def test_the_floor_allows_retries_with_zero_traffic() -> None:
    clock = FakeClock()
    budget = Budget(mk_params(), clock=clock)
    assert withdraw_all(budget) == 10
    clock.advance(0.5)
    assert not budget.try_withdraw()
    clock.advance(0.5)  # the floor's 1 s window has slid past the first ten
    assert withdraw_all(budget) == 10


def test_the_floor_alone_when_percent_is_zero() -> None:
    clock = FakeClock()
    budget = Budget(mk_params(percent=0, min_count=3), clock=clock)
    for _ in range(1000):
        budget.deposit()
    assert withdraw_all(budget) == 3


def test_the_window_slides_requests_and_retries_out_together() -> None:
    clock = FakeClock(0.0)
    budget = Budget(mk_params(min_count=0), clock=clock)
    for _ in range(100):
        budget.deposit()
    assert withdraw_all(budget) == 20

    clock.advance(9.5)
    assert not budget.try_withdraw()  # still the same 100 requests and 20 retries
    for _ in range(100):
        budget.deposit()
    assert withdraw_all(budget) == 20  # 200 requests in the window, 40 retries
    assert (budget.requests, budget.retries) == (200, 40)

    clock.advance(0.7)  # t = 10.2 s: the requests and retries of t = 0 have left
    assert (budget.requests, budget.retries) == (100, 20)
    assert not budget.try_withdraw()

    clock.advance(30.0)  # long idle: everything expired at once
    assert (budget.requests, budget.retries) == (0, 0)
    assert not budget.try_withdraw()


def test_a_retry_is_allowed_while_below_the_ratio() -> None:
    clock = FakeClock()
    budget = Budget(mk_params(min_count=0), clock=clock)
    for _ in range(4):
        budget.deposit()
    assert budget.try_withdraw()  # 0 retries < 20 % of 4
    assert not budget.try_withdraw()  # 1 retry >= 0.8


def mk_cluster(name: str, budget: RetryBudget | None) -> ClusterInfo:
    return ClusterInfo(name=name, retry_budget=budget)


def test_budgets_keep_state_while_the_parameters_hold() -> None:
    clock = FakeClock()
    budgets = Budgets(clock=clock)
    budgets.update({"web": mk_cluster("web", mk_params()), "db": mk_cluster("db", None)})
    web, db = budgets.get("web"), budgets.get("db")
    assert web is not None and db is not None
    assert db.params == DEFAULT_RETRY_BUDGET
    for _ in range(50):
        web.deposit()

    budgets.update({"web": mk_cluster("web", mk_params()), "db": mk_cluster("db", mk_params(50))})
    assert budgets.get("web") is web
    assert web.requests == 50
    new_db = budgets.get("db")
    assert new_db is not None and new_db is not db
    assert new_db.params.percent == 50

    budgets.update({"db": mk_cluster("db", mk_params(50))})
    assert budgets.get("web") is None
    assert budgets.get("db") is new_db


def test_a_burst_of_route_retries_within_the_floor_is_never_refused() -> None:
    """A quiet backend: a burst of requests that each want one retry, up to the floor's
    count within one floor interval, all get it, whatever the phase of the sliding window."""
    for start in (1000.0, 1000.05, 1000.099, 1000.95):
        clock = FakeClock(start)
        budget = Budget(DEFAULT_RETRY_BUDGET, clock=clock)
        for _ in range(DEFAULT_RETRY_BUDGET.min_retry_count):
            budget.deposit()
            assert budget.try_withdraw()
            clock.advance(0.001)


def test_one_backends_retries_do_not_spend_anothers_budget() -> None:
    """The budget is per backend Service (per cluster, GEP-3388 puts it on the Service):
    exhausting one leaves another's floor and ratio whole."""
    clock = FakeClock()
    budgets = Budgets(clock=clock)
    budgets.update({"web": mk_cluster("web", None), "db": mk_cluster("db", None)})
    web, db = budgets.get("web"), budgets.get("db")
    assert web is not None and db is not None and web is not db
    for _ in range(100):
        web.deposit()
    assert withdraw_all(web) == 20 + DEFAULT_RETRY_BUDGET.min_retry_count
    assert not web.try_withdraw()
    assert withdraw_all(db) == DEFAULT_RETRY_BUDGET.min_retry_count
