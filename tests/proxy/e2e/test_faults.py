"""FaultInjection (policy.turnout.dev) through an ExtensionRef filter, end to end."""

from __future__ import annotations

import time

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded


def faulted(spec: str) -> str:
    return f"""
apiVersion: policy.turnout.dev/v1alpha1
kind: FaultInjection
metadata: {{name: fault, namespace: shop}}
spec: {spec}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: shop}}
spec:
  parentRefs: [{{group: "", kind: Service, name: web, port: 80}}]
  rules:
  - filters:
    - type: ExtensionRef
      extensionRef: {{group: policy.turnout.dev, kind: FaultInjection, name: fault}}
    backendRefs: [{{name: web-v1, port: 80}}]
"""


@bounded(10)
async def test_an_abort_of_every_request_answers_503_and_reaches_no_backend(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, faulted("{abort: {httpStatus: 503}}"))
    got = await mesh.load("web", "/echo", n=200)
    assert got == {(503, ""): 200}
    assert v1.total == 0


@bounded(15)
async def test_an_abort_of_half_the_requests_hits_about_half(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh(
        {"web": [], "web-v1": [v1]}, faulted("{abort: {httpStatus: 500, percentage: 50}}")
    )
    n = 2000
    got = await mesh.load("web", "/echo", n=n)
    aborted = got[(500, "")]
    assert aborted + got[(200, "v1")] == n
    assert abs(aborted / n - 0.5) <= 0.05, aborted
    assert v1.total == n - aborted


@bounded(10)
async def test_a_delay_of_every_request_holds_it_for_at_least_200_ms(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, faulted("{delay: {fixedDelay: 200ms}}"))
    for _ in range(3):
        t0 = time.monotonic()
        status, headers, _ = await mesh.get("web", "/echo")
        elapsed = time.monotonic() - t0
        assert status == 200 and headers["x-backend"] == "v1"
        assert 0.2 <= elapsed < 0.5, elapsed
    assert v1.total == 3


@bounded(10)
async def test_a_grpc_abort_answers_200_with_the_grpc_status(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, faulted("{abort: {grpcStatus: 14}}"))
    status, headers, _ = await mesh.get("web", "/pkg.Service/Method", method="POST", data=b"")
    assert status == 200
    assert headers["grpc-status"] == "14"
    assert headers["content-type"] == "application/grpc"
    assert v1.total == 0
