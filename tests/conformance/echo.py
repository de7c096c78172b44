"""Conformance-style echo backends on 127.0.0.1: one per Service, one socket per Service port.

Like the upstream suite's echo server, every answer is a JSON echo of the request as the
backend saw it, naming who answered:

```
{"path": "/a?b=c", "host": "x.example", "method": "GET", "headers": {"name": ["v", ...]},
 "namespace": "ns", "service": "svc", "pod": "svc-0", "port": 8080}
```

`path` is the request target (path and query), as upstream's `RequestURI`. Query parameters
make a backend misbehave, so that retry and timeout cases can be written as plain requests:

- ``delay=1s`` (or ``500ms``): answer after that long (upstream's timeout cases use it);
- ``fail=503&times=2``: the first `times` requests with this exact target answer 503
  (``times`` omitted: every one); ``fail=reset`` closes the connection instead, no answer.

A request header ``X-Echo-Set-Header: Name: value, Other: value`` makes the answer carry
those response headers (upstream's echo does the same), so response filters have backend-sent
headers to overwrite, append to and remove.

`attempts[target]` counts every request a backend received, so a case can assert how many
tries (retries, mirrored copies) reached it. Answers also carry ``x-echo-service: NS/NAME``.
A WebSocket upgrade gets a WebSocket that sends each message back unchanged.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

_DURATION = re.compile(r"^(\d+)(ms|s)$")


def duration_s(text: str) -> float:
    """``1s`` / ``250ms`` as seconds; anything else is a case error."""
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(f"delay {text!r}: expected like 250ms or 1s")
    return int(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


@dataclass
class Echo:
    """The backend of Service `namespace/service`: one listening socket per Service port."""

    namespace: str
    service: str
    ports: tuple[int, ...]
    """The Service's ports (what the EndpointSlice maps to `listening`)."""
    listening: dict[int, int] = field(default_factory=dict)
    """Service port -> the 127.0.0.1 port this echo listens on for it."""
    attempts: Counter[str] = field(default_factory=Counter)
    """Requests received per request target (path and query)."""
    seen: list[dict[str, object]] = field(default_factory=list)
    """Every request's echo, in arrival order (mirrors are checked from here)."""
    _runner: web.AppRunner | None = None
    _by_local_port: dict[int, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.namespace}/{self.service}"

    async def start(self) -> Echo:
        app = web.Application()
        app.router.add_route("*", r"/{tail:[\s\S]*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        for port in self.ports:
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert isinstance(server, asyncio.Server)
            local = int(server.sockets[0].getsockname()[1])
            self.listening[port] = local
            self._by_local_port[local] = port
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def received(self, target: str) -> list[dict[str, object]]:
        """The echoes of every request for `target` this backend got."""
        return [s for s in self.seen if s["path"] == target]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        target = request.raw_path
        self.attempts[target] += 1
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        headers: dict[str, list[str]] = {}
        for k, v in request.headers.items():
            headers.setdefault(k.lower(), []).append(v)
        echo: dict[str, object] = {
            "path": target,
            "host": request.headers.get("Host", ""),
            "method": request.method,
            "headers": headers,
            "namespace": self.namespace,
            "service": self.service,
            "pod": f"{self.service}-0",
            "port": self._by_local_port.get(int(sock[1]) if sock else 0, 0),
        }
        await request.read()
        self.seen.append(echo)
        fail = request.query.get("fail")
        times = request.query.get("times")
        if fail and (times is None or self.attempts[target] <= int(times)):
            if fail == "reset":
                assert request.transport is not None
                request.transport.abort()  # no answer byte: the proxy sees a reset
                return web.Response(status=599)
            return web.Response(status=int(fail), text=f"{fail} from {self.name}")
        if delay := request.query.get("delay"):
            await asyncio.sleep(duration_s(delay))
        response = web.Response(
            text=json.dumps(echo),
            content_type="application/json",
            headers={"x-echo-service": self.name},
        )
        for pair in request.headers.get("X-Echo-Set-Header", "").split(","):
            name, sep, value = pair.partition(":")
            if sep:
                response.headers.add(name.strip(), value.strip())
        return response

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        """A WebSocket that sends every text and binary message back as it came."""
        self.attempts[request.raw_path] += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == web.WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == web.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws
