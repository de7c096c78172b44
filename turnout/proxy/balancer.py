"""Per-cluster endpoint choice: peak-EWMA load with power-of-two-choices, as Linkerd balances.

```
table swap: {name: ClusterInfo} ──Balancers.update──> Balancer per cluster (state kept
                                                       for every unchanged address:port)
request:    balancer.pick() ──> Endpoint | None (None: no ready endpoint, the answer 503)
            balancer.start(ep) ... upstream attempt ... balancer.finish(ep, rtt_ms, failed=...)
  or, the request path's:
            slot = balancer.acquire() (pick + start) ... slot.addr ... balancer.release(slot, ...)
```

The load of an endpoint is its RTT estimate times (pending + 1), the cost of tower's
`PeakEwma` that linkerd2-proxy balances with (`load: peak_ewma{default_rtt, decay}` in
LINKERD-REFERENCE.md §f). The estimate:

- starts at `default_rtt_ms` (30 ms) for an endpoint nothing was observed on yet;
- jumps at once to an observation above it (the "peak");
- otherwise moves toward the observation by ``1 - exp(-elapsed / decay)``, where `elapsed`
  is the time since the estimate was last touched;
- decays toward zero while it is only read, so an endpoint that looked slow once is tried
  again later instead of being starved for good (tower decays in `load()` the same way).

`pick()` draws two distinct ready endpoints and takes the one with the lower load (tower's
`p2c`); one ready endpoint is returned as is, without reading its load.

Failures (``finish(..., failed=True)``: an attempt that got no response, i.e. connect error,
reset or timeout; a 5xx is a response and is observed like any other) never make an endpoint
look faster: the estimate becomes the largest of itself, the RTT and `default_rtt_ms`. This
keeps a fast-failing endpoint from drawing all traffic (the black hole of least-loaded
balancing). After `max_failures` consecutive failures the endpoint leaves the balancer for a
jittered, doubling backoff; then the next request is its probe (one in flight at a time), and
a success brings it back while a failure backs it off again, twice as long: Linkerd's
consecutive failure accrual (`balancer.linkerd.io/failure-accrual: consecutive`), here on by
default because xDS carries no setting for it. All ready endpoints backed off: `pick()` is
None, as Linkerd answers 503; `backed_off` tells that case ("service in fail-fast") from a
cluster with no ready endpoint at all.

Not here: health checking (only EDS `healthy` endpoints are eligible), endpoint weights,
zone awareness, request queueing (Linkerd's per-backend queue), locks (one event loop) and
per-request allocation on the fast path. Time comes from an injectable `Clock` and
randomness from an injectable ``Callable[[], float]``, so tests are deterministic.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from math import exp
from typing import Protocol

from turnout.proxy.clusters import ClusterInfo, Endpoint
from turnout.proxy.config import (
    DEFAULT_EWMA_DECAY_MS,
    DEFAULT_EWMA_RTT_MS,
    DEFAULT_FAILURE_ACCRUAL_JITTER_PERCENT,
    DEFAULT_FAILURE_ACCRUAL_MAX_BACKOFF_MS,
    DEFAULT_FAILURE_ACCRUAL_MAX_FAILURES,
    DEFAULT_FAILURE_ACCRUAL_MIN_BACKOFF_MS,
)

log = logging.getLogger(__name__)

_RTT_FLOOR_MS = 1e-3
"""The estimate never decays below 1 µs, so pending requests still count after a long idle."""


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...


class MonotonicClock:
    """The real clock: `time.monotonic` (the builtin itself, so reading it costs no Python
    call on the request path)."""

    __slots__ = ()

    now = staticmethod(time.monotonic)


@dataclass(frozen=True, slots=True, kw_only=True)
class BalancerSettings:
    default_rtt_ms: int = DEFAULT_EWMA_RTT_MS
    """Estimate of an endpoint with no observation yet, in ms."""
    decay_ms: int = DEFAULT_EWMA_DECAY_MS
    """Time constant of the estimate's decay, in ms (must be > 0)."""
    max_failures: int = DEFAULT_FAILURE_ACCRUAL_MAX_FAILURES
    """Consecutive failed attempts that take an endpoint out for a backoff; 0 = never."""
    min_backoff_ms: int = DEFAULT_FAILURE_ACCRUAL_MIN_BACKOFF_MS
    """First backoff, in ms; each further trip doubles it."""
    max_backoff_ms: int = DEFAULT_FAILURE_ACCRUAL_MAX_BACKOFF_MS
    """Cap of the doubling backoff, in ms."""
    jitter_percent: int = DEFAULT_FAILURE_ACCRUAL_JITTER_PERCENT
    """Each backoff is lengthened by a random 0..jitter_percent % of itself."""


