"""`mesh proxy --gateway NS/NAME[:PORT]`: the proxy as a Gateway's data plane. Requests are
decided on that Gateway listener's virtual hosts (by the Host header's hostname), whatever
Service the Host would name in a mesh."""

from __future__ import annotations

import pytest

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded, start_mesh
from turnout.proxy.process import parse_gateway

ROUTES = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: turnout}
spec: {controllerName: turnout.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public, namespace: shop}
spec:
  gatewayClassName: turnout
  listeners:
  - {name: http, protocol: HTTP, port: 80, hostname: "*.example.com"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: www, namespace: shop}
spec:
  parentRefs: [{name: public}]
  hostnames: [www.example.com]
  rules:
  - backendRefs: [{name: web-v1, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: shop}
spec:
  parentRefs: [{name: public}]
  hostnames: [api.example.com]
  rules:
  - backendRefs: [{name: web-v2, port: 80}]
"""


@bounded(20)
async def test_the_gateway_listener_routes_by_hostname(lab: Lab) -> None:
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    table = lab.compile({"web-v1": [v1], "web-v2": [v2]}, ROUTES)
    mesh = await start_mesh(table, gateway="shop/public:80")
    lab.meshes.append(mesh)
    for host, want in (("www.example.com", "v1"), ("api.example.com:80", "v2")):
        status, headers, _ = await mesh.get(host, "/echo")
        assert (status, headers["x-backend"]) == (200, want), host
    # a host the listener does not serve, or a mesh Service name: nothing routes
    for host in ("shop.example.org", "web-v1.shop"):
        status, _, _ = await mesh.get(host, "/echo")
        assert status == 404, host


def test_gateway_references_parse_with_a_default_port() -> None:
    assert parse_gateway("shop/public") == "shop/public:80"
    assert parse_gateway("shop/public:8443") == "shop/public:8443"
    for bad in ("public", "shop/", "/public", "shop/public:x", "a/b/c"):
        with pytest.raises(ValueError, match="--gateway"):
            parse_gateway(bad)
