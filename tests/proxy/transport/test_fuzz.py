"""Random bytes at the listener: it must never crash (no exception reaches the event loop),
close every connection, and keep answering valid requests afterwards."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.proxy.transport.helpers import Address, CountingHooks
from turnout.proxy.transport import IncomingRequest, Limits, ResponseWriter, serve_http

FRAGMENTS = [
    b"GET / HTTP/1.1\r\n",
    b"POST /echo HTTP/1.1\r\n",
    b"HEAD / HTTP/1.0\r\n",
    b"Host: a\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 99999999999999999999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive\r\n",
    b"Expect: 100-continue\r\n",
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n",
    b"\r\n",
    b"hello",
    b"5\r\nhello\r\n",
    b"0\r\n\r\n",
    b"ffffffffffffffff\r\n",
    b"\x00\xff",
    b" ",
]

payloads = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=8)), max_size=20).map(
        b"".join
    ),
)


async def handler(req: IncomingRequest, writer: ResponseWriter) -> None:
    body = await req.body.read(1024)
    if body is None:
        await writer.start(200, [])
        async for chunk in req.body.chunks():
            await writer.write(chunk)
        await writer.end()
        return
    await writer.respond(200, [("x-len", str(len(body)))], body)


class Harness:
    def __init__(self) -> None:
        self.runner = asyncio.Runner()
        self.errors: list[dict[str, Any]] = []
        self.hooks = CountingHooks()
        self.runner.get_loop().set_exception_handler(lambda _loop, ctx: self.errors.append(ctx))
        limits = Limits(header_timeout_ms=200, body_timeout_ms=200, keepalive_timeout_ms=200)
        self.server = self.runner.run(
            serve_http(handler, host="127.0.0.1", port=0, limits=limits, hooks=self.hooks)
        )
        self.addr: Address = ("127.0.0.1", self.server.sockets[0].getsockname()[1])

    async def send(self, data: bytes, *, answer: bool = False) -> bytes:
        """Send `data`; with `answer`, read one response (the connection stays open until
        then), else hang up at once (the server sees the bytes and the FIN together)."""
        reader, writer = await asyncio.open_connection(*self.addr)
        try:
            writer.write(data)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            if not answer:
                await asyncio.sleep(0)
                return b""
            async with asyncio.timeout(2):
                head = await reader.readuntil(b"\r\n\r\n")
                return head + await reader.readexactly(2)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def send_and_read(self, data: bytes) -> bytes:
        """Send `data` and read until the server closes (at most 2 s)."""
        reader, writer = await asyncio.open_connection(*self.addr)
        try:
            writer.write(data)
            async with asyncio.timeout(2):
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                    return await reader.read(-1)
            return b""
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def all_closed(self) -> None:
        async with asyncio.timeout(3):
            while len(self.hooks.closed) < len(self.hooks.opened):
                await asyncio.sleep(0.01)

    def close(self) -> None:
        self.server.close()
        self.runner.run(self.server.wait_closed())
        self.runner.close()


@contextlib.contextmanager
def harness() -> Iterator[Harness]:
    h = Harness()
    try:
        yield h
    finally:
        h.close()


def test_random_bytes_never_crash_the_listener() -> None:
    with harness() as h:

        @settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        )
        @given(payload=payloads, linger=st.booleans())
        def throw(payload: bytes, linger: bool) -> None:
            if linger:
                # garbage, then a request that ends the connection: read to the end
                h.runner.run(
                    h.send_and_read(
                        payload + b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                    )
                )
            else:
                h.runner.run(h.send(payload))

        throw()
        h.runner.run(h.all_closed())
        reply = h.runner.run(
            h.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", answer=True)
        )
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
        assert reply.endswith(b"\r\n\r\nhi")
        h.runner.run(h.all_closed())
        assert h.errors == []
