"""A grpcio client through `mesh proxy -f` as users run it (its own process, on uvloop,
not the test's event loop) to a grpcio server: unary and bidi calls, and their grpc_status
in the proxy's metrics."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import grpc

from tests.proxy.e2e.harness import (
    bounded,
    dead_port,
    metric,
    service_yaml,
    start_cli_proxy,
    wait_admin_ready,
)
from tests.proxy.h2.grpc_server import GrpcServer

ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - backendRefs: [{name: web, port: 80}]
"""


@bounded(40)
async def test_grpc_calls_through_a_mesh_proxy_process(tmp_path: Path) -> None:
    server = GrpcServer("cli").start()
    manifests = tmp_path / "mesh.yaml"
    manifests.write_text("\n---\n".join([service_yaml("web", [server.port]), ROUTE]))
    outbound, admin = dead_port(), dead_port()
    proc = await start_cli_proxy(
        *("-f", str(manifests), "--namespace", "shop", "--workload", "deployment/client"),
        *("--outbound", f"127.0.0.1:{outbound}", "--admin", f"127.0.0.1:{admin}"),
    )
    try:
        await wait_admin_ready(admin)

        def calls() -> tuple[bytes, list[bytes]]:
            with grpc.insecure_channel(
                f"127.0.0.1:{outbound}", options=[("grpc.default_authority", "web")]
            ) as ch:
                reply = ch.unary_unary("/test.Echo/Unary")(b"hi", timeout=10)
                bidi = list(ch.stream_stream("/test.Echo/Bidi")(iter([b"a", b"b"]), timeout=10))
                return reply, bidi

        assert await asyncio.to_thread(calls) == (b"hi", [b"a", b"b"])
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{admin}/metrics") as resp,
        ):
            text = await resp.text()
        ok = {"direction": "outbound", "grpc_status": "0", "classification": "success"}
        assert metric(text, "response_total", **ok) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), timeout=10)
        server.stop()
