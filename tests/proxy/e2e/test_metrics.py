"""The admin port after real traffic: `/metrics` as Flagger and Linkerd read it, `/tap`."""

from __future__ import annotations

import json
from collections import defaultdict

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded, metric

ROUTES = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - backendRefs: [{name: web-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /flaky}}]
    retry: {codes: [503], attempts: 2, backoff: 1ms}
    backendRefs: [{name: web-v1, port: 80}]
"""

MAIN = "httproute/shop/web/rule/0"
RETRIED = "httproute/shop/web/rule/1"


@bounded(15)
async def test_outbound_metrics_count_requests_outcomes_latency_routes_and_retries(
    lab: Lab,
) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, ROUTES)
    sent = {"/status/200": 30, "/status/201": 5, "/status/404": 5, "/status/503": 10}
    for path, n in sent.items():
        for _ in range(n):
            await mesh.get("web", path)
    for i in range(4):
        assert (await mesh.get("web", f"/flaky/1/{i}"))[0] == 200  # one retry each
    text = await mesh.metrics()
    out = {"direction": "outbound", "namespace": "shop", "deployment": "client"}
    total = sum(sent.values()) + 4
    assert metric(text, "request_total", **out, authority="web") == total
    assert metric(text, "response_total", **out, classification="success") == total - 10
    assert metric(text, "response_total", **out, classification="failure") == 10
    assert metric(text, "response_total", **out, status_code="503") == 10
    assert metric(text, "response_total", **out, status_code="200") == 34
    assert metric(text, "response_latency_ms_bucket", **out, status_code="200", le="+Inf") == 34
    assert metric(text, "response_latency_ms_count", **out) == total
    # Route series: rt_route is the IR rule name.
    assert metric(text, "route_request_total", rt_route=MAIN) == sum(sent.values())
    assert metric(text, "route_response_total", rt_route=MAIN, classification="failure") == 10
    assert metric(text, "route_request_total", rt_route=RETRIED) == 4
    assert metric(text, "route_actual_request_total", rt_route=RETRIED) == 8
    policy = {"route_name": "web", "parent_name": "web"}
    assert metric(text, "outbound_http_route_retry_requests_total", **policy) == 4
    assert metric(text, "outbound_http_route_retry_successes_total", **policy) == 4
    assert metric(text, "outbound_http_route_backend_requests_total", backend_name="web-v1") == (
        total + 4
    )
    assert v1.total == total + 4


@bounded(10)
async def test_inbound_metrics_carry_the_labels_flagger_filters_on(lab: Lab) -> None:
    app = await lab.backend("app")
    mesh = await lab.mesh({"web": [], "web-v1": [app]}, ROUTES, inbound_app=("127.0.0.1", app.port))
    assert mesh.inbound is not None
    for path, n in {"/status/200": 7, "/status/500": 3}.items():
        for _ in range(n):
            status, headers, _ = await mesh.get("app.shop", path, port=mesh.inbound)
            assert (status, headers["x-backend"]) == (int(path[-3:]), "app")
    text = await mesh.metrics()
    flagger = {"direction": "inbound", "namespace": "shop", "deployment": "client"}
    assert metric(text, "request_total", **flagger) == 10
    assert metric(text, "response_total", **flagger, classification="success") == 7
    assert metric(text, "response_total", **flagger, classification="failure") == 3
    assert metric(text, "response_latency_ms_bucket", **flagger, le="+Inf") == 10
    assert metric(text, "request_total", direction="outbound") == 0


@bounded(10)
async def test_a_tap_stream_shows_req_rsp_and_end_for_each_request(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, ROUTES)
    url = f"http://127.0.0.1:{mesh.admin}/tap?path=/tapped&limit=9"
    async with mesh.session.get(url) as stream:
        assert stream.status == 200  # headers arrive after the subscription exists
        await mesh.get("web", "/other")  # filtered out by path
        for i in range(3):
            await mesh.get("web", f"/tapped/{i}")
        events = [json.loads(line) async for line in stream.content]
    by_id: dict[str, list[dict[str, object]]] = defaultdict(list)
    for e in events:
        by_id[str(e["id"])].append(e)
    assert len(by_id) == 3
    paths = set()
    for evs in by_id.values():
        assert [e["type"] for e in evs] == ["req", "rsp", "end"]
        req, rsp, end = evs
        paths.add(req["path"])
        assert req["authority"] == "web" and req["method"] == "GET"
        assert rsp["status"] == 200 and rsp["route"] == MAIN
        assert rsp["dst"] == f"127.0.0.1:{v1.port}"
        assert isinstance(end["bytes"], int) and end["bytes"] > 0
    assert paths == {"/tapped/0", "/tapped/1", "/tapped/2"}


@bounded(15)
async def test_mesh_tap_prints_linkerd_tap_lines(lab: Lab) -> None:
    """`mesh tap` prints `req`/`rsp`/`end` lines in `linkerd viz tap`'s format."""
    import asyncio
    import io

    from turnout.cli.main import main

    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, ROUTES)
    out, err = io.StringIO(), io.StringIO()
    argv = ["tap", "--admin", f"127.0.0.1:{mesh.admin}", "--path", "/tapped", "--limit", "3"]
    tap = asyncio.create_task(asyncio.to_thread(main, argv, stdout=out, stderr=err))
    while not mesh.proxy.tap.active:  # the CLI has subscribed
        await asyncio.sleep(0.01)
    await mesh.get("web", "/tapped/x")
    assert await tap == 0, err.getvalue()
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["req", "rsp", "end"]
    assert "proxy=out" in lines[0] and ":method=GET :authority=web :path=/tapped/x" in lines[0]
    assert ":status=200 latency=" in lines[1]
    assert "response-length=" in lines[2]
