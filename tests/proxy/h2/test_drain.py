"""A stopping proxy drains its HTTP/2 client connections (docs/http2.md): a real grpcio
client's bidi call in flight gets a GOAWAY and still finishes, an RPC started after it is
refused, and the stop returns once the stream has ended (not after the grace period)."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterator
from pathlib import Path

import grpc

from tests.proxy.e2e.harness import bounded, route_to, service_yaml, start_mesh
from tests.proxy.h2.grpc_server import GrpcServer
from turnout.cli.offline import offline_runtime
from turnout.proxy.runner import SHUTDOWN_GRACE_S, stop_proxy


@bounded(20)
async def test_a_stop_sends_goaway_lets_the_call_in_flight_finish_and_refuses_new_ones(
    tmp_path: Path,
) -> None:
    server = GrpcServer("a").start()
    f = tmp_path / "mesh.yaml"
    f.write_text(
        "\n---\n".join(
            [service_yaml("web", []), service_yaml("grpc-a", [server.port]), route_to("grpc-a")]
        )
    )
    table, _ = offline_runtime([str(f)], namespace="shop")
    mesh = await start_mesh(table)
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
