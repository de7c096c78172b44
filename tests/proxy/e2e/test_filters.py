"""Every HTTPRoute filter through the whole proxy, checked at a real backend and client."""

from __future__ import annotations

import json
import time
from collections import Counter

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded, dead_port

HEADERS = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - name: headers
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Set, value: new}]
        add: [{name: X-Add, value: added}]
        remove: [X-Remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: Content-Type, value: text/x-set}]
        add: [{name: X-Backend, value: added}]
        remove: [Server]
    backendRefs: [{name: web-v1, port: 80}]
"""


def _values(echo: dict[str, object], name: str) -> list[str]:
    pairs = echo["header_list"]
    assert isinstance(pairs, list)
    return [v for k, v in pairs if k.lower() == name]


@bounded(10)
async def test_header_modifiers_change_request_and_response_headers_case_insensitively(
    lab: Lab,
) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, HEADERS)
    status, headers, body = await mesh.get(
        "web",
        "/echo",
        headers=[("x-set", "old"), ("X-ADD", "mine"), ("x-REMOVE", "gone"), ("x-keep", "k")],
    )
    assert status == 200
    echo = json.loads(body)
    assert _values(echo, "x-set") == ["new"]
    # Gateway API: add "appends to any existing values" (`my-header: foo,bar`).
    added = [v.strip() for value in _values(echo, "x-add") for v in value.split(",")]
    assert added == ["mine", "added"]
    assert _values(echo, "x-remove") == []
    assert _values(echo, "x-keep") == ["k"]
    # Response: set replaces the backend's value, add appends, remove drops the header.
    assert headers.getall("content-type") == ["text/x-set"]
    backend = [v.strip() for value in headers.getall("x-backend") for v in value.split(",")]
    assert backend == ["v1", "added"]
    assert "server" not in headers


REWRITES = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /prefix/one}}]
    filters:
    - type: URLRewrite
      urlRewrite:
        hostname: one.example.org
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}
    backendRefs: [{name: web-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /strip/}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    backendRefs: [{name: web-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /full}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /replaced}}
    backendRefs: [{name: web-v1, port: 80}]
"""


@bounded(10)
async def test_url_rewrite_changes_host_and_path_the_backend_sees_and_keeps_the_query(
    lab: Lab,
) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, REWRITES)
    cases = {
        "/prefix/one/two?q=1&r=2": ("/one/two", "q=1&r=2", "one.example.org"),
        "/prefix/one": ("/one", "", "one.example.org"),
        "/strip/a/b?x=y": ("/a/b", "x=y", "web"),
        "/full/anything/else?z=9": ("/replaced", "z=9", "web"),
    }
    for sent, (path, query, host) in cases.items():
        status, _, body = await mesh.get("web", sent)
        echo = json.loads(body)
        assert status == 200, sent
        assert (echo["path"], echo["query"], echo["host"]) == (path, query, host), sent


REDIRECTS = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /plain}}]
    filters: [{type: RequestRedirect, requestRedirect: {}}]
  - matches: [{path: {type: PathPrefix, value: /https}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /port}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, port: 8080}}]
  - matches: [{path: {type: PathPrefix, value: /tls-port}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, port: 8443}}]
  - matches: [{path: {type: PathPrefix, value: /http-443}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: http, port: 443}}]
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect:
        statusCode: 308
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
  - matches: [{path: {type: Exact, value: /exact}}]
    filters:
    - type: RequestRedirect
      requestRedirect:
        statusCode: 303
        path: {type: ReplaceFullPath, replaceFullPath: /elsewhere}
