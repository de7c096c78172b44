"""Real HTTP backends on 127.0.0.1 for proxy tests (aiohttp, port 0).

Each backend answers:
- ``/status/{code}``: that status;
- ``/delay/{ms}``: 200 after sleeping;
- ``/flaky/{n}``: 503 for the first `n` requests it sees on that path, then 200;
- ``/half``: 503 for every other request (a backend failing 50%);
- anything else (``/echo``...): 200 with a JSON echo of method, path, query, headers, body.
Every response carries ``x-backend: <name>``; `hits` counts requests per path so tests can
count retries at the backend.
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

    @property
    def total(self) -> int:
        return sum(self.hits.values())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] += 1
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
            "body": body.decode("latin-1"),
        }
        return web.Response(headers=headers, text=json.dumps(echo), content_type="application/json")

    async def start(self) -> Backend:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
