"""Test plumbing for the transport: an aiohttp backend, a forwarding handler, a raw client.

The backend is an independent peer (aiohttp's own server); the raw client crafts bytes that
no well-behaved client would send. Everything binds 127.0.0.1, port 0.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from turnout.proxy.transport import (
    ConnectionInfo,
    Handler,
    IncomingRequest,
    Limits,
    ResponseWriter,
    UpstreamPool,
    serve_http,
)
from turnout.proxy.transport.downstream import Http2Takeover

Address = tuple[str, int]


class CountingHooks:
    """ConnectionHooks that remember every connection."""

    def __init__(self) -> None:
        self.opened: list[ConnectionInfo] = []
        self.closed: list[tuple[ConnectionInfo, BaseException | None]] = []

    def on_connection_open(self, conn: ConnectionInfo) -> None:
        self.opened.append(conn)

    def on_connection_close(self, conn: ConnectionInfo, error: BaseException | None) -> None:
        self.closed.append((conn, error))


class Backend:
    """The aiohttp backend's record: the client address of every request it served."""

    def __init__(self) -> None:
        self.peers: list[tuple[str, int]] = []

    @property
    def connections(self) -> int:
        """Distinct TCP connections the backend saw requests on."""
        return len(set(self.peers))


def backend_app(record: Backend) -> web.Application:
    @web.middleware
    async def remember(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None:
            record.peers.append((peer[0], peer[1]))
        return await handler(request)

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        return web.Response(body=body, headers={"x-method": request.method})

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(5):
            await resp.write(f"part{i};".encode())
        await resp.write_eof()
        return resp

    async def stream_echo(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        async for chunk in request.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def big(request: web.Request) -> web.StreamResponse:
        size = int(request.match_info["size"])
        return web.Response(body=b"x" * size)

    async def delay(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(int(request.match_info["ms"]) / 1000)
        return web.Response(text="late")

    async def status(request: web.Request) -> web.StreamResponse:
        return web.Response(status=int(request.match_info["code"]))

    async def ws(request: web.Request) -> web.StreamResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            await sock.send_str("echo:" + msg.data)
        return sock

    app = web.Application(middlewares=[remember])
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/chunked", chunked)
    app.router.add_post("/stream", stream_echo)
    app.router.add_get("/big/{size}", big)
    app.router.add_get("/delay/{ms}", delay)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/ws", ws)
    return app


@contextlib.asynccontextmanager
async def aiohttp_backend() -> AsyncIterator[tuple[Address, Backend]]:
    """The aiohttp backend; yields its address and its record."""
    record = Backend()
    runner = web.AppRunner(backend_app(record), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = runner.addresses[0]
    try:
        yield ("127.0.0.1", server[1]), record
    finally:
        await runner.cleanup()


def forwarder(pool: UpstreamPool, endpoint: Address, *, timeout_ms: int | None = 5000) -> Handler:
    """The smallest useful handler: forward to `endpoint`, stream the answer back."""

    async def handle(req: IncomingRequest, writer: ResponseWriter) -> None:
        headers = [(k, v) for k, v in req.headers if k.lower() != "host"]
        if req.upgrade is not None:
            resp, upgraded = await pool.upgrade(
                endpoint,
                method=req.method,
                target=req.target,
                headers=headers,
                upgrade=req.upgrade,
                timeout_ms=timeout_ms,
            )
            if upgraded is not None:
                await writer.tunnel(upgraded)
                return
            await writer.respond(resp.status, resp.headers, await resp.read())
            return
        body = await req.body.read(64 * 1024)
        resp = await pool.request(
            endpoint,
            method=req.method,
            target=req.target,
            headers=headers,
            body=body if body is not None else req.body.chunks(),
            timeout_ms=timeout_ms,
        )
        try:
            if resp.content_length is not None and resp.content_length < 64 * 1024:
                await writer.respond(resp.status, resp.headers, await resp.read())
                return
            await writer.start(resp.status, resp.headers, content_length=resp.content_length)
            async for chunk in resp.chunks():
                await writer.write(chunk)
            await writer.end()
        finally:
            resp.release()

    return handle


@contextlib.asynccontextmanager
async def running(
    handler: Callable[[IncomingRequest, ResponseWriter], Awaitable[None]],
    *,
    limits: Limits | None = None,
    hooks: CountingHooks | None = None,
    http2: Http2Takeover | None = None,
) -> AsyncIterator[Address]:
    """Serve `handler` (HTTP/2 too with `http2`); on exit, wait (bounded) until every
    accepted connection has closed, so no test leaks a transport into the next one."""
    hooks = hooks or CountingHooks()
    server = await serve_http(
        handler, host="127.0.0.1", port=0, limits=limits, hooks=hooks, http2=http2
    )
    port = server.sockets[0].getsockname()[1]
    try:
        yield ("127.0.0.1", port)
    finally:
        server.close()
        await server.wait_closed()
        async with asyncio.timeout(3):
            while len(hooks.closed) < len(hooks.opened):
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def connect(
    addr: Address,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw client connection, closed on exit."""
    reader, writer = await asyncio.open_connection(*addr)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def raw(addr: Address, data: bytes, *, timeout: float = 3.0) -> bytes:
    """Send `data`, then read until the server closes (at most `timeout` seconds)."""
    reader, writer = await asyncio.open_connection(*addr)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read(-1)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length or chunked body, from a raw connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(data[:-2])
        body = b"".join(parts)
    else:
        body = b""
    return status, headers, body


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
"""What a raw upstream does with one connection: `script(reader, writer, connection_number)`."""


@contextlib.asynccontextmanager
async def raw_upstream(script: Script) -> AsyncIterator[tuple[Address, list[int]]]:
    """A bare TCP server on 127.0.0.1 running `script` per connection, for the bytes no
    well-behaved HTTP server writes; yields its address and the count of connections."""
    count = [0]
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count[0] += 1
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await script(reader, writer, count[0])
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield ("127.0.0.1", server.sockets[0].getsockname()[1]), count
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request (head, and its Content-Length body) from a raw upstream's connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return head + await reader.readexactly(int(line.split(b":")[1]))
    return head