"""


@bounded(10)
async def test_request_redirect_answers_location_and_status_by_the_port_and_scheme_rules(
    lab: Lab,
) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, REDIRECTS)
    cases = {
        # Service port 80 with http: no port; the request's host without its port; query kept.
        "/plain/a?q=1": (302, "http://web.shop/plain/a?q=1"),
        # https with no port: 443, the scheme's well-known port, is left out.
        "/https": (301, "https://web.shop/https"),
        "/port/x": (302, "http://example.org:8080/port/x"),
        "/tls-port": (302, "https://web.shop:8443/tls-port"),
        # 443 is not http's well-known port, so it stays.
        "/http-443": (302, "http://web.shop:443/http-443"),
        "/old/page?x=1": (308, "http://web.shop/new/page?x=1"),
        "/exact": (303, "http://web.shop/elsewhere"),
    }
    for sent, (code, location) in cases.items():
        status, headers, _ = await mesh.get("web.shop:80", sent)
        assert (status, headers.get("location")) == (code, location), sent
    assert v1.total == 0


MIRRORS = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /copy}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow, port: 80}}
    backendRefs: [{name: web-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /to-slow}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: slow, port: 80}}
    backendRefs: [{name: web-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /to-dead}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: dead, port: 80}}
    backendRefs: [{name: web-v1, port: 80}]
"""


@bounded(10)
async def test_request_mirror_sends_a_copy_and_the_client_gets_the_primary_answer(
    lab: Lab,
) -> None:
    v1, shadow = await lab.backend("v1"), await lab.backend("shadow")
    mesh = await lab.mesh(
        {"web": [], "web-v1": [v1], "shadow": [shadow], "slow": [v1], "dead": [dead_port()]},
        MIRRORS,
    )
    status, headers, body = await mesh.get(
        "web", "/copy/x?q=1", method="POST", headers={"x-id": "7"}, data=b"payload"
    )
    assert status == 200 and headers["x-backend"] == "v1"
    assert json.loads(body)["body"] == "payload"
    await shadow.wait_hits("/copy/x", 1)
    copy = shadow.seen[-1]
    assert copy["path"] == "/copy/x?q=1" and copy["body"] == "payload"
    assert isinstance(copy["headers"], dict) and copy["headers"]["x-id"] == "7"


@bounded(10)
async def test_a_mirror_to_a_slow_or_dead_backend_never_slows_or_fails_the_request(
    lab: Lab,
) -> None:
    v1 = await lab.backend("v1")
    slow = await lab.backend("slow")
    slow.delay_ms = 1000
    mesh = await lab.mesh(
        {"web": [], "web-v1": [v1], "slow": [slow], "dead": [dead_port()]}, MIRRORS
    )
    await mesh.get("web", "/warm-up")
    for path in ("/to-slow/a", "/to-dead/a"):
        for _ in range(5):
            t0 = time.monotonic()
            status, headers, _ = await mesh.get("web", path)
            elapsed = time.monotonic() - t0
            assert status == 200 and headers["x-backend"] == "v1", path
            assert elapsed < 0.5, (path, elapsed)
    await slow.wait_hits("/to-slow/a", 5)
    assert v1.hits["/to-slow/a"] == 5 and v1.hits["/to-dead/a"] == 5


BACKEND_FILTERS = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: X-Route, value: web}]}
    backendRefs:
    - name: web-v1
      port: 80
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {set: [{name: X-Which, value: v1}]}
      - type: ResponseHeaderModifier
        responseHeaderModifier: {add: [{name: X-Served, value: by-v1}]}
    - name: web-v2
      port: 80
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {set: [{name: X-Which, value: v2}]}
      - type: ResponseHeaderModifier
        responseHeaderModifier: {add: [{name: X-Served, value: by-v2}]}
"""


@bounded(10)
async def test_backend_ref_header_filters_reach_only_their_own_backend(lab: Lab) -> None:
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    mesh = await lab.mesh({"web": [], "web-v1": [v1], "web-v2": [v2]}, BACKEND_FILTERS)
    seen: Counter[str] = Counter()
    for _ in range(60):
        status, headers, body = await mesh.get("web", "/echo", headers={"x-which": "client"})
        echo = json.loads(body)
        name = headers["x-backend"]
        assert status == 200
        assert _values(echo, "x-which") == [name] and _values(echo, "x-route") == ["web"]
        assert headers.getall("x-served") == [f"by-{name}"]
        seen[name] += 1
    assert seen["v1"] > 0 and seen["v2"] > 0
