"""Request and per-try timeouts (GEP-1742) against real slow backends."""

from __future__ import annotations

import time

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded

TIMEOUTS = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /bounded}}]
    timeouts: {request: 200ms}
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    backendRefs: [{name: web-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /per-try}}]
    timeouts: {request: 2s, backendRequest: 100ms}
    retry: {codes: [503], attempts: 2, backoff: 10ms}
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    backendRefs: [{name: web-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /unbounded}}]
    timeouts: {request: 0s}
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    backendRefs: [{name: web-v1, port: 80}]
"""


async def _timed(lab: Lab, path: str) -> tuple[int, bytes, float, int]:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, TIMEOUTS)
    await mesh.get("web", "/bounded/warm-up")
    t0 = time.monotonic()
    status, _, body = await mesh.get("web", path)
    return status, body, time.monotonic() - t0, v1.total - 1


@bounded(10)
async def test_the_request_timeout_answers_504_after_about_200_ms(lab: Lab) -> None:
    status, _, elapsed, _ = await _timed(lab, "/bounded/delay/1000")
    assert status == 504
    # the route's 200 ms, not the backend's 1 s; asyncio may fire a timer up to its clock
    # resolution early, and a loaded machine answers late, so the bounds are loose
    assert 0.19 <= elapsed < 0.9, elapsed


@bounded(10)
async def test_a_per_try_timeout_is_retried_and_the_fast_retry_answers(lab: Lab) -> None:
    # /slow-first/1000: the first request on the path takes 1 s, the next ones answer at once.
    status, body, elapsed, tries = await _timed(lab, "/per-try/slow-first/1000")
    assert (status, body) == (200, b"fast")
    assert tries == 2
    assert 0.1 <= elapsed < 0.5, elapsed


@bounded(10)
async def test_per_try_timeouts_on_every_try_end_in_504(lab: Lab) -> None:
    status, _, elapsed, tries = await _timed(lab, "/per-try/delay/1000")
    assert status == 504
    assert tries == 3
    assert 0.3 <= elapsed < 0.8, elapsed


@bounded(10)
async def test_a_zero_request_timeout_means_no_timeout(lab: Lab) -> None:
    status, body, elapsed, _ = await _timed(lab, "/unbounded/delay/600")
    assert (status, body) == (200, b"slow v1")
    assert elapsed >= 0.6
