"""Retries (GEP-1731 `retry`) and retry budgets (GEP-3388), counted at real backends."""

from __future__ import annotations

import time

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded, dead_port, metric

RETRY = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - name: retried
    retry: {codes: [503], attempts: 2, backoff: 10ms}
    backendRefs: [{name: web-v1, port: 80}]
  - name: dead
    matches: [{path: {type: PathPrefix, value: /dead}}]
    retry: {codes: [503], attempts: 2, backoff: 10ms}
    backendRefs: [{name: dead, port: 80}]
"""


@bounded(10)
async def test_a_listed_status_is_retried_until_success_and_the_backend_counts_each_try(
    lab: Lab,
) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1], "dead": [dead_port()]}, RETRY)
    status, _, body = await mesh.get("web", "/flaky/2")
    assert (status, body) == (200, b"ok after 2")
    assert v1.hits["/flaky/2"] == 3
    assert metric(await mesh.metrics(), "outbound_http_route_retry_requests_total") == 2


@bounded(10)
async def test_attempts_are_a_limit_and_the_last_answer_is_returned(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1], "dead": [dead_port()]}, RETRY)
    status, _, _ = await mesh.get("web", "/flaky/5")
    assert status == 503
    assert v1.hits["/flaky/5"] == 3


@bounded(10)
async def test_a_status_not_listed_is_returned_as_is_without_retry(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1], "dead": [dead_port()]}, RETRY)
    for code in (500, 502, 504, 429):
        status, _, _ = await mesh.get("web", f"/status/{code}")
        assert status == code
        assert v1.hits[f"/status/{code}"] == 1


@bounded(10)
async def test_connection_errors_are_retried_then_fail_after_attempts_plus_one_tries(
    lab: Lab,
) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1], "dead": [dead_port()]}, RETRY)
    status, _, _ = await mesh.get("web", "/dead/x")
    assert status in (502, 503)
    text = await mesh.metrics()
    # Three tries: the first and `attempts: 2` retries, all refused.
    assert metric(text, "outbound_http_route_retry_requests_total", route_name="web") == 2
    dead = "httproute/shop/web/rule/1"
    assert metric(text, "route_actual_request_total", rt_route=dead) == 3
    assert (
        metric(text, "route_actual_response_total", rt_route=dead, error="UpstreamConnectError")
        == 3
    )
    assert metric(text, "response_total", direction="outbound", status_code=str(status)) == 1


@bounded(10)
async def test_a_body_over_the_retry_buffer_cap_is_forwarded_intact_and_not_retried(
    lab: Lab,
) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1], "dead": [dead_port()]}, RETRY)
    big = bytes(range(256)) * (65 * 1024 // 256 + 7)  # over 64 KiB
    status, _, _ = await mesh.get("web", "/flaky/1", method="POST", data=big)
    assert status == 503
    assert v1.hits["/flaky/1"] == 1
    assert v1.seen[-1]["body"] == big.decode("latin-1")
    # A small body on the same path is retried (and replayed whole).
    status, _, _ = await mesh.get("web", "/flaky/2", method="POST", data=b"small")
    assert status == 200 and v1.hits["/flaky/2"] == 3
    assert [s["body"] for s in v1.seen[-3:]] == ["small"] * 3


BUDGET = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - retry: {codes: [503], attempts: 3, backoff: 1ms}
    backendRefs: [{name: web-v1, port: 80}]
"""

SMALL_BUDGET = """
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: small, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: web-v1}]
  retryConstraint:
    budget: {percent: 5, interval: 10s}
    minRetryRate: {count: 2, interval: 1s}
"""


async def _retries_against_half(lab: Lab, routes: str, n: int) -> tuple[int, float]:
    """Retries the backend saw for `n` requests to a backend failing every other request,
    and how long that took in seconds; checks the budget did refuse retries."""
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, routes)
    t0 = time.monotonic()
    got = await mesh.load("web", "/half", n=n, workers=32)
    elapsed = time.monotonic() - t0
    assert sum(got.values()) == n
    retries = v1.hits["/half"] - n
    text = await mesh.metrics()
    assert metric(text, "outbound_http_route_retry_requests_total") == retries
    assert metric(text, "outbound_http_route_retry_overflow_total") > 0  # the budget said no
    return retries, elapsed


@bounded(20)
async def test_the_retry_budget_keeps_retries_to_a_fifth_of_requests_plus_the_floor(
    lab: Lab,
) -> None:
    n = 2000
    retries, elapsed = await _retries_against_half(lab, BUDGET, n)
    # Default budget: 20% of requests over 10 s, plus 10 retries per second. Without it,
    # `attempts: 3` would retry about every other request (~n retries).
    floor = 10 * (int(elapsed) + 2)
    assert retries <= 0.20 * n + floor, (retries, elapsed)
    assert retries >= 0.20 * n - 1, (retries, elapsed)


@bounded(20)
async def test_a_smaller_backend_traffic_policy_budget_lowers_the_retries(lab: Lab) -> None:
    n = 2000
    retries, elapsed = await _retries_against_half(lab, BUDGET + SMALL_BUDGET, n)
    floor = 2 * (int(elapsed) + 2)
    assert retries <= 0.05 * n + floor, (retries, elapsed)
    assert retries >= 0.05 * n - 1, (retries, elapsed)
