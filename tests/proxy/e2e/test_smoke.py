"""The proxy end to end: a route, real backends, real sockets."""

from __future__ import annotations

import json

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded

ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: v2}]}
    backendRefs: [{name: web-v2, port: 80}]
  - backendRefs: [{name: web-v1, port: 80}]
"""


@bounded(10)
async def test_requests_follow_the_route_to_real_backends(lab: Lab) -> None:
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    mesh = await lab.mesh({"web": [], "web-v1": [v1], "web-v2": [v2]}, ROUTE)
    status, headers, body = await mesh.get("web.shop", "/v2/echo?x=1")
    assert status == 200 and headers["x-backend"] == "v2"
    echo = json.loads(body)
    assert echo["headers"]["x-route"] == "v2" and echo["query"] == "x=1"
    status, headers, _ = await mesh.get("web", "/other")
    assert status == 200 and headers["x-backend"] == "v1"
    status, _, _ = await mesh.get("nope.elsewhere", "/")
    assert status == 404
    text = await mesh.metrics()
    assert 'response_total{direction="outbound"' in text