DEFAULT_BALANCER_SETTINGS = BalancerSettings()

Key = tuple[str, int]
"""An endpoint's identity across table swaps: (address, port)."""


class Slot:
    """Mutable state of one endpoint; survives table swaps while its address:port does.
    `Balancer.acquire` hands one out for a try, `Balancer.release` takes it back."""

    __slots__ = (
        "addr",
        "backoff_s",
        "endpoint",
        "failures",
        "pending",
        "removed",
        "rtt_ms",
        "stamp",
        "until",
    )

    def __init__(self, endpoint: Endpoint, *, rtt_ms: float, now: float, backoff_s: float) -> None:
        self.endpoint = endpoint
        self.addr: Key = (endpoint.address, endpoint.port)
        """Where to connect: the endpoint's (address, port)."""
        self.removed = False
        """A table update dropped the endpoint: a try still on it changes nothing."""
        self.rtt_ms = rtt_ms
        """Peak-EWMA estimate as of `stamp`, in ms."""
        self.stamp = now
        """Clock time the estimate was last decayed or updated."""
        self.pending = 0
        """Attempts started and not finished."""
        self.failures = 0
        """Consecutive failed attempts."""
        self.until = 0.0
        """Clock time the current backoff ends (0.0: none)."""
        self.backoff_s = backoff_s
        """Length of the next backoff, before jitter."""


