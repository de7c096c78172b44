"""The HTTP/2 server side (`h2_server`, `h2_stream`) against a raw `h2` client on real
sockets: per-stream flow control both ways (D6 of docs/plan-http2.md), trailers, resets
reaching the handler, and HTTP/1.1's chunked trailers (`TE: trailers`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tests.proxy.transport.helpers import CountingHooks, connect, running
from tests.support.h2client import H2Client
from turnout.proxy.transport import IncomingRequest, ResponseWriter, h2_server
from turnout.proxy.transport.h2_server import take_over

WINDOW = 65_535  # the default stream and (client) connection windows


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.005)


def serving(
    handler: Callable[[IncomingRequest, ResponseWriter], Awaitable[None] | None],
    hooks: CountingHooks | None = None,
) -> object:
    return running(handler, http2=take_over, hooks=hooks)  # type: ignore[arg-type]


async def test_a_request_body_is_acknowledged_only_as_the_handler_reads_it() -> None:
    go = asyncio.Event()

    async def slow_reader(req: IncomingRequest, writer: ResponseWriter) -> None:
        await go.wait()
        body = await req.body.read(1 << 20)
        assert body is not None
        await writer.respond(200, [], b"%d" % len(body))

    async with serving(slow_reader) as addr:  # type: ignore[attr-defined]
        client = await H2Client.open(addr)
        try:
            # the server raised the connection's window to 1 MiB at once (its WINDOW_UPDATE)
            await until(lambda: client.conn.outbound_flow_control_window == 1024 * 1024)
            sid = client.start("POST", "/up", end=False)
            sending = asyncio.create_task(client.send_all(sid, b"x" * 200_000))
            await until(lambda: client.conn.local_flow_control_window(sid) == 0)
            # the handler has read nothing: the client may not send past the stream window
            assert client.conn.outbound_flow_control_window == 1024 * 1024 - WINDOW
            assert not sending.done()
            go.set()
            await sending
            resp = client.responses[sid]
            await asyncio.wait_for(resp.done.wait(), 5)
            assert resp.status == 200 and bytes(resp.body) == b"200000"
        finally:
            await client.close()


async def test_a_response_waits_for_the_client_window_and_resumes() -> None:
    written: list[str] = []

    async def big(req: IncomingRequest, writer: ResponseWriter) -> None:
        await writer.start(200, [("content-type", "application/octet-stream")])
        for _ in range(10):
            await writer.write(b"y" * 16_384)
        await writer.end()
        written.append("all")

    async with serving(big) as addr:  # type: ignore[attr-defined]
        client = await H2Client.open(addr, auto_ack=False)
        try:
            sid = client.start("GET", "/big")
            resp = client.responses[sid]
            await until(lambda: len(resp.body) == WINDOW)
            assert written == [] and not resp.done.is_set()  # the writer waits in write()
            client.auto_ack = True
            client.conn.acknowledge_received_data(WINDOW, sid)
            client.flush()
            await asyncio.wait_for(resp.done.wait(), 5)
            assert len(resp.body) == 163_840 and written == ["all"]
        finally:
            await client.close()


async def test_trailers_end_the_body_in_a_last_headers_frame() -> None:
    def grpc_like(req: IncomingRequest, writer: ResponseWriter) -> None:
        writer.begin(200, [("content-type", "application/grpc")])
        assert writer.push(b"\x00\x00\x00\x00\x02hi")
        writer.close_body(trailers=[(b"grpc-status", b"0"), (b"grpc-message", b"fine")])
        writer.complete()

    async with serving(grpc_like) as addr:  # type: ignore[attr-defined]
        client = await H2Client.open(addr)
        try:
            resp = await client.request("POST", "/pkg.Svc/Call", body=b"\x00\x00\x00\x00\x00")
        finally:
            await client.close()
    assert resp.status == 200 and bytes(resp.body) == b"\x00\x00\x00\x00\x02hi"
    assert resp.trailers == [(b"grpc-status", b"0"), (b"grpc-message", b"fine")]


async def test_a_client_reset_cancels_the_stream_handler_only() -> None:
    cancelled: list[str] = []
    started: list[str] = []
    hold = asyncio.Event()

    async def waits(req: IncomingRequest, writer: ResponseWriter) -> None:
        if req.path == "/quick":
            await writer.respond(200, [], b"quick")
            return
        started.append(req.path)
        try:
            await hold.wait()
        except asyncio.CancelledError:
            cancelled.append(req.path)
            raise

    def callback(req: IncomingRequest, writer: ResponseWriter) -> Awaitable[None] | None:
        if req.path == "/cb":
            writer.on_cancel = lambda: cancelled.append("/cb")
            return None
        return waits(req, writer)

    async with serving(callback) as addr:  # type: ignore[attr-defined]
        client = await H2Client.open(addr)
        try:
            a, b = client.start("GET", "/slow"), client.start("GET", "/cb")
            await until(lambda: started == ["/slow"])
            client.conn.reset_stream(a)
            client.conn.reset_stream(b)
            client.flush()
            await until(lambda: len(cancelled) == 2)
            quick = await client.request("GET", "/quick")  # the connection lives on
        finally:
            await client.close()
    assert sorted(cancelled) == ["/cb", "/slow"]
    assert quick.status == 200 and bytes(quick.body) == b"quick"


async def test_http1_sends_trailers_only_to_a_client_that_asked_for_them() -> None:
    def with_trailers(req: IncomingRequest, writer: ResponseWriter) -> None:
        writer.begin(200, [])
        writer.push(b"body")
        writer.close_body(trailers=[(b"grpc-status", b"0")])
        writer.complete()

    async with serving(with_trailers) as addr:  # type: ignore[attr-defined]
        replies = []
        for te in (b"TE: trailers\r\n", b""):
            async with connect(addr) as (reader, writer):
                writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n" + te + b"Connection: close\r\n\r\n")
                replies.append(await asyncio.wait_for(reader.read(-1), 5))
    asked, not_asked = replies
    assert asked.endswith(b"4\r\nbody\r\n0\r\ngrpc-status: 0\r\n\r\n"), asked
    assert not_asked.endswith(b"4\r\nbody\r\n0\r\n\r\n"), not_asked


async def test_a_stream_idle_for_the_stream_idle_timeout_is_reset_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Envoy's stream_idle_timeout: a stream with no frame either way is reset (CANCEL) and
    its handler cancelled; a stream that keeps sending is not, on the same connection."""
    monkeypatch.setattr(h2_server, "STREAM_IDLE_TIMEOUT_S", 0.4)
    cancelled: list[str] = []

    async def hang(req: IncomingRequest, writer: ResponseWriter) -> None:
        try:
            async for _ in req.body.chunks():
                pass
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(req.target)
            raise

    async with serving(hang) as addr:  # type: ignore[attr-defined]
        client = await H2Client.open(addr)
        try:
            idle = client.start("GET", "/idle")
            busy = client.start("POST", "/busy", end=False)
            async with asyncio.timeout(5):
                while client.responses[idle].reset is None:
                    client.send(busy, b"x", end=False)  # a frame a sweep keeps it alive
                    await asyncio.sleep(0.05)
            assert client.responses[idle].reset == 8  # CANCEL
            await until(lambda: cancelled == ["/idle"])
            assert client.responses[busy].reset is None
        finally:
            await client.close()
