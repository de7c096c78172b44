"""A stopping proxy drains its client connections (docs/http2.md): a real grpcio client's
bidi call in flight gets a GOAWAY and still finishes, an RPC started after it is refused,
and the stop returns once the stream has ended (not after the grace period); HTTP/1.1: an
idle keep-alive connection is closed at once, a request in flight is answered with
`Connection: close`, then its connection closed."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterator
from pathlib import Path

import grpc

from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import Mesh, bounded, route_to, service_yaml, start_mesh
from tests.proxy.h2.grpc_server import GrpcServer
from turnout.cli.offline import offline_runtime
from turnout.proxy.runner import SHUTDOWN_GRACE_S, stop_proxy


async def mesh_to(tmp_path: Path, backend: str, port: int) -> Mesh:
    """A mesh whose Service `web` routes everything to `backend` (one endpoint, `port`)."""
    f = tmp_path / "mesh.yaml"
    f.write_text(
        "\n---\n".join([service_yaml("web", []), service_yaml(backend, [port]), route_to(backend)])
    )
    table, _ = offline_runtime([str(f)], namespace="shop")
    return await start_mesh(table)


@bounded(20)
async def test_a_stop_sends_goaway_lets_the_call_in_flight_finish_and_refuses_new_ones(
    tmp_path: Path,
) -> None:
    server = GrpcServer("a").start()
    mesh = await mesh_to(tmp_path, "grpc-a", server.port)
    channel = grpc.insecure_channel(
        f"127.0.0.1:{mesh.outbound}", options=[("grpc.default_authority", "web")]
    )
    sent: queue.Queue[bytes | None] = queue.Queue()

    def requests() -> Iterator[bytes]:
        while (message := sent.get()) is not None:
            yield message

    call = channel.stream_stream("/test.Echo/Bidi")(requests(), timeout=15)
    stopping: asyncio.Task[None] | None = None
    try:
        sent.put(b"one")
        assert await asyncio.to_thread(next, call) == b"one"
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        stopping = asyncio.create_task(stop_proxy(mesh.proxy, mesh.task))
        while not mesh.proxy.h2.open or not all(c._draining for c in mesh.proxy.h2.open):
            await asyncio.sleep(0.01)  # the GOAWAY is out
        assert not stopping.done()  # waiting for the stream in flight

        def unary() -> grpc.StatusCode:
            try:
                channel.unary_unary("/test.Echo/Unary")(b"late", timeout=5)
            except grpc.RpcError as exc:
                return exc.code()  # type: ignore[no-any-return]
            return grpc.StatusCode.OK

        assert await asyncio.to_thread(unary) == grpc.StatusCode.UNAVAILABLE
        sent.put(b"two")
        assert await asyncio.to_thread(next, call) == b"two"
        sent.put(None)
        assert await asyncio.to_thread(list, call) == []
        assert call.code() == grpc.StatusCode.OK
        await asyncio.wait_for(stopping, SHUTDOWN_GRACE_S)
        assert loop.time() - t0 < SHUTDOWN_GRACE_S  # ended by the stream, not the grace
        assert not mesh.proxy.h2.open
        assert server.calls["Unary"] == 0
    finally:
        sent.put(None)
        channel.close()
        await mesh.session.close()
        if stopping is None:
            await stop_proxy(mesh.proxy, mesh.task)
        elif not stopping.done():
            await stopping
        server.stop()


async def _exchange(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


@bounded(15)
async def test_a_stop_closes_idle_http1_connections_and_ends_busy_ones_after_their_response(
    tmp_path: Path,
) -> None:
    backend = await Backend("a").start()
    mesh = await mesh_to(tmp_path, "web-a", backend.port)
    stopping: asyncio.Task[None] | None = None
    try:
        idle_r, idle_w = await asyncio.open_connection("127.0.0.1", mesh.outbound)
        idle_w.write(b"GET /echo HTTP/1.1\r\nHost: web\r\n\r\n")
        assert b"connection: close" not in (await _exchange(idle_r)).lower()
        busy_r, busy_w = await asyncio.open_connection("127.0.0.1", mesh.outbound)
        busy_w.write(b"GET /delay/700 HTTP/1.1\r\nHost: web\r\n\r\n")
        while backend.hits["/delay/700"] < 1:
            await asyncio.sleep(0.01)  # the request is in flight
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        stopping = asyncio.create_task(stop_proxy(mesh.proxy, mesh.task))
        assert await asyncio.wait_for(idle_r.read(), 2) == b""  # closed, not at its timeout
        answer = await _exchange(busy_r)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"slow a")
        assert b"connection: close" in answer.lower()
        assert await asyncio.wait_for(busy_r.read(), 2) == b""
        await asyncio.wait_for(stopping, SHUTDOWN_GRACE_S)
        assert loop.time() - t0 < SHUTDOWN_GRACE_S  # ended by the response, not the grace
        assert not mesh.proxy.h2.http1
        idle_w.close()
        busy_w.close()
    finally:
        await mesh.session.close()
        if stopping is None:
            await stop_proxy(mesh.proxy, mesh.task)
        elif not stopping.done():
            await stopping
        await backend.stop()