class Balancer:
    """Peak-EWMA + P2C over one cluster's endpoints. See the module docstring."""

    __slots__ = (
        "_by_key",
        "_neg_inv_tau_s",
        "_now",
        "_random",
        "_ready",
        "_settings",
        "_tripped",
        "name",
    )

    def __init__(
        self,
        name: str,
        endpoints: Iterable[Endpoint] = (),
        *,
        clock: Clock,
        rng: Callable[[], float],
        settings: BalancerSettings = DEFAULT_BALANCER_SETTINGS,
    ) -> None:
        self.name = name
        self._settings = settings
        self._neg_inv_tau_s = -1000.0 / settings.decay_ms
        self._now = clock.now
        self._random = rng
        self._by_key: dict[Key, Slot] = {}
        self._ready: list[Slot] = []
        """Healthy endpoints that are not tripped: what P2C draws from."""
        self._tripped: dict[Key, Slot] = {}
        """Endpoints at or past `max_failures`: backed off, or waiting for a good probe."""
        self.update(endpoints)

    # ------------------------------------------------------------------ table swaps

    def update(self, endpoints: Iterable[Endpoint]) -> None:
        """Install a new endpoint set, keeping the state of every unchanged address:port."""
        now = self._now()
        old = self._by_key
        by_key: dict[Key, Slot] = {}
        for ep in endpoints:
            key = (ep.address, ep.port)
            slot = old.get(key)
            if slot is None:
                slot = Slot(
                    ep,
                    rtt_ms=float(self._settings.default_rtt_ms),
                    now=now,
                    backoff_s=self._settings.min_backoff_ms / 1000.0,
                )
            slot.endpoint = ep
            by_key[key] = slot
        for key, slot in old.items():
            if key not in by_key:
                slot.removed = True
        self._by_key = by_key
        self._tripped = {k: s for k, s in self._tripped.items() if k in by_key}
        self._ready = [
            s for k, s in by_key.items() if s.endpoint.healthy and k not in self._tripped
        ]

    @property
    def backed_off(self) -> bool:
        """Some endpoint is backed off after consecutive failures (when `pick()` is None,
        every endpoint that is not is unready: the cluster is in fail-fast)."""
        return bool(self._tripped)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Every endpoint of the cluster, healthy or not, in EDS order."""
        return tuple(s.endpoint for s in self._by_key.values())

    # ------------------------------------------------------------------ per request

    def pick(self) -> Endpoint | None:
        """The ready endpoint of lower load among two drawn at random; None if none is ready."""
        slot = self._choose()
        return None if slot is None else slot.endpoint

    def acquire(self) -> Slot | None:
        """`pick` and `start` in one: the slot to send a try to (`slot.addr`), to give back
        with `release` when the try ends; None if no endpoint is ready."""
        ready = self._ready
        slot: Slot | None
        if len(ready) == 1 and not self._tripped:  # one endpoint: no draw (`_choose`)
            slot = ready[0]
        else:
            slot = self._choose()
            if slot is None:
                return None
        slot.pending += 1
        return slot

    def _choose(self) -> Slot | None:
        if self._tripped:
            probe = self._probe()
            if probe is not None:
                return probe
        ready = self._ready
        n = len(ready)
        if n < 2:
            return ready[0] if n else None
        rand = self._random
        i = int(rand() * n)
        j = int(rand() * (n - 1))
        if j >= i:
            j += 1
        a, b = ready[i], ready[j]
        # `_load` inlined for both: this is the request path's hottest code.
        now = self._now()
        k = self._neg_inv_tau_s
        elapsed = now - a.stamp
        if elapsed > 0.0:
            rtt = a.rtt_ms * exp(elapsed * k)
            a.rtt_ms = rtt if rtt > _RTT_FLOOR_MS else _RTT_FLOOR_MS
            a.stamp = now
        elapsed = now - b.stamp
        if elapsed > 0.0:
            rtt = b.rtt_ms * exp(elapsed * k)
            b.rtt_ms = rtt if rtt > _RTT_FLOOR_MS else _RTT_FLOOR_MS
            b.stamp = now
        return a if a.rtt_ms * (a.pending + 1) <= b.rtt_ms * (b.pending + 1) else b

    def start(self, ep: Endpoint) -> None:
        """An attempt to `ep` was sent: it counts as pending until `finish`."""
        slot = self._by_key.get((ep.address, ep.port))
        if slot is not None:
            slot.pending += 1

    def finish(self, ep: Endpoint, rtt_ms: float, *, failed: bool) -> None:
        """The attempt to `ep` ended after `rtt_ms`; `failed`: it got no response at all.

        An endpoint removed meanwhile is ignored; one removed and re-added got fresh state,
        whose pending count never goes below zero.
        """
        slot = self._by_key.get((ep.address, ep.port))
        if slot is not None:
            self.release(slot, rtt_ms, failed=failed)

    def release(self, slot: Slot, rtt_ms: float, *, failed: bool) -> None:
        """`finish` for a slot from `acquire` (a dropped endpoint's slot is ignored)."""
        if slot.removed:
            return
        if slot.pending:
            slot.pending -= 1
        now = self._now()
        rtt = rtt_ms if rtt_ms > _RTT_FLOOR_MS else _RTT_FLOOR_MS
        if failed:
            self._fail(slot, rtt, now)
            return
        if slot.failures:
            self._recover(slot)
        est = slot.rtt_ms
        if rtt > est:
            slot.rtt_ms = rtt  # peak: a slower observation replaces the estimate at once
        else:
            elapsed = now - slot.stamp
            decay = exp(elapsed * self._neg_inv_tau_s) if elapsed > 0.0 else 1.0
            slot.rtt_ms = est * decay + rtt * (1.0 - decay)
        slot.stamp = now

    # ------------------------------------------------------------------ introspection

    def load(self, ep: Endpoint) -> float | None:
        """`ep`'s current load (estimate ms x (pending + 1)); None if not in the cluster."""
        slot = self._by_key.get((ep.address, ep.port))
        return None if slot is None else self._load(slot, self._now())

    def pending(self, ep: Endpoint) -> int:
        slot = self._by_key.get((ep.address, ep.port))
        return 0 if slot is None else slot.pending

    # ------------------------------------------------------------------ internals

    def _load(self, slot: Slot, now: float) -> float:
        # tower's `PeakEwma::load` decays the estimate toward zero before reading it.
        elapsed = now - slot.stamp
        if elapsed > 0.0:
            rtt = slot.rtt_ms * exp(elapsed * self._neg_inv_tau_s)
            slot.rtt_ms = rtt if rtt > _RTT_FLOOR_MS else _RTT_FLOOR_MS
            slot.stamp = now
        return slot.rtt_ms * (slot.pending + 1)

    def _fail(self, slot: Slot, rtt: float, now: float) -> None:
        settings = self._settings
        elapsed = now - slot.stamp
        est = slot.rtt_ms * exp(elapsed * self._neg_inv_tau_s) if elapsed > 0.0 else slot.rtt_ms
        slot.rtt_ms = max(est, rtt, float(settings.default_rtt_ms))
        slot.stamp = now
        if not settings.max_failures:
            return
        slot.failures += 1
        # Failures of attempts that were in flight when the endpoint tripped don't extend it.
        if slot.failures < settings.max_failures or now < slot.until:
            return
        backoff = slot.backoff_s * (1.0 + settings.jitter_percent / 100.0 * self._random())
        slot.until = now + backoff
        slot.backoff_s = min(slot.backoff_s * 2.0, settings.max_backoff_ms / 1000.0)
        key = (slot.endpoint.address, slot.endpoint.port)
        if key not in self._tripped:
            self._tripped[key] = slot
            if slot in self._ready:
                self._ready.remove(slot)
        log.debug(
            "endpoint backed off cluster=%s endpoint=%s:%d failures=%d backoff_ms=%d",
            self.name,
            slot.endpoint.address,
            slot.endpoint.port,
            slot.failures,
            int(backoff * 1000),
        )

    def _probe(self) -> Slot | None:
        """A tripped endpoint whose backoff is over and that has no attempt in flight.

        Linkerd's failure accrual: after the penalty the endpoint gets one probe request of
        real traffic; it rejoins the balancer once an attempt succeeds (`_recover`).
        """
        now = self._now()
        for slot in self._tripped.values():
            if now >= slot.until and not slot.pending and slot.endpoint.healthy:
                return slot
        return None

    def _recover(self, slot: Slot) -> None:
        slot.failures = 0
        slot.backoff_s = self._settings.min_backoff_ms / 1000.0
        key = (slot.endpoint.address, slot.endpoint.port)
        if self._tripped.pop(key, None) is not None and slot.endpoint.healthy:
            self._ready.append(slot)


class Balancers:
    """One `Balancer` per cluster, carried across table swaps."""

    __slots__ = ("_by_cluster", "_clock", "_rng", "_settings")

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        rng: Callable[[], float] | None = None,
        settings: BalancerSettings = DEFAULT_BALANCER_SETTINGS,
    ) -> None:
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._rng = rng if rng is not None else random.random
        self._settings = settings
        self._by_cluster: dict[str, Balancer] = {}

    def update(self, clusters: Mapping[str, ClusterInfo]) -> None:
        """Follow a table swap: update kept clusters, add new ones, drop removed ones."""
        old = self._by_cluster
        new: dict[str, Balancer] = {}
        for name, info in clusters.items():
            balancer = old.get(name)
            if balancer is None:
                balancer = Balancer(name, clock=self._clock, rng=self._rng, settings=self._settings)
            balancer.update(info.endpoints)
            new[name] = balancer
        added = new.keys() - old.keys()
        removed = old.keys() - new.keys()
        self._by_cluster = new
        log.debug(
            "balancers updated clusters=%d added=%d removed=%d", len(new), len(added), len(removed)
        )

    def get(self, cluster: str) -> Balancer | None:
        """The cluster's balancer; None for a cluster the table does not have."""
        return self._by_cluster.get(cluster)
