"""The proxy end to end: a route, real backends, real sockets."""

from __future__ import annotations

import json

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded
from tests.proxy.e2e.manifests import SMOKE_ROUTE


@bounded(10)
async def test_requests_follow_the_route_to_real_backends(lab: Lab) -> None:
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    mesh = await lab.mesh({"web": [], "web-v1": [v1], "web-v2": [v2]}, SMOKE_ROUTE)
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
