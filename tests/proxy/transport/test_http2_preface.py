"""A listener without HTTP/2 (`serve_http` without `http2=`; the proxy's own listeners all
pass it, docs/http2.md): a connection opening with the prior-knowledge preface (gRPC's h2c)
is answered 505 in HTTP/1 and closed. That answer is kept on purpose: grpcio reads the HTTP/1
status line and fails the call at once with a reason naming it ("Trying to connect an http1.x
server (HTTP status 505)"), whereas an HTTP/2 GOAWAY(HTTP_1_1_REQUIRED) sends its channel to
IDLE and the call waits for its deadline (measured while spiking the design's step 1).

With `http2=`, a connection whose first read is the preface is handed over, bytes and
accounting, to that protocol: the seam the HTTP/2 server plugs into."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import grpc

from tests.proxy.transport.helpers import CountingHooks, raw, running
from turnout.proxy.transport import ConnectionInfo, IncomingRequest, ResponseWriter, serve_http
from turnout.proxy.transport.downstream import Listener
from turnout.proxy.transport.messages import Address, hook_close

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CLIENT_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame


async def ok(req: IncomingRequest, writer: ResponseWriter) -> None:
    await writer.respond(200, [], b"ok")


async def test_the_preface_and_settings_are_answered_505_and_closed() -> None:
    async with running(ok) as addr:
        reply = await raw(addr, PREFACE + CLIENT_SETTINGS)
    assert reply.startswith(b"HTTP/1.1 505 "), reply
    assert reply.count(b"HTTP/1.1 ") == 1, reply


async def test_a_grpc_client_fails_at_once_naming_the_http1_answer() -> None:
    async with (
        running(ok) as addr,
        grpc.aio.insecure_channel(f"{addr[0]}:{addr[1]}") as channel,
    ):
        call = channel.unary_unary("/test.Greeter/SayHello")
        start = time.monotonic()
        try:
            await call(b"hi", timeout=5)
        except grpc.aio.AioRpcError as exc:
            error = exc
        else:
            raise AssertionError("the call through an HTTP/1-only listener succeeded")
        elapsed = time.monotonic() - start
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
    assert "HTTP status 505" in (error.details() or ""), error.details()
    assert elapsed < 2, elapsed  # refused, not left to its deadline


# -- the seam HTTP/2 plugs into (docs/plan-http2.md, D1) -------------------------------------


class Taken(asyncio.Protocol):
    """A stand-in HTTP/2 server: echoes what it was handed, then closes, and ends the
    connection's accounting as `Http2Takeover` asks."""

    def __init__(self, transport: asyncio.Transport, conn: ConnectionInfo, listener: Listener):
        self.transport, self.conn, self.listener = transport, conn, listener

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"taken:" + data)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.open -= 1
        hook_close(self.listener.hooks, self.conn, exc)


@contextlib.asynccontextmanager
async def taking_over(seen: list[bytes]) -> AsyncIterator[tuple[Address, CountingHooks]]:
    hooks = CountingHooks()

    def takeover(
        transport: asyncio.Transport, conn: ConnectionInfo, listener: Listener, data: bytes
    ) -> asyncio.Protocol:
        seen.append(data)
        return Taken(transport, conn, listener)

    server = await serve_http(ok, host="127.0.0.1", port=0, hooks=hooks, http2=takeover)
    try:
        yield ("127.0.0.1", server.sockets[0].getsockname()[1]), hooks
    finally:
        server.close()
        await server.wait_closed()


async def test_a_preface_is_handed_over_with_every_byte_read() -> None:
    seen: list[bytes] = []
    async with taking_over(seen) as (addr, hooks):
        reply = await raw(addr, PREFACE + CLIENT_SETTINGS)
        async with asyncio.timeout(2):
            while not hooks.closed:
                await asyncio.sleep(0.01)
    assert reply == b"taken:" + PREFACE + CLIENT_SETTINGS
    assert seen == [PREFACE + CLIENT_SETTINGS]
    assert len(hooks.opened) == len(hooks.closed) == 1  # one open, one close: no double end


async def test_an_http1_connection_never_reaches_the_takeover() -> None:
    seen: list[bytes] = []
    async with taking_over(seen) as (addr, _):
        first = await raw(addr, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        after = await raw(addr, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" + PREFACE)
    assert first.startswith(b"HTTP/1.1 200 "), first
    assert after.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 505 " in after, after
    assert seen == []


async def test_a_preface_split_over_reads_is_answered_505() -> None:
    # the bytes before the failing read are inside llhttp, not replayable: not handed over
    seen: list[bytes] = []
    async with taking_over(seen) as (addr, _):
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(PREFACE[:5])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(PREFACE[5:])
        async with asyncio.timeout(3):
            reply = await reader.read(-1)
        writer.close()
    assert reply.startswith(b"HTTP/1.1 505 "), reply
    assert seen == []
