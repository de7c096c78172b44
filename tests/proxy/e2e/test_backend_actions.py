"""A backendRef's own RequestRedirect and URLRewrite through the whole proxy (HTTPROUTE-SEMANTICS
§7.9; Conf HTTPRouteBackendRequestRedirect / HTTPRouteBackendURLRewrite): only the share of
the backend that carries the filter is redirected or rewritten, checked at real backends."""

from __future__ import annotations

import json
from collections import Counter

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded

ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /shop}}]
    backendRefs:
    - {name: web-v1, port: 80, weight: 50}
    - name: web-v2
      port: 80
      weight: 50
      filters: [FILTERS]
"""

REDIRECT = """
        {type: RequestRedirect, requestRedirect: {hostname: moved.example,
         path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}},
        {type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Share,
         value: moved}]}}"""

REWRITE = """
        {type: URLRewrite, urlRewrite: {hostname: v2.example,
         path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}"""


def _route(filters: str) -> str:
    return ROUTE.replace("[FILTERS]", f"[{filters.strip()}]")


@bounded(15)
async def test_a_50_50_split_serves_one_share_and_redirects_the_other(lab: Lab) -> None:
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    mesh = await lab.mesh({"web": [], "web-v1": [v1], "web-v2": [v2]}, _route(REDIRECT))
    seen: Counter[int] = Counter()
    n = 200
    for _ in range(n):
        status, headers, _ = await mesh.get("web.shop:80", "/shop/item?q=1")
        seen[status] += 1
        if status == 302:
            # Service port 80 with http: no port in Location; the query string is kept.
            assert headers["location"] == "http://moved.example/new/item?q=1"
            assert headers["x-share"] == "moved" and "x-backend" not in headers
        else:
            assert status == 200 and headers["x-backend"] == "v1"
            assert "x-share" not in headers
    assert set(seen) == {200, 302}, seen
    assert abs(seen[302] / n - 0.5) <= 0.15, seen
    # The redirected share never reaches web-v2; every served request reached web-v1.
    assert v2.total == 0
    assert v1.total == seen[200]


@bounded(15)
async def test_a_backend_url_rewrite_changes_the_path_and_host_for_that_backend_only(
    lab: Lab,
) -> None:
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    mesh = await lab.mesh({"web": [], "web-v1": [v1], "web-v2": [v2]}, _route(REWRITE))
    seen: Counter[str] = Counter()
    for _ in range(60):
        status, headers, body = await mesh.get("web.shop:80", "/shop/item?q=1")
        echo = json.loads(body)
        name = headers["x-backend"]
        assert status == 200
        if name == "v2":
            assert (echo["path"], echo["query"], echo["host"]) == ("/v2/item", "q=1", "v2.example")
        else:
            assert (echo["path"], echo["query"], echo["host"]) == (
                "/shop/item",
                "q=1",
                "web.shop:80",
            )
        seen[name] += 1
    assert seen["v1"] > 0 and seen["v2"] > 0, seen
    assert set(v2.hits) == {"/v2/item"} and set(v1.hits) == {"/shop/item"}


UNRESOLVED = """
        {type: ExtensionRef, extensionRef: {group: policy.turnout.dev, kind: FaultInjection,
         name: missing}}"""


@bounded(15)
async def test_an_unresolved_extension_ref_on_a_backend_fails_its_share_not_skipped(
    lab: Lab,
) -> None:
    """ "If a reference to a custom filter type cannot be resolved, the filter MUST NOT be
    skipped. Instead, requests that would have been processed by that filter MUST receive a
    HTTP error response." Only web-v2's share carries the filter."""
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    mesh = await lab.mesh({"web": [], "web-v1": [v1], "web-v2": [v2]}, _route(UNRESOLVED))
    seen: Counter[int] = Counter()
    for _ in range(60):
        status, headers, _ = await mesh.get("web.shop:80", "/shop/item")
        seen[status] += 1
        if status == 500:
            assert headers["l5d-proxy-error"] == "invalid filter"
        else:
            assert status == 200 and headers["x-backend"] == "v1"
    assert set(seen) == {200, 500}, seen
    assert v2.total == 0 and v1.total == seen[200]
