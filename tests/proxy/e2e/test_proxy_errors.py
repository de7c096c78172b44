"""The proxy says why it failed a request: every answer it makes itself carries
``l5d-proxy-error: <cause>`` and a body naming the same cause (Linkerd's header), with the
status Gateway API asks for (404 no route, 500 invalid backend, 503 no endpoints, 504
timeouts). Real backends and real sockets, through the e2e harness."""

from __future__ import annotations

from multidict import CIMultiDict

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import NS, Mesh, bounded, dead_port, route_to
from tests.proxy.e2e.manifests import LIMITS_ROUTES, split

Got = tuple[int, CIMultiDict[str], bytes]


def assert_answer(got: Got, status: int, cause: str, detail: str = "") -> None:
    """`got` is the proxy's own answer for `cause`: status, header and body."""
    code, headers, body = got
    assert code == status, (code, headers, body)
    assert headers.getall("l5d-proxy-error") == [cause]
    assert "x-backend" not in headers  # no backend answered
    text = body.decode()
    assert text.startswith(cause) and text.endswith("\n"), text
    assert detail in text, text


def fault_filter(name: str) -> str:
    """The rule option that applies FaultInjection `name` (ExtensionRef filter)."""
    return f"""filters:
    - type: ExtensionRef
      extensionRef: {{group: policy.turnout.dev, kind: FaultInjection, name: {name}}}"""


@bounded(10)
async def test_no_route_and_unknown_destinations_answer_404_naming_why(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    routes = split({"web-v1": 1}).replace("type: PathPrefix, value: /}", "type: Exact, value: /x}")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, routes)
    assert_answer(await mesh.get("web", "/y"), 404, "no route")
    # a Host that names no Service at all, and one naming a Service this table does not have
    assert_answer(await mesh.get("www.example.com", "/x"), 404, "unknown destination", "Host")
    assert_answer(await mesh.get("nope.elsewhere", "/x"), 404, "unknown destination", "table")
    assert v1.total == 0


@bounded(10)
async def test_an_invalid_backend_answers_500_with_its_reason(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, split({"ghost": 1}))
    assert_answer(await mesh.get("web", "/echo"), 500, "invalid backend", "BackendNotFound")


@bounded(10)
async def test_a_rule_without_usable_backends_answers_500_no_backends(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, split({"web-v1": 0}))
    assert_answer(await mesh.get("web", "/echo"), 500, "no backends")


@bounded(10)
async def test_a_filter_that_cannot_be_applied_answers_500_invalid_filter(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    options = fault_filter("missing")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, route_to("web-v1", options=options))
    assert_answer(await mesh.get("web", "/echo"), 500, "invalid filter", "not found")
    assert v1.total == 0


@bounded(10)
async def test_a_service_without_ready_endpoints_answers_503_no_ready_endpoints(
    lab: Lab,
) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, route_to("web-v1"), unready=["web-v1"])
    assert_answer(await mesh.get("web", "/echo"), 503, "no ready endpoints")


@bounded(10)
async def test_a_refused_connection_answers_503_then_fail_fast_once_backed_off(
    lab: Lab,
) -> None:
    mesh = await lab.mesh({"web": [], "web-v1": [dead_port()]}, route_to("web-v1"))
    # Linkerd's consecutive failure accrual: 7 failures take the only endpoint out.
    for _ in range(7):
        assert_answer(await mesh.get("web", "/echo"), 503, "connection refused")
    assert_answer(await mesh.get("web", "/echo"), 503, "service in fail-fast", "backed off")


@bounded(10)
async def test_a_connection_closed_before_the_response_answers_503(lab: Lab) -> None:
    mesh = await _raw_mesh(lab)
    assert_answer(await mesh.get("web", "/raw/reset"), 503, "connection closed before response")


@bounded(10)
async def test_a_response_broken_off_before_anything_was_sent_answers_502(lab: Lab) -> None:
    mesh = await _raw_mesh(lab)
    assert_answer(await mesh.get("web", "/raw/midbody/4000"), 502, "upstream protocol error")


@bounded(10)
async def test_the_request_timeout_answers_504_request_timeout(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh(
        {"web": [], "web-v1": [v1]}, route_to("web-v1", options="timeouts: {request: 100ms}")
    )
    assert_answer(await mesh.get("web", "/delay/2000"), 504, "request timeout")


@bounded(10)
async def test_the_backend_request_timeout_answers_504_backend_request_timeout(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    # with a retry policy the backend request timeout bounds each try (without one, the
    # only try is the request: the control plane sends the smaller timeout as the route's)
    options = """timeouts: {request: 5s, backendRequest: 100ms}
    retry: {codes: [503], attempts: 1, backoff: 1ms}"""
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, route_to("web-v1", options=options))
    assert_answer(await mesh.get("web", "/delay/2000"), 504, "backend request timeout")


@bounded(10)
async def test_a_fault_abort_says_fault_injected(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    fault = f"""
apiVersion: policy.turnout.dev/v1alpha1
kind: FaultInjection
metadata: {{name: fault, namespace: {NS}}}
spec: {{abort: {{httpStatus: 418}}}}
"""
    routes = f"{fault}---{route_to('web-v1', options=fault_filter('fault'))}"
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, routes)
    assert_answer(await mesh.get("web", "/echo"), 418, "fault injected")
    assert v1.total == 0


@bounded(10)
async def test_inbound_a_refused_connection_to_the_app_answers_502(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh(
        {"web": [], "web-v1": [v1]}, route_to("web-v1"), inbound_app=("127.0.0.1", dead_port())
    )
    got = await mesh.get("web", "/echo", port=mesh.inbound)
    assert_answer(got, 502, "connection refused")


@bounded(10)
async def test_answers_from_backends_carry_no_proxy_error(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, route_to("web-v1"))
    status, headers, _ = await mesh.get("web", "/status/503")
    assert (status, headers["x-backend"]) == (503, "v1")
    assert "l5d-proxy-error" not in headers


async def _raw_mesh(lab: Lab) -> Mesh:
    v1, raw = await lab.backend("v1"), await lab.raw_backend()
    return await lab.mesh({"web": [], "web-v1": [v1], "raw": [raw]}, LIMITS_ROUTES)
