"""Real HTTP backends on 127.0.0.1 for proxy tests (aiohttp, port 0).

Each backend answers:
- ``/status/{code}``: that status;
- ``/delay/{ms}``: 200 after sleeping;
- ``/flaky/{n}``: 503 for the first `n` requests it sees on that path, then 200;
- ``/half``: 503 for every other request (a backend failing 50%);
- ``/big/{n}``: 200 with `n` patterned bytes and a Content-Length;
- ``/chunked/{n}``: the same bytes, chunked in 16 KiB pieces;
- ``/ws``: a WebSocket that answers each text message with ``<name>: <message>``;
- ``/slow-first/{ms}``: the first request on that path sleeps `ms` before its 200, later
  ones answer at once (proves that a per-try timeout is retried);
- anything else (``/echo``...): 200 with a JSON echo of method, path, query, headers, body.
A backend with `delay_ms` holds every request that long first. Every response carries ``x-backend: <name>``; `hits` counts requests per path so tests can
count retries at the backend.

`RawBackend` is a bare asyncio server for what aiohttp will not do on purpose: ``/reset``
closes the connection before any response byte, ``/midbody/{length}`` sends a response head
announcing `length` body bytes, 1000 of them, then resets the connection; ``/interim`` sends
a 103 Early Hints before its 200; ``/eof`` sends a body delimited by closing the connection.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Backend:
    name: str
    port: int = 0
    hits: Counter[str] = field(default_factory=Counter)
    seen: list[dict[str, object]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    delay_ms: int = 0
    """Every request waits this long first (a slow mirror target)."""
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def wait_hits(self, path: str, n: int) -> None:
        """Return once `path` has been requested at least `n` times."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: self.hits[path] >= n)

    @property
    def total(self) -> int:
        return sum(self.hits.values())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] += 1
        async with self._arrived:
            self._arrived.notify_all()
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        body = await request.read()
        self.seen.append(
            {
                "path": request.path_qs,
                "headers": dict(request.headers),
                "body": body.decode("latin-1"),
            }
        )
        headers = {"x-backend": self.name}
        parts = path.strip("/").split("/")
        if parts[0] == "status" and len(parts) > 1:
            return web.Response(
                status=int(parts[1]), headers=headers, text=f"{parts[1]} from {self.name}"
            )
        if parts[0] == "delay" and len(parts) > 1:
            await asyncio.sleep(int(parts[1]) / 1000)
            return web.Response(headers=headers, text=f"slow {self.name}")
        if parts[0] == "flaky" and len(parts) > 1:
            if self.hits[path] <= int(parts[1]):
                return web.Response(status=503, headers=headers, text="flaky")
            return web.Response(headers=headers, text=f"ok after {parts[1]}")
        if parts[0] == "slow-first" and len(parts) > 1:
            if self.hits[path] == 1:
                await asyncio.sleep(int(parts[1]) / 1000)
                return web.Response(headers=headers, text="slow first")
            return web.Response(headers=headers, text="fast")
        if parts[0] == "big" and len(parts) > 1:
            size = int(parts[1])
            return web.Response(headers=headers, body=_pattern(size))
        if parts[0] == "chunked" and len(parts) > 1:
            stream = web.StreamResponse(headers=headers)
            stream.enable_chunked_encoding()
            await stream.prepare(request)
            data, step = _pattern(int(parts[1])), 16_384
            for i in range(0, len(data), step):
                await stream.write(data[i : i + step])
            await stream.write_eof()
            return stream
        if parts[0] == "ws":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for msg in ws:
                if msg.type == web.WSMsgType.TEXT:
                    await ws.send_str(f"{self.name}: {msg.data}")
            return ws
        if parts[0] == "half":
            status = 503 if self.hits[path] % 2 else 200
            return web.Response(status=status, headers=headers, text="half")
        echo = {
            "backend": self.name,
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "host": request.host,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "header_list": [[k, v] for k, v in request.headers.items()],
            "body": body.decode("latin-1"),
        }
        return web.Response(headers=headers, text=json.dumps(echo), content_type="application/json")

    async def start(self) -> Backend:
        app = web.Application()
        app.router.add_route("*", r"/{tail:[\s\S]*}", self.handle)  # any path, even "/%0A"
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def _pattern(size: int) -> bytes:
    """`size` bytes that are not all alike, so a lost or repeated piece shows."""
    unit = bytes(range(256)) * 64
    return (unit * (size // len(unit) + 1))[:size]


@dataclass
class RawBackend:
    """Misbehaving upstream (see the module docstring); `hits` counts requests per path."""

    port: int = 0
    hits: Counter[str] = field(default_factory=Counter)
    server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            path = head.split(b" ", 2)[1].decode("latin-1")
            self.hits[path] += 1
            parts = path.strip("/").split("/")
            if parts[0] == "interim":
                writer.write(
                    b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n"
                    b"HTTP/1.1 200 OK\r\nx-backend: raw\r\ncontent-length: 7\r\n\r\nhinted\n"
                )
                await writer.drain()
                await reader.read()  # keep-alive: until the proxy closes or reuses
                return
            if parts[0] == "eof":
                writer.write(b"HTTP/1.1 200 OK\r\nx-backend: raw\r\n\r\n" + b"y" * 100_000)
                await writer.drain()
                return  # the close ends the body (no Content-Length, not chunked)
            if parts[0] == "midbody":
                announced = int(parts[1]) if len(parts) > 1 else 100_000
                writer.write(
                    b"HTTP/1.1 200 OK\r\nx-backend: raw\r\n"
                    + f"content-length: {announced}\r\n\r\n".encode()
                    + b"x" * 1000
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.transport.abort()

    async def start(self) -> RawBackend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
