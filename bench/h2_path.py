"""CPU cost of one proxied HTTP/2 stream in our process, beside the HTTP/1.1 request of
`bench.request_path` measured in the same run: the same 90/10 route, handler, pool and
in-memory transports, the client's side an `H2ServerConnection` fed HEADERS frames (made in
advance, outside the timing) instead of request lines (docs/http2.md).

Run: ``.venv/bin/python -m bench.h2_path [--requests 50000]``

```
HEADERS(END_STREAM) bytes ─► H2ServerConnection.data_received ─► h2 events ─► Handler
   ─► UpstreamPool (HTTP/1.1, memory transport) ◄─ response bytes fed back at once
   ─► H2StreamWriter.send ─► h2 HEADERS+DATA ─► flushed once per round (the loop's)
```

Printed: microseconds per request of each, and HTTP/2 as a ratio of HTTP/1.1, then each
figure against the previous run's (``bench/results/h2_path.json``, committed;
`bench.results`), then stored (``--no-store``: not). This is not a test: it checks only that
every stream was answered 200.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import uvloop
from h2.config import H2Configuration
from h2.connection import H2Connection
from hpack import Encoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.proxy import HOST, NS, manifests
from bench.request_path import PORT_V1, PORT_V2, RESPONSE, ROUNDS, MemoryTransport, ours, pooled
from bench.results import Figures, add_no_store, report
from turnout.cli.offline import offline_runtime
from turnout.proxy.handler import Handler, ProxyState
from turnout.proxy.process import ProxyConfig
from turnout.proxy.runner import build_proxy
from turnout.proxy.table import RuntimeTable
from turnout.proxy.telemetry import Telemetry
from turnout.proxy.transport.downstream import Listener
from turnout.proxy.transport.h2_server import H2ServerConnection
from turnout.proxy.transport.messages import ConnectionInfo, Limits

HEADERS = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", HOST.encode()),
    (b":path", b"/api/list"),
    (b"user-agent", b"bench"),
    (b"accept", b"*/*"),
]


def frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + sid.to_bytes(4, "big") + payload


def ours_h2(n: int) -> float:
    """Microseconds per HTTP/2 stream through `Handler` on the 90/10 route."""
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "mesh.yaml"
        f.write_text(manifests(PORT_V1, PORT_V2))
        table, _ = offline_runtime([str(f)], namespace=NS)
    proxy = build_proxy(ProxyConfig(namespace=NS, workload_name="client"))
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
    proxy.apply(table, "bench")
    ups = [pooled(proxy.pool, p)[0] for p in (PORT_V1, PORT_V2)]
    # a client that opened the connection and gave all the window there is
    client_h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client_h2.initiate_connection()
    client_h2.increment_flow_control_window(2**31 - 1 - 65_535)
    listener = Listener(handler, Limits(), None, None)
    listener.open = 1
    client = MemoryTransport(("127.0.0.1", 50000))
    info = ConnectionInfo("inbound", ("127.0.0.1", 50000), ("127.0.0.1", 40000))
    server = H2ServerConnection(client, info, listener)  # type: ignore[arg-type]
    server.data_received(client_h2.data_to_send())  # the preface and SETTINGS
    encoder = Encoder()
    per_round = max(1, n // ROUNDS)
    frames = [
        frame(0x1, 0x5, 2 * i + 1, encoder.encode(HEADERS)) for i in range(per_round * ROUNDS)
    ]
    pool = proxy.pool
    answered = 0
    gc.collect()
    gc.freeze()
    best = float("inf")
    it = iter(frames)
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(per_round):
            server.data_received(next(it))
            pool.batch.flush()
            for conn in ups:
                if conn.busy:
                    conn.data_received(RESPONSE)
                    break
            else:
                raise RuntimeError("the stream reached no upstream connection")
            pool.batch.flush()
            server._flush()  # what the loop's round end does (`want_flush`)
            answered += client.writes
            client.writes = 0
        best = min(best, time.perf_counter() - t0)
    gc.unfreeze()
    if answered != per_round * ROUNDS or server.streams:
        raise RuntimeError(f"{answered} answers, {len(server.streams)} streams left")
    if b"\x88" not in client.last:  # HPACK: :status 200, indexed
        raise RuntimeError(f"unexpected answer: {client.last[:40]!r}")
    return best / per_round * 1e6


GRPC_REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":authority", HOST.encode()),
    (b":path", b"/bench.Echo/Unary"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
    (b"grpc-timeout", b"10S"),
    (b"user-agent", b"grpc-python/1.60"),
]
GRPC_HEAD = [
    (b":status", b"200"),
    (b"content-type", b"application/grpc"),
    (b"grpc-accept-encoding", b"identity,deflate,gzip"),
]
GRPC_TRAILERS = [(b"grpc-status", b"0")]
GRPC_MESSAGE = b"\x00\x00\x00\x00\x64" + b"x" * 100


class _Receiver:
    """The `Call`'s side of an upstream exchange, doing nothing but counting ends."""

    ended = 0

    def on_head(self, *args: object) -> None: ...
    def on_body(self, chunk: bytes) -> None: ...
    def on_trailers(self, pairs: object) -> None: ...
    def on_error(self, exc: BaseException) -> None:
        raise RuntimeError(f"upstream stream failed: {exc}")

    def on_end(self) -> None:
        _Receiver.ended += 1


