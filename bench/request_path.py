"""CPU cost of one proxied request in our process, without the kernel: the whole request path
(listener parser, decide, telemetry, balancer, upstream pool and parser, response writer) on
in-memory transports, so the figure is repeatable and shows what our Python costs.

Run: ``.venv/bin/python -m bench.request_path [--requests 100000]``

```
request bytes ─► HttpServerProtocol.data_received ─► Handler (90/10 route) ─► UpstreamPool
   ─► UpstreamConnection (memory transport) ◄─ response bytes fed back at once
   ─► ResponseWriter ─► memory transport (the bytes a client would read)
```

The baseline, measured in the same run on the same transports, is a bare forwarder: the
same two httptools parsers and one pooled upstream connection, with no routing, metrics or
policy. Printed: microseconds per request of each and ours as a ratio of the baseline. Real
traffic adds the socket system calls (about as much again on these machines: `bench.proxy`
measures that end to end). This is not a test: it asserts nothing beyond the answers being
200s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httptools
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.proxy import HOST, NS, manifests
from bench.results import Figures, add_no_store, report
from turnout.cli.offline import offline_runtime
from turnout.proxy.handler import Handler, ProxyState
from turnout.proxy.process import ProxyConfig, TraceConfig
from turnout.proxy.runner import build_proxy
from turnout.proxy.table import RuntimeTable
from turnout.proxy.telemetry import Telemetry
from turnout.proxy.transport.client import UpstreamPool
from turnout.proxy.transport.downstream import Listener
from turnout.proxy.transport.messages import Limits
from turnout.proxy.transport.server import HttpServerProtocol
from turnout.proxy.transport.upstream import UpstreamConnection

PORT_V1, PORT_V2 = 18081, 18082
DEAD_PORT = 9
"""The traced runs' collector address: nothing listens (discard), nothing is received."""
ROUNDS = 5
"""The requests run in this many rounds; the fastest round counts (the least disturbed by
whatever else the machine does)."""
REQUEST = f"GET /api/list HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Tue, 24 Nov 2026 08:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 14\r\nConnection: keep-alive\r\n\r\n"
    b"hello from v1\n"
)


