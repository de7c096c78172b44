"""Peak-EWMA + power-of-two-choices (`turnout.proxy.balancer`), on a fake clock and a seeded rng.

Latency-aware behaviour is checked by a small discrete-event simulation: requests arrive at a
fixed rate, each endpoint answers after its own latency, and the balancer sees `start` at the
pick and `finish` when the answer is due, in time order.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter

import pytest

from turnout.proxy.balancer import Balancer, Balancers, BalancerSettings
from turnout.proxy.clusters import ClusterInfo, Endpoint
from turnout.proxy.config import DEFAULT_EWMA_DECAY_MS, DEFAULT_EWMA_RTT_MS


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def mk_ep(n: int, *, healthy: bool = True, port: int = 8080) -> Endpoint:
    return Endpoint(address=f"10.0.0.{n}", port=port, healthy=healthy)


def mk_balancer(
    *endpoints: Endpoint, clock: FakeClock, seed: int = 7, settings: BalancerSettings | None = None
) -> Balancer:
    return Balancer(
        "shop/web:80",
        endpoints,
        clock=clock,
        rng=random.Random(seed).random,
        settings=settings or BalancerSettings(),
    )


def simulate(
    balancer: Balancer,
    clock: FakeClock,
    latency_ms: dict[Endpoint, float],
    *,
    n: int,
    gap_ms: float,
) -> Counter[Endpoint]:
    """`n` requests, one every `gap_ms`; returns how many each endpoint got."""
    picks: Counter[Endpoint] = Counter()
    due: list[tuple[float, int, Endpoint]] = []
    for i in range(n):
        arrival = clock.t + gap_ms / 1000
        while due and due[0][0] <= arrival:
            t, _, done = heapq.heappop(due)
            clock.t = t
            balancer.finish(done, latency_ms[done], failed=False)
        clock.t = arrival
        ep = balancer.pick()
        assert ep is not None
        picks[ep] += 1
        balancer.start(ep)
        heapq.heappush(due, (clock.t + latency_ms[ep] / 1000, i, ep))
    return picks


# --------------------------------------------------------------------------- picking


def test_p2c_prefers_the_faster_endpoint_under_load() -> None:
    clock = FakeClock()
    fast, slow = mk_ep(1), mk_ep(2)
    balancer = mk_balancer(fast, slow, clock=clock)
    picks = simulate(balancer, clock, {fast: 5.0, slow: 50.0}, n=5000, gap_ms=1.0)
    assert picks[fast] > 0.8 * 5000
    # ... but not all: once the fast one has ~10 pending, the slow one is cheaper.
    assert picks[slow] > 0


def test_the_slow_endpoint_takes_a_share_when_the_fast_one_is_saturated() -> None:
    clock = FakeClock()
    fast, slow = mk_ep(1), mk_ep(2)
    balancer = mk_balancer(fast, slow, clock=clock)
    # 0.2 ms between requests: the fast endpoint would hold 25 pending on its own.
    picks = simulate(balancer, clock, {fast: 5.0, slow: 50.0}, n=20_000, gap_ms=0.2)
    assert picks[fast] > picks[slow] > 0.02 * 20_000


def test_p2c_spreads_equal_endpoints_evenly() -> None:
    clock = FakeClock()
    eps = [mk_ep(i) for i in range(1, 5)]
    balancer = mk_balancer(*eps, clock=clock)
    picks = simulate(balancer, clock, dict.fromkeys(eps, 10.0), n=8000, gap_ms=1.0)
    assert set(picks) == set(eps)
    assert all(1600 < picks[ep] < 2400 for ep in eps)


def test_pending_requests_steer_picks_away() -> None:
    clock = FakeClock()
    a, b = mk_ep(1), mk_ep(2)
    balancer = mk_balancer(a, b, clock=clock)
    balancer.start(a)
    assert {balancer.pick() for _ in range(200)} == {b}
    balancer.start(b)
    balancer.start(b)
    assert {balancer.pick() for _ in range(200)} == {a}
    assert balancer.pending(a) == 1
    assert balancer.pending(b) == 2


def test_two_distinct_endpoints_are_compared_even_when_the_draws_collide() -> None:
    clock = FakeClock()
    a, b = mk_ep(1), mk_ep(2)
    balancer = Balancer("c", (a, b), clock=clock, rng=lambda: 0.0)
    balancer.start(a)
    assert balancer.pick() == b


def test_a_single_endpoint_is_picked_whatever_its_load() -> None:
    clock = FakeClock()
    a = mk_ep(1)
    balancer = mk_balancer(a, mk_ep(2, healthy=False), clock=clock)
    for _ in range(5):
        balancer.start(a)
    assert balancer.pick() == a


@pytest.mark.parametrize(
    "endpoints",
    [
        pytest.param((), id="no-endpoints"),
        pytest.param((mk_ep(1, healthy=False), mk_ep(2, healthy=False)), id="all-unhealthy"),
    ],
)
def test_no_ready_endpoint_picks_none(endpoints: tuple[Endpoint, ...]) -> None:
    assert mk_balancer(*endpoints, clock=FakeClock()).pick() is None


def test_unhealthy_endpoints_are_never_picked() -> None:
    clock = FakeClock()
    a, b, sick = mk_ep(1), mk_ep(2), mk_ep(3, healthy=False)
    balancer = mk_balancer(a, b, sick, clock=clock)
    for _ in range(20):  # a and b look busy and slow, the unhealthy one idle
        balancer.start(a)
        balancer.start(b)
    balancer.finish(a, 900.0, failed=False)
    balancer.finish(b, 900.0, failed=False)
    assert sick not in {balancer.pick() for _ in range(1000)}


# --------------------------------------------------------------------------- the estimate


def test_new_endpoints_get_the_default_estimate() -> None:
    clock = FakeClock()
    a, b = mk_ep(1), mk_ep(2)
    balancer = mk_balancer(a, clock=clock)
    balancer.finish(a, 5.0, failed=False)
    clock.advance(0.5)
    balancer.update((a, b))
    assert balancer.load(b) == DEFAULT_EWMA_RTT_MS == 30
    assert balancer.pending(b) == 0


def test_peak_jumps_up_on_a_slow_observation_and_decays() -> None:
    clock = FakeClock()
    a = mk_ep(1)
    balancer = mk_balancer(a, clock=clock)
    balancer.finish(a, 500.0, failed=False)
    assert balancer.load(a) == 500.0  # at once, not averaged in

    balancer.finish(a, 5.0, failed=False)  # no time has passed: a fast answer changes nothing
    assert balancer.load(a) == 500.0

    clock.advance(DEFAULT_EWMA_DECAY_MS / 1000)  # one time constant
    assert balancer.load(a) == pytest.approx(500.0 / math.e)

    for _ in range(6000):  # a minute of 50 ms answers, one every 10 ms
        clock.advance(0.010)
        balancer.finish(a, 50.0, failed=False)
    assert balancer.load(a) == pytest.approx(50.0, rel=0.01)


def test_a_lower_observation_is_averaged_in_by_the_time_since_the_last() -> None:
    clock = FakeClock()
    a = mk_ep(1)
    balancer = mk_balancer(a, clock=clock)
    balancer.finish(a, 100.0, failed=False)
    clock.advance(10.0)
    balancer.finish(a, 20.0, failed=False)  # tower: est * w + rtt * (1 - w), w = exp(-10s / 10s)
    w = math.exp(-1.0)
    assert balancer.load(a) == pytest.approx(100.0 * w + 20.0 * (1 - w))


def test_load_is_the_estimate_times_pending_plus_one() -> None:
    clock = FakeClock()
    a = mk_ep(1)
    balancer = mk_balancer(a, clock=clock)
    balancer.finish(a, 40.0, failed=False)
    balancer.start(a)
    balancer.start(a)
    assert balancer.load(a) == 120.0


def test_an_idle_estimate_never_reaches_zero() -> None:
    clock = FakeClock()
    a, b = mk_ep(1), mk_ep(2)
    balancer = mk_balancer(a, b, clock=clock)
    clock.advance(24 * 3600.0)
    balancer.start(a)
    load_a, load_b = balancer.load(a), balancer.load(b)
    assert load_a is not None and load_b is not None
    assert load_a > load_b > 0.0
    assert balancer.pick() == b


# --------------------------------------------------------------------------- failures


def test_a_fast_failure_never_makes_an_endpoint_look_faster() -> None:
    clock = FakeClock()
    a = mk_ep(1)
    balancer = mk_balancer(a, clock=clock)
    balancer.finish(a, 5.0, failed=False)
    clock.advance(1.0)
    balancer.finish(a, 0.2, failed=True)  # connection refused in 200 µs
    assert balancer.load(a) == DEFAULT_EWMA_RTT_MS
    balancer.finish(a, 300.0, failed=True)  # a timeout is a peak like any other
    assert balancer.load(a) == 300.0


def test_consecutive_failures_back_the_endpoint_off_then_let_one_probe_through() -> None:
    clock = FakeClock()
    bad, good = mk_ep(1), mk_ep(2)
    balancer = mk_balancer(bad, good, clock=clock)
    for _ in range(6):
        balancer.finish(bad, 1.0, failed=True)
    balancer.finish(good, 1000.0, failed=False)  # good looks much slower
    assert balancer.pick() == bad  # six failures: still in
    balancer.finish(bad, 1.0, failed=True)  # seventh: out for 1 s (+ up to 50 % jitter)
    assert {balancer.pick() for _ in range(100)} == {good}

    clock.advance(1.5)
    assert balancer.pick() == bad  # the probe
    balancer.start(bad)
    assert {balancer.pick() for _ in range(100)} == {good}  # one probe at a time
    balancer.finish(bad, 1.0, failed=True)  # probe failed: out again, for 2 s now
    clock.advance(1.9)
    assert {balancer.pick() for _ in range(100)} == {good}
    clock.advance(1.1)
    balancer.start(bad)
    balancer.finish(bad, 1.0, failed=False)  # probe succeeded: back for good
    clock.advance(5.0)  # the failures' peaks (30 ms) decay below good's 1000 ms... estimate
    balancer.start(bad)
    balancer.start(bad)
    assert balancer.pick() == bad


def test_failure_accrual_can_be_disabled() -> None:
    clock = FakeClock()
    bad, good = mk_ep(1), mk_ep(2)
    balancer = mk_balancer(bad, good, clock=clock, settings=BalancerSettings(max_failures=0))
    balancer.finish(good, 1000.0, failed=False)
    for _ in range(50):
        balancer.finish(bad, 1.0, failed=True)
    assert balancer.pick() == bad


# --------------------------------------------------------------------------- table swaps


def test_update_keeps_state_for_unchanged_endpoints() -> None:
    clock = FakeClock()
    a, b = mk_ep(1), mk_ep(2)
    balancer = mk_balancer(a, b, clock=clock)
    balancer.finish(a, 200.0, failed=False)
    balancer.start(a)
    balancer.start(b)

    a2 = Endpoint(address=a.address, port=a.port, healthy=True, zone="zone-b")  # new object
    c = mk_ep(3)
    a_other_port = mk_ep(1, port=9090)
    balancer.update((a2, c, a_other_port))

    assert balancer.endpoints == (a2, c, a_other_port)
    assert balancer.load(a2) == 400.0  # 200 ms x (1 pending + 1)
    assert balancer.pending(a2) == 1
    assert balancer.load(b) is None
    assert balancer.load(c) == balancer.load(a_other_port) == DEFAULT_EWMA_RTT_MS

    balancer.finish(a, 200.0, failed=False)  # an attempt started before the swap
    assert balancer.pending(a2) == 0
    balancer.finish(b, 10.0, failed=False)  # removed meanwhile: ignored
    balancer.update((a2, b, c))
    assert balancer.pending(b) == 0  # b came back with fresh state
    balancer.finish(b, 10.0, failed=False)
    assert balancer.pending(b) == 0


def test_acquired_slots_are_picked_endpoints_counted_pending_until_released() -> None:
    clock = FakeClock()
    a, b = mk_ep(1), mk_ep(2)
    balancer = mk_balancer(a, b, clock=clock)
    slot = balancer.acquire()
    assert slot is not None and slot.addr == (slot.endpoint.address, slot.endpoint.port)
    other = b if slot.endpoint == a else a
    assert balancer.pending(slot.endpoint) == 1
    assert {balancer.pick() for _ in range(100)} == {other}  # equal estimates, one pending
    balancer.release(slot, 500.0, failed=False)
    assert balancer.pending(slot.endpoint) == 0
    assert balancer.load(slot.endpoint) == 500.0  # the peak


def test_a_slot_released_after_its_endpoint_was_dropped_changes_nothing() -> None:
    clock = FakeClock()
    a, b = mk_ep(1), mk_ep(2)
    balancer = mk_balancer(a, clock=clock)
    slot = balancer.acquire()
    assert slot is not None and slot.endpoint == a
    balancer.update((b,))
    for _ in range(20):  # enough failures to trip it, were it still there
        balancer.release(slot, 1.0, failed=True)
    assert {balancer.pick() for _ in range(50)} == {b}
    balancer.update((a, b))  # back, with fresh state: the old try is not its business
    assert balancer.pending(a) == 0
    assert balancer.load(a) == DEFAULT_EWMA_RTT_MS
    assert {balancer.pick() for _ in range(200)} == {a, b}  # not backed off


def test_an_endpoint_turning_unhealthy_keeps_its_state_but_is_not_picked() -> None:
    clock = FakeClock()
    a, b = mk_ep(1), mk_ep(2)
    balancer = mk_balancer(a, b, clock=clock)
    balancer.finish(a, 80.0, failed=False)
    balancer.update((mk_ep(1, healthy=False), b))
    assert {balancer.pick() for _ in range(50)} == {b}
    balancer.update((a, b))
    assert balancer.load(a) == 80.0


def mk_cluster(name: str, *endpoints: Endpoint) -> ClusterInfo:
    return ClusterInfo(name=name, endpoints=endpoints, endpoints_known=True)


def test_balancers_follow_table_swaps() -> None:
    clock = FakeClock()
    a, b = mk_ep(1), mk_ep(2)
    balancers = Balancers(clock=clock, rng=random.Random(1).random)
    balancers.update({"shop/web:80": mk_cluster("shop/web:80", a), "shop/db:5432": mk_cluster("x")})
    web = balancers.get("shop/web:80")
    assert web is not None
    web.finish(a, 70.0, failed=False)

    balancers.update({"shop/web:80": mk_cluster("shop/web:80", a, b)})
    assert balancers.get("shop/web:80") is web
    assert web.load(a) == 70.0
    assert web.load(b) == DEFAULT_EWMA_RTT_MS
    assert balancers.get("shop/db:5432") is None
    assert balancers.get("nope") is None


def test_all_ready_endpoints_backed_off_picks_none() -> None:
    clock = FakeClock()
    a = mk_ep(1)
    balancer = mk_balancer(a, clock=clock)
    for _ in range(7):
        balancer.finish(a, 1.0, failed=True)
    assert balancer.pick() is None  # the handler's 503, as Linkerd fails fast
    balancer.update((mk_ep(1, healthy=False),))
    clock.advance(2.0)
    assert balancer.pick() is None  # backoff over, but an unhealthy endpoint is never probed
    balancer.update((a,))
    assert balancer.pick() == a