class _Pool:
    """What an `H2ClientConnection` asks of its pool (`h2_client.H2Pool`)."""

    hooks = None
    max_streams = 100

    def resend(self, *args: object) -> None: ...
    def _retire(self, conn: object) -> None: ...
    def _forget(self, conn: object) -> None: ...
    def _went_idle(self, conn: object) -> None: ...


def upstream_h2(n: int) -> float:
    """Microseconds per gRPC unary exchange on one `H2ClientConnection` (the upstream side
    of the proxy): HEADERS+DATA out, the response's HEADERS, DATA and trailers in (made in
    advance, outside the timing), the receiver called, WINDOW_UPDATEs flushed."""
    from turnout.proxy.transport.h2_upstream import H2ClientConnection, H2Stream

    per_round = max(1, n // ROUNDS)
    encoder = Encoder()
    responses = []
    for i in range(per_round * ROUNDS):
        sid = 2 * i + 1
        responses.append(
            frame(0x1, 0x4, sid, encoder.encode(GRPC_HEAD))
            + frame(0x0, 0x0, sid, GRPC_MESSAGE)
            + frame(0x1, 0x5, sid, encoder.encode(GRPC_TRAILERS))
        )
    conn = H2ClientConnection(_Pool(), ("127.0.0.1", 1), ("127.0.0.1", 1))  # type: ignore[arg-type]
    conn.connection_made(MemoryTransport(("127.0.0.1", 1)))  # type: ignore[arg-type]
    server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    server.initiate_connection()
    server.increment_flow_control_window(2**31 - 1 - 65_535)
    conn.data_received(server.data_to_send() + frame(0x4, 0x1, 0, b""))  # SETTINGS, ACK
    receiver = _Receiver()
    _Receiver.ended = 0
    gc.collect()
    gc.freeze()
    best = float("inf")
    it = iter(responses)
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(per_round):
            stream = H2Stream(conn.key, conn.endpoint, GRPC_REQUEST, GRPC_MESSAGE, receiver, None)  # type: ignore[arg-type]
            conn.submit(stream)
            conn._flush()  # what the loop's round end does (`_schedule_flush`)
            conn.data_received(next(it))
        best = min(best, time.perf_counter() - t0)
    gc.unfreeze()
    if _Receiver.ended != per_round * ROUNDS or conn.streams:
        raise RuntimeError(f"{_Receiver.ended} exchanges ended, {len(conn.streams)} left")
    return best / per_round * 1e6


async def main_async(n: int, *, store: bool = True) -> None:
    h2 = ours_h2(n)  # first: after the HTTP/1.1 run's garbage, its rounds vary twice as much
    up = upstream_h2(n)
    h1 = ours(n)
    print(f"== HTTP/2 request path: CPU per request in-process (no syscalls), {n:,} requests")
    print(f"  HTTP/1.1 request (bench.request_path's 'ours')      {h1:7.2f} us")
    print(f"  HTTP/2 stream, same route and upstream             {h2:7.2f} us")
    print(f"  h2/h1: {h2 / h1:.2f}x")
    print(f"  HTTP/2 upstream exchange (gRPC unary, H2ClientConnection) {up:7.2f} us")
    figures: Figures = {
        "HTTP/2 stream": (h2, "us", "lower"),
        "HTTP/1.1 request": (h1, "us", "lower"),
        "h2/h1": (h2 / h1, "x", "lower"),
        "HTTP/2 upstream exchange": (up, "us", "lower"),
    }
    report("h2_path", figures, store=store)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.h2_path", description=__doc__)
    parser.add_argument("--requests", type=int, default=50_000)
    add_no_store(parser, "h2_path")
    opts = parser.parse_args(argv)
    uvloop.run(main_async(opts.requests, store=not opts.no_store))


if __name__ == "__main__":
    main()