class MemoryTransport:
    """Just enough of an asyncio transport: remembers the last write."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.last = b""
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.last = data
        self.writes += 1

    def writelines(self, parts: Any) -> None:
        self.write(b"".join(parts))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": self.peer, "sockname": ("127.0.0.1", 40000)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


def pooled(pool: UpstreamPool, port: int) -> tuple[UpstreamConnection, MemoryTransport]:
    """One idle pooled connection to 127.0.0.1:`port` on a memory transport."""
    ep = ("127.0.0.1", port)
    conn = UpstreamConnection(pool, ep)
    transport = MemoryTransport(ep)
    conn.connection_made(transport)  # type: ignore[arg-type]
    pool._all.add(conn)
    conn.reused = True
    pool._put_idle(conn)
    return conn, transport


def ours(n: int, trace: TraceConfig | None = None, *, route_timeout: bool = False) -> float:
    """Microseconds per request through `Handler` on a 90/10 route (with `trace`: each
    request also makes its span and rewrites its trace headers; docs/tracing.md; with
    `route_timeout`: the rule has ``timeouts.request``, so each try has a deadline)."""
    text = manifests(PORT_V1, PORT_V2)
    if route_timeout:
        text = text.replace("  - backendRefs:", "  - timeouts: {request: 2s}\n    backendRefs:")
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "mesh.yaml"
        f.write_text(text)
        table, _ = offline_runtime([str(f)], namespace=NS)
    proxy = build_proxy(ProxyConfig(namespace=NS, workload_name="client", trace=trace))
    empty = ProxyState(
        table=RuntimeTable.from_xds((), ()), balancers=proxy.balancers, budgets=proxy.budgets
    )
    handler = Handler(
        state=empty,
        pool=proxy.pool,
        telemetry=Telemetry(proxy.metrics, proxy.tap, tracer=proxy.tracer),
        namespace=NS,
    )
    proxy.handlers.append(handler)
    proxy.apply(table, "bench")  # as `mesh proxy` installs a table
    ups = {p: pooled(proxy.pool, p) for p in (PORT_V1, PORT_V2)}
    listener = Listener(handler, Limits(), None, None)
    server = HttpServerProtocol(listener)
    client = MemoryTransport(("127.0.0.1", 50000))
    server.connection_made(client)  # type: ignore[arg-type]
    request = REQUEST.encode()
    pool = proxy.pool

    def end_of_round() -> None:
        # what the event loop does after the ready sockets' callbacks: send the held writes
        pool.batch.flush()
        listener.batch.flush()

    try:
        return _run(n, server, client, request, ups, end_of_round)
    finally:
        if proxy.tracer is not None:
            proxy.tracer.shutdown()


def _run(
    n: int,
    server: asyncio.Protocol,
    client: MemoryTransport,
    request: bytes,
    ups: dict[int, tuple[Any, MemoryTransport]],
    end_of_round: Callable[[], None] = lambda: None,
) -> float:
    pairs = list(ups.values())
    gc.collect()
    gc.freeze()
    best = float("inf")
    per_round = max(1, n // ROUNDS)
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(per_round):
            server.data_received(request)
            end_of_round()
            for conn, _transport in pairs:
                if conn.busy:
                    conn.data_received(RESPONSE)
                    break
            else:
                raise RuntimeError("the request reached no upstream connection")
            end_of_round()
        best = min(best, time.perf_counter() - t0)
    gc.unfreeze()
    if not client.last.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer: {client.last[:80]!r}")
    return best / per_round * 1e6


class _BareUp(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.client: _BareDown | None = None
        self.head = b""
        self.body: list[bytes] = []
        self.headers: list[bytes] = []
        self.busy = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append(name + b": " + value + b"\r\n")

    def on_headers_complete(self) -> None:
        self.head = b"HTTP/1.1 200 OK\r\n" + b"".join(self.headers) + b"\r\n"
        self.headers = []

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        self.busy = False
        assert client is not None
        client.transport.write(self.head + b"".join(self.body))
        self.body = []

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)


class _BareDown(asyncio.Protocol):
    def __init__(self, up: _BareUp, up_transport: MemoryTransport) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.up, self.up_transport = up, up_transport
        self.url = b""
        self.headers: list[bytes] = []
        self.transport = MemoryTransport(("127.0.0.1", 50000))

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append(name + b": " + value + b"\r\n")

    def on_message_complete(self) -> None:
        self.up.client = self
        self.up.busy = True
        self.up_transport.write(
            b"GET " + self.url + b" HTTP/1.1\r\n" + b"".join(self.headers) + b"\r\n"
        )
        self.headers = []

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)


def baseline(n: int) -> float:
    """Microseconds per request through the bare forwarder."""
    up, up_transport = _BareUp(), MemoryTransport(("127.0.0.1", PORT_V1))
    down = _BareDown(up, up_transport)
    return _run(n, down, down.transport, REQUEST.encode(), {PORT_V1: (up, up_transport)})


async def main_async(n: int, *, store: bool) -> None:
    base = baseline(n)
    cost = ours(n)
    timed = ours(n, route_timeout=True)
    print(f"== request path: CPU per request in-process (no syscalls), {n:,} requests")
    print(f"  bare forwarder (two parsers, one pooled connection) {base:7.2f} us")
    print(f"  ours (decide, filters, telemetry, balancer, budget)  {cost:7.2f} us")
    print(f"  ours/bare: {cost / base:.2f}x")
    print(f"  ours, the route with timeouts.request (a deadline)   {timed:7.2f} us")
    # Tracing on: every request sampled, the spans queued for a collector that is not
    # there (the export thread fails and drops them; only the request path is timed).
    logging.getLogger("turnout.proxy.otlp").setLevel(logging.CRITICAL)
    traced = ours(n, TraceConfig(otlp=f"127.0.0.1:{DEAD_PORT}", service_name="client"))
    unsampled = ours(
        n, TraceConfig(otlp=f"127.0.0.1:{DEAD_PORT}", sample_per_million=0, service_name="client")
    )
    print(f"  ours, --trace-otlp (every request sampled)          {traced:7.2f} us")
    print(f"  ours, --trace-otlp --trace-sample 0 (propagation)   {unsampled:7.2f} us")
    figures: Figures = {
        "ours/bare": (cost / base, "x", "lower"),
        "ours": (cost, "us", "lower"),
        "bare": (base, "us", "lower"),
        "ours with a route timeout/bare": (timed / base, "x", "lower"),
        "ours traced/bare": (traced / base, "x", "lower"),
        "ours propagating/bare": (unsampled / base, "x", "lower"),
    }
    report("request_path", figures, store=store)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.request_path", description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    add_no_store(parser, "request_path")
    opts = parser.parse_args(argv)
    uvloop.run(main_async(opts.requests, store=not opts.no_store))


if __name__ == "__main__":
    main()
