"""gRPC calls from an HTTP/1.1 client (raw gRPC POSTs) through the proxy to a real grpcio
server: grpc-status from trailers and trailers-only responses in the metrics, retries on
UNAVAILABLE (trailers-only), grpc-timeout capping the route's timeout (docs/http2.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from multidict import CIMultiDict

from tests.proxy.e2e.harness import Mesh, bounded, metric, service_yaml, start_mesh
from tests.proxy.h2.backends import H2Backend
from tests.proxy.h2.grpc_server import GrpcServer, frame, unframe
from turnout.cli.offline import offline_runtime

ROUTES = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{path: {type: Exact, value: /hang}}]
    timeouts: {request: 5s}
    backendRefs: [{name: web-h2, port: 80}]
  - retry: {codes: [500, 503], attempts: 2, backoff: 10ms}  # gRPC: internal, unavailable
    backendRefs: [{name: web-grpc, port: 80}]
"""


def _svc(name: str, port: int, app_protocol: str) -> str:
    return service_yaml(name, [port]).replace(
        '"name": "http", "port": 80}',
        f'"name": "http", "port": 80, "appProtocol": "{app_protocol}"}}',
    )


@dataclass
class Rig:
    mesh: Mesh
    grpc: GrpcServer

    async def call(
        self, method: str, *messages: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, CIMultiDict[str], list[bytes]]:
        url = f"http://127.0.0.1:{self.mesh.outbound}/test.Echo/{method}"
        hdrs = {"Host": "web", "content-type": "application/grpc", "te": "trailers"}
        async with self.mesh.session.post(
            url, data=b"".join(frame(m) for m in messages), headers={**hdrs, **(headers or {})}
        ) as resp:
            body = await resp.read()
            return resp.status, CIMultiDict(resp.headers), unframe(body)


@pytest.fixture(scope="module")
def grpc_server() -> Iterator[GrpcServer]:
    server = GrpcServer().start()
    yield server
    server.stop()


@pytest.fixture
async def rig(tmp_path: Path, grpc_server: GrpcServer) -> AsyncIterator[Rig]:
    h2b = await H2Backend().start()
    f = tmp_path / "mesh.yaml"
    f.write_text(
        "\n---\n".join(
            [
                service_yaml("web", []),
                _svc("web-grpc", grpc_server.port, "grpc"),
                _svc("web-h2", h2b.port, "kubernetes.io/h2c"),
                ROUTES,
            ]
        )
    )
    table, diags = offline_runtime([str(f)], namespace="shop")
    assert not [d for d in diags if d.severity.value == "error"]
    mesh = await start_mesh(table)
    yield Rig(mesh, grpc_server)
    await mesh.close()
    await h2b.stop()


@bounded(15)
async def test_grpc_statuses_reach_the_metrics_from_trailers_and_trailers_only(rig: Rig) -> None:
    status, headers, messages = await rig.call("Unary", b"ping")
    assert (status, messages, headers["x-backend"]) == (200, [b"ping"], "grpc")
    status, headers, _ = await rig.call("NotFound", b"x")  # trailers-only
    assert (status, headers["grpc-status"]) == (200, "5")
    before = rig.grpc.calls["ServerStream"]
    status, _, messages = await rig.call("ServerStream", b"3!")  # INTERNAL in the trailers
    assert (status, messages) == (200, [b"m0", b"m1", b"m2"])
    # INTERNAL is a retried status here, but it came after the response started: not retried
    assert rig.grpc.calls["ServerStream"] - before == 1
    text = await rig.mesh.metrics()
    out = {"direction": "outbound", "status_code": "200"}
    assert metric(text, "response_total", **out, grpc_status="0", classification="success") == 1
    assert metric(text, "response_total", **out, grpc_status="5", classification="failure") == 1
    assert metric(text, "response_total", **out, grpc_status="13", classification="failure") == 1


@bounded(15)
async def test_unavailable_trailers_only_is_retried_by_the_routes_policy(rig: Rig) -> None:
    before = rig.grpc.calls["Flaky"]
    status, headers, messages = await rig.call("Flaky", b"2:a")
    assert (status, messages) == (200, [b"2:a"])
    assert rig.grpc.calls["Flaky"] - before == 3
    status, headers, _ = await rig.call("Flaky", b"5:b")  # attempts: 2, then the last answer
    assert (status, headers["grpc-status"]) == (200, "14")
    assert rig.grpc.calls["Flaky"] - before == 6


@bounded(15)
async def test_grpc_timeout_caps_the_route_timeout_answered_deadline_exceeded(rig: Rig) -> None:
    status, _, messages = await rig.call("Unary", b"x", headers={"grpc-timeout": "2S"})
    assert (status, messages) == (200, [b"x"])  # in time
    url = f"http://127.0.0.1:{rig.mesh.outbound}/hang"
    hdrs = {"Host": "web", "content-type": "application/grpc", "grpc-timeout": "150m"}
    async with rig.mesh.session.post(url, data=frame(b"x"), headers=hdrs) as resp:
        assert resp.status == 200
        assert resp.headers["grpc-status"] == "4"  # DEADLINE_EXCEEDED, not the route's 5 s
        assert resp.headers["l5d-proxy-error"] == "request timeout"
