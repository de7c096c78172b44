"""Retry budgets: how many retries a cluster may take, so retries cannot become a storm.

```
table swap: {name: ClusterInfo.retry_budget} ──Budgets.update──> Budget per cluster
request:    budget.deposit()                 once per original request
            budget.try_withdraw() -> bool    before each retry; True = send it (it is counted)
```

The model is GEP-3388's `retryConstraint` and Linkerd's retry budget (tower's `TpsBudget`):
a retry is allowed while

- the retries counted over the last `interval_ms` stay within `percent` % of the original
  requests deposited over the same window (20 % over 10 s by default), or else
- fewer than `min_retry_count` retries were let through by the floor over the last
  `min_retry_interval_ms` (10 per second by default), so a quiet service can still retry.

The two allowances add up: at most ``percent % of requests + min_retry_count`` per floor
interval. A retry the ratio allows is charged to the ratio; only the rest uses the floor.

Both windows slide in `DEFAULT_BUDGET_SLOTS` buckets (10, as tower's budget), each a ring of
counters plus a running total, so a call costs O(1) and no timestamps are stored per request;
a window therefore covers between (slots - 1) / slots and all of its interval.

Not here: which outcomes are retriable, backoff, attempt limits (`retries.py`), concurrency
limits (Envoy's `retry_budget` counts active requests; ours counts requests over time, as
Linkerd and GEP-3388 do), locks (one event loop). Time comes from an injectable `Clock`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from turnout.proxy.balancer import Clock, MonotonicClock
from turnout.proxy.clusters import ClusterInfo, RetryBudget
from turnout.proxy.config import (
    DEFAULT_BUDGET_INTERVAL_MS,
    DEFAULT_BUDGET_PERCENT,
    DEFAULT_BUDGET_SLOTS,
    DEFAULT_MIN_RETRY_COUNT,
    DEFAULT_MIN_RETRY_INTERVAL_MS,
)

log = logging.getLogger(__name__)

DEFAULT_RETRY_BUDGET = RetryBudget(
    percent=DEFAULT_BUDGET_PERCENT,
    interval_ms=DEFAULT_BUDGET_INTERVAL_MS,
    min_retry_count=DEFAULT_MIN_RETRY_COUNT,
    min_retry_interval_ms=DEFAULT_MIN_RETRY_INTERVAL_MS,
)
"""Budget of a cluster whose xDS carries no ``turnout.retryBudget`` (Linkerd fills the same
defaults in when a ServiceProfile has none)."""


class _Window:
    """Counters over a sliding window of `slots` buckets; `total` is their sum."""

    __slots__ = ("buckets", "head", "rate", "tick", "total", "until")

    def __init__(self, interval_ms: int, slots: int, now: float) -> None:
        self.buckets = [0] * slots
        self.rate = slots * 1000.0 / max(interval_ms, 1)
        """Buckets per second."""
        self.tick = int(now * self.rate)
        """Bucket number (since the clock's epoch) `head` stands for."""
        self.head = self.tick % slots
        self.total = 0
        self.until = (self.tick + 1) / self.rate
        """Clock time the `head` bucket ends: `advance` has nothing to do before it."""

    def advance(self, now: float) -> None:
        tick = int(now * self.rate)
        steps = tick - self.tick
        if steps <= 0:
            return
        buckets = self.buckets
        n = len(buckets)
        if steps >= n:
            for i in range(n):
                buckets[i] = 0
            self.total = 0
        else:
            head = self.head
            for _ in range(steps):
                head = head + 1 if head + 1 < n else 0
                self.total -= buckets[head]
                buckets[head] = 0
        self.tick = tick
        self.head = tick % n
        self.until = (tick + 1) / self.rate

    def add(self) -> None:
        self.buckets[self.head] += 1
        self.total += 1


class Budget:
    """One cluster's retry budget. See the module docstring."""

    __slots__ = ("_floor", "_now", "_percent", "_requests", "_retries", "params")

    def __init__(
        self,
        params: RetryBudget = DEFAULT_RETRY_BUDGET,
        *,
        clock: Clock,
        slots: int = DEFAULT_BUDGET_SLOTS,
    ) -> None:
        self.params = params
        self._now = clock.now
        now = self._now()
        self._percent = max(params.percent, 0)
        self._requests = _Window(params.interval_ms, slots, now)
        """Original requests deposited."""
        self._retries = _Window(params.interval_ms, slots, now)
        """Retries charged to the ratio."""
        self._floor = _Window(params.min_retry_interval_ms, slots, now)
        """Retries charged to the floor."""

    def deposit(self) -> None:
        """Count one original request (never a retry)."""
        requests = self._requests
        now = self._now()
        if now >= requests.until:  # (a clock that went back: the bucket it was in)
            requests.advance(now)
        requests.buckets[requests.head] += 1  # `add`, inlined: once per request
        requests.total += 1

    def try_withdraw(self) -> bool:
        """True if one more retry fits the budget, and count it; False: don't retry."""
        now = self._now()
        requests, retries = self._requests, self._retries
        requests.advance(now)
        retries.advance(now)
        if retries.total * 100 < requests.total * self._percent:
            retries.add()
            return True
        floor = self._floor
        floor.advance(now)
        if floor.total < self.params.min_retry_count:
            floor.add()
            return True
        return False

    @property
    def requests(self) -> int:
        """Original requests in the current window."""
        self._requests.advance(self._now())
        return self._requests.total

    @property
    def retries(self) -> int:
        """Retries allowed in the current window (ratio) plus in the current floor window."""
        now = self._now()
        self._retries.advance(now)
        self._floor.advance(now)
        return self._retries.total + self._floor.total


class Budgets:
    """One `Budget` per cluster, carried across table swaps while its parameters hold."""

    __slots__ = ("_by_cluster", "_clock", "_slots")

    def __init__(self, *, clock: Clock | None = None, slots: int = DEFAULT_BUDGET_SLOTS) -> None:
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._slots = slots
        self._by_cluster: dict[str, Budget] = {}

    def update(self, clusters: Mapping[str, ClusterInfo]) -> None:
        """Follow a table swap; a cluster whose budget parameters changed starts afresh."""
        old = self._by_cluster
        new: dict[str, Budget] = {}
        for name, info in clusters.items():
            params = info.retry_budget if info.retry_budget is not None else DEFAULT_RETRY_BUDGET
            budget = old.get(name)
            if budget is None or budget.params != params:
                budget = Budget(params, clock=self._clock, slots=self._slots)
            new[name] = budget
        self._by_cluster = new
        log.debug("retry budgets updated clusters=%d", len(new))

    def get(self, cluster: str) -> Budget | None:
        """The cluster's budget; None for a cluster the table does not have."""
        return self._by_cluster.get(cluster)
