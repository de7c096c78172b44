"""Throughput sanity check of the transport: client -> serve_http -> UpstreamPool -> backend.

Run: ``.venv/bin/python bench/transport.py [--seconds 5] [--connections 50] [--wrk]``.

```
load (subprocess, Python)  ─►  proxy (this process, uvloop)  ─►  backend (subprocess, uvloop)
   keep-alive GETs, C conns        serve_http + forward()             serve_http, 200 "hello"
```

Prints requests/s through the proxy and straight to the backend (the same load loop), and
the proxy's RSS. The Python load loop is itself CPU-bound on a 2-core machine, so the
numbers are a floor; with ``--wrk`` (and wrk on PATH) wrk measures the same two targets too.
This is not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httptools
import uvloop

from turnout.proxy.transport import (
    IncomingRequest,
    ResponseWriter,
    UpstreamPool,
    serve_http,
)

log = logging.getLogger(__name__)

BODY = b"hello"


def forward(pool: UpstreamPool, endpoint: tuple[str, int]):  # type: ignore[no-untyped-def]
    """The smallest real forwarder: buffered bodies fast, streamed otherwise."""

    async def handle(req: IncomingRequest, writer: ResponseWriter) -> None:
        body = await req.body.read(64 * 1024)
        resp = await pool.request(
            endpoint,
            method=req.method,
            target=req.target,
            headers=req.headers,
            body=body if body is not None else req.body.chunks(),
            timeout_ms=5000,
        )
        try:
            if resp.content_length is not None and resp.content_length <= 64 * 1024:
                await writer.respond(resp.status, resp.headers, await resp.read())
                return
            await writer.start(resp.status, resp.headers, content_length=resp.content_length)
            async for chunk in resp.chunks():
                await writer.write(chunk)
            await writer.end()
        finally:
            resp.release()

    return handle


async def _hello(req: IncomingRequest, writer: ResponseWriter) -> None:
    await req.body.read(1 << 20)
    await writer.respond(200, [("content-type", "text/plain")], BODY)


def run_backend(port_queue: multiprocessing.Queue[int]) -> None:
    async def main() -> None:
        server = await serve_http(_hello, host="127.0.0.1", port=0)
        port_queue.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    uvloop.run(main())


class _LoadProtocol(asyncio.Protocol):
    def __init__(self, request: bytes, counter: list[int], done: asyncio.Event) -> None:
        self.request = request
        self.counter = counter
        self.done = done
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        self.counter[0] += 1
        if self.transport is not None and not self.done.is_set():
            self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        pass


def run_load(port: int, connections: int, seconds: float, out: multiprocessing.Queue[float]):  # type: ignore[no-untyped-def]
    async def main() -> float:
        loop = asyncio.get_running_loop()
        counter = [0]
        done = asyncio.Event()
        request = b"GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n"
        transports = []
        for _ in range(connections):
            t, _ = await loop.create_connection(
                lambda: _LoadProtocol(request, counter, done), "127.0.0.1", port
            )
            transports.append(t)
        await asyncio.sleep(0.5)  # warm-up
        start_count, start = counter[0], loop.time()
        await asyncio.sleep(seconds)
        rate = (counter[0] - start_count) / (loop.time() - start)
        done.set()
        for t in transports:
            t.close()
        return rate

    out.put(uvloop.run(main()))


def measure(port: int, connections: int, seconds: float) -> float:
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[float] = ctx.Queue()
    proc = ctx.Process(target=run_load, args=(port, connections, seconds, out))
    proc.start()
    rate = out.get(timeout=seconds + 30)
    proc.join()
    return float(rate)


def wrk(port: int, connections: int, seconds: float) -> str:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
    result = subprocess.run(  # the proxy runs in a thread below, so blocking here is fine
        [*cmd, f"http://127.0.0.1:{port}/bench"], capture_output=True, text=True, check=False
    )
    lines = result.stdout.splitlines()
    keep = [ln for ln in lines if "Requests/sec" in ln or "99%" in ln or "Latency" in ln]
    return " | ".join(ln.strip() for ln in keep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--wrk", action="store_true", help="also measure with wrk")
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    ports: multiprocessing.Queue[int] = ctx.Queue()
    backend = ctx.Process(target=run_backend, args=(ports,), daemon=True)
    backend.start()
    backend_port = ports.get(timeout=30)

    async def proxy_main() -> None:
        pool = UpstreamPool()
        server = await serve_http(
            forward(pool, ("127.0.0.1", backend_port)), host="127.0.0.1", port=0
        )
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        targets = [("direct to backend", backend_port), ("through the proxy", port)]
        for name, target in targets:
            rate = await loop.run_in_executor(None, measure, target, args.connections, args.seconds)
            print(f"{name:<20} {rate:>10.0f} req/s  (Python load loop, c={args.connections})")
        if args.wrk and shutil.which("wrk"):
            for name, target in targets:
                line = await loop.run_in_executor(None, wrk, target, args.connections, args.seconds)
                print(f"{name:<20} wrk: {line}")
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"proxy max RSS {rss_mb:.1f} MB, upstream connections {pool.open_count}")
        server.close()
        await pool.close()

    started = time.perf_counter()
    uvloop.run(proxy_main())
    backend.terminate()
    backend.join()
    print(f"done in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
