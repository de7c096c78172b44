"""The retry budget's floor (10 retries per second by default) is per backend Service: a
burst of route retries within it is never refused, and one Service's burst does not spend
another's."""

from __future__ import annotations

import asyncio

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded

ROUTES = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - name: to-a
    matches: [{path: {type: PathPrefix, value: /a}}]
    retry: {codes: [503], attempts: 1, backoff: 10ms}
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /flaky/1}}}]
    backendRefs: [{name: svc-a, port: 80}]
  - name: to-b
    matches: [{path: {type: PathPrefix, value: /b}}]
    retry: {codes: [503], attempts: 1, backoff: 10ms}
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /flaky/1}}}]
    backendRefs: [{name: svc-b, port: 80}]
"""


@bounded(20)
async def test_a_burst_of_retries_within_the_floor_is_never_refused_per_service(lab: Lab) -> None:
    a, b = await lab.backend("a"), await lab.backend("b")
    mesh = await lab.mesh({"web": [], "svc-a": [a], "svc-b": [b]}, ROUTES)
    for prefix, backend in (("/a", a), ("/b", b)):
        # ten requests at once, each failing once: ten retries, the floor's whole count
        answers = await asyncio.gather(*(mesh.get("web", f"{prefix}/{i}") for i in range(10)))
        assert [status for status, _, _ in answers] == [200] * 10
        assert all(backend.hits[f"/flaky/1/{i}"] == 2 for i in range(10))
