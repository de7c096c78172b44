"""A Server's named port and the kubelet's probes on a real inbound proxy with real
identities: ``--port-name http=PORT`` lets ``port: http`` select the app port (the seed
scenario: only the ingress service account), ``--probe PORT:/ready`` lets a plaintext GET
of /ready through as Linkerd's default probe route while the Server has no routes, and an
HTTPRoute on the Server takes that away until a policy authorizes the probe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.proxy.e2e.harness import bounded, metric
from tests.proxy.identity.kit import WEB
from tests.proxy.identity.test_inbound_authz import INGRESS, NS, Lab, open_lab

NAMED_SERVER = f"""
apiVersion: policy.linkerd.io/v1beta3
kind: Server
metadata: {{name: api-http, namespace: {NS}}}
spec:
  podSelector: {{matchLabels: {{app: api}}}}
  port: http
  proxyProtocol: HTTP/1
---
apiVersion: policy.linkerd.io/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: api-ingress, namespace: {NS}}}
spec:
  targetRef: {{group: policy.linkerd.io, kind: Server, name: api-http}}
  requiredAuthenticationRefs:
  - {{kind: ServiceAccount, name: ingress}}
"""

ROUTES = f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: api-all, namespace: {NS}}}
spec:
  parentRefs: [{{group: policy.linkerd.io, kind: Server, name: api-http}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /}}}}]
"""

PROBE_ROUTE = f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: api-probes, namespace: {NS}}}
spec:
  parentRefs: [{{group: policy.linkerd.io, kind: Server, name: api-http}}]
  rules:
  - matches: [{{method: GET, path: {{type: Exact, value: /ready}}}}]
---
apiVersion: policy.linkerd.io/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: api-probes, namespace: {NS}}}
spec:
  targetRef: {{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api-probes}}
  requiredAuthenticationRefs:
  - {{group: policy.linkerd.io, kind: NetworkAuthentication, name: anywhere}}
---
apiVersion: policy.linkerd.io/v1alpha1
kind: NetworkAuthentication
metadata: {{name: anywhere, namespace: {NS}}}
spec:
  networks: [{{cidr: 0.0.0.0/0}}, {{cidr: "::/0"}}]
"""


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    """The seed's three proxies; the server's pod names its app port ``http`` and probes
    ``/ready`` on it."""

    def ports(app_port: int) -> dict[str, Any]:
        return {
            "port_names": (("admin", 9990), ("http", app_port)),
            "probes": ((app_port, "/ready"), (9990, "/live")),
        }

    async with open_lab(tmp_path, lambda _: NAMED_SERVER, ports) as lab:
        yield lab


async def plain(lab: Lab, path: str, method: str = "GET") -> int:
    """A kubelet-like call: plaintext, straight to the inbound port."""
    url = f"http://127.0.0.1:{lab.inbound}{path}"
    async with lab.session.request(method, url, headers={"Host": "10.0.0.7:8080"}) as resp:
        return resp.status


@bounded(30)
async def test_a_named_server_port_enforces_the_seed_policy(lab: Lab) -> None:
    assert [await lab.via(lab.ingress) for _ in range(3)] == [200] * 3
    assert [await lab.via(lab.web) for _ in range(2)] == [403] * 2
    text = await lab.metrics()
    assert metric(text, "inbound_http_authz_allow_total", srv_name="api-http", client_id=INGRESS) == 3  # fmt: skip
    assert metric(text, "inbound_http_authz_deny_total", srv_name="api-http", client_id=WEB) == 2


@bounded(30)
async def test_the_kubelets_probe_path_is_allowed_and_nothing_else(lab: Lab) -> None:
    hits = lab.app.hits["/ready"]
    assert [await plain(lab, "/ready") for _ in range(2)] == [200, 200]
    assert lab.app.hits["/ready"] == hits + 2
    assert await plain(lab, "/") == 403
    assert await plain(lab, "/ready/x") == 403
    assert await plain(lab, "/ready", "POST") == 403
    assert await plain(lab, "/live") == 403  # another port's probe
    assert await lab.via(lab.web) == 403  # a meshed caller's other paths stay denied
    text = await lab.metrics()
    probe = metric(
        text,
        "inbound_http_authz_allow_total",
        srv_kind="server",
        srv_name="api-http",
        route_group="",
        route_kind="default",
        route_name="probe",
        authz_group="",
        authz_kind="default",
        authz_name="probe",
        tls="no_identity",
    )
    assert probe == 2
    assert metric(text, "inbound_http_authz_deny_total", route_name="default", tls="no_identity") == 4  # fmt: skip


@bounded(30)
async def test_routes_on_the_server_take_the_probe_route_away_until_authorized(lab: Lab) -> None:
    lab.apply(NAMED_SERVER + ROUTES, "2")
    assert await plain(lab, "/ready") == 403
    assert await lab.via(lab.ingress) == 200
    lab.apply(NAMED_SERVER + ROUTES + PROBE_ROUTE, "3")
    assert await plain(lab, "/ready") == 200
    assert await plain(lab, "/") == 403
    text = await lab.metrics()
    allowed = metric(
        text,
        "inbound_http_authz_allow_total",
        route_kind="httproute",
        route_name="api-probes",
        authz_kind="authorizationpolicy",
        authz_name="api-probes",
    )
    assert allowed == 1
    lab.apply(NAMED_SERVER, "4")  # the routes gone: the default probe route is back
    assert await plain(lab, "/ready") == 200
