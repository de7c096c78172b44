"""Micro-benchmark of the per-request metrics path: ns per ``request()`` + ``response()`` pair.

Run: ``.venv/bin/python bench/metrics.py``. Prints ns per operation for the hot path with a
kept key, the same including the cached ``http()`` key lookup, the route/policy calls a
routed request adds, a tap publish with no subscriber, and the cost of one scrape
(``render()``) for a registry with many series. Goal: the request()+response() pair well
under 1 µs, so metrics stay a small share of the proxy's per-request budget.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from turnout.proxy.metrics import ProxyMetrics
from turnout.proxy.tap import TapEvent, TapHub

log = logging.getLogger(__name__)

ITERATIONS = 500_000
STATUSES = (200, 200, 200, 200, 200, 200, 200, 404, 503, 200)
LATENCIES = (0.4, 3.2, 7.9, 12.0, 48.0, 130.0, 2.0, 1.0, 900.0, 5.5)


def time_ns(body: Callable[[int], None], n: int = ITERATIONS) -> float:
    """Best of three runs of `body(n)`, in ns per iteration."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter_ns()
        body(n)
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


def mk_metrics() -> ProxyMetrics:
    return ProxyMetrics(namespace="test", workload_name="podinfo", pod="podinfo-7d9f-abc12")


def bench_pair_kept_key(n: int) -> None:
    m = mk_metrics()
    key = m.http(direction="inbound", authority="", target_addr=("10.1.0.5", 9898))
    request, response = m.request, m.response
    for i in range(n):
        request(key)
        response(key, status_code=STATUSES[i % 10], latency_ms=LATENCIES[i % 10])


def bench_pair_with_lookup(n: int) -> None:
    m = mk_metrics()
    addr = ("10.1.0.9", 8080)
    for i in range(n):
        key = m.http(
            direction="outbound",
            authority="backend.test.svc.cluster.local:80",
            target_addr=addr,
            dst_namespace="test",
            dst_service="backend",
        )
        m.request(key)
        m.response(key, status_code=STATUSES[i % 10], latency_ms=LATENCIES[i % 10])


def bench_routed_extras(n: int) -> None:
    m = mk_metrics()
    rk = m.route(direction="outbound", dst="backend.test.svc.cluster.local:80", rt_route="r/0")
    pk = m.policy_route(
        parent_namespace="test",
        parent_name="backend",
        parent_port=80,
        route_namespace="test",
        route_name="backend",
    )
    bk = m.policy_backend(pk, backend_namespace="test", backend_name="backend", backend_port=80)
    for i in range(n):
        status = STATUSES[i % 10]
        m.route_request(rk)
        m.route_actual_request(rk)
        m.backend_request(bk)
        m.backend_response(bk, status_code=status)
        m.route_actual_response(rk, status_code=status)
        m.route_response(rk, status_code=status, latency_ms=LATENCIES[i % 10])
        m.route_status(pk, status_code=status)


def bench_tap_idle(n: int) -> None:
    hub = TapHub()
    event = TapEvent(
        kind="req", id="1:1", direction="inbound", src="10.0.0.1:1", dst="10.0.0.2:2",
        tls="disabled", method="GET", authority="web:80", path="/",
    )  # fmt: skip
    for _ in range(n):
        if hub.active:
            hub.publish(event)


def render_ms(n_series: int) -> tuple[int, float]:
    m = mk_metrics()
    for i in range(n_series):
        key = m.http(
            direction="outbound",
            authority=f"svc{i}.test.svc.cluster.local:80",
            target_addr=("10.1.0.9", 8080),
            dst_namespace="test",
            dst_service=f"svc{i}",
        )
        m.request(key)
        m.response(key, status_code=200, latency_ms=3)
    t0 = time.perf_counter()
    text = m.render()
    return text.count("\n"), (time.perf_counter() - t0) * 1000


def main() -> None:
    print(f"{'operation':<44}{'ns/op':>10}")
    for name, body in (
        ("request()+response(), key kept", bench_pair_kept_key),
        ("http() lookup + request()+response()", bench_pair_with_lookup),
        ("route+policy+backend calls of one request", bench_routed_extras),
        ("tap: `if hub.active` with no subscriber", bench_tap_idle),
    ):
        print(f"{name:<44}{time_ns(body):>10.0f}")
    for n in (100, 1000):
        lines, ms = render_ms(n)
        print(f"render() {n} endpoint keys ({lines} lines){'':<8}{ms:>10.1f} ms")


if __name__ == "__main__":
    main()
