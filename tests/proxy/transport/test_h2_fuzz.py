"""Random HTTP/2 frame sequences into `H2ServerConnection` (no sockets: a fake transport):
it must never let an exception reach the event loop, must end every connection once (the
listener's count and the close hook), and must leave no stream behind."""

from __future__ import annotations

import asyncio
from typing import Any

from hpack import Encoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.proxy.transport.helpers import CountingHooks
from turnout.proxy.transport import IncomingRequest, Limits, ResponseWriter
from turnout.proxy.transport.downstream import Listener
from turnout.proxy.transport.h2_server import H2ServerConnection
from turnout.proxy.transport.messages import ConnectionInfo

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REQUESTS = [
    [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/")],
    [(":method", "POST"), (":scheme", "http"), (":authority", "a"), (":path", "/echo")],
    [(":method", "POST"), (":path", "/cb"), (":scheme", "http"), ("content-length", "3")],
    [(":method", "GET"), (":path", "/"), ("connection", "close")],  # malformed in h2
    [(":path", "/"), ("x", "y")],  # no :method
]
streams = st.sampled_from([0, 1, 3, 5, 7, 2**31 - 1])


def frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    """One frame as on the wire (RFC 9113 §4.1), whatever its fields say."""
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + sid.to_bytes(4, "big") + payload


def headers_frame(sid: int, which: int, end: bool, raw: bytes | None) -> bytes:
    block = raw if raw is not None else Encoder().encode(REQUESTS[which])
    return frame(0x1, 0x4 | (0x1 if end else 0), sid, block)  # END_HEADERS (+ END_STREAM)


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


frames = st.one_of(
    st.builds(
        headers_frame,
        streams,
        st.integers(0, len(REQUESTS) - 1),
        st.booleans(),
        st.one_of(st.none(), st.binary(max_size=20)),
    ),
    st.builds(  # DATA, maybe END_STREAM, maybe padded
        lambda s, p, f: frame(0x0, f, s, p),
        streams,
        st.binary(max_size=200),
        st.sampled_from([0, 1, 8, 9]),
    ),
    st.builds(lambda s, c: frame(0x3, 0, s, u32(c)), streams, st.integers(0, 20)),  # RST_STREAM
    st.builds(  # WINDOW_UPDATE
        lambda s, i: frame(0x8, 0, s, u32(i)), streams, st.sampled_from([0, 1, 65535, 2**31 - 1])
    ),
    st.builds(  # SETTINGS, or its ACK
        lambda k, v, ack: (
            frame(0x4, 1, 0, b"") if ack else frame(0x4, 0, 0, k.to_bytes(2, "big") + u32(v))
        ),
        st.integers(1, 8),
        st.sampled_from([0, 1, 100, 16384, 2**31 - 1, 2**32 - 1]),
        st.booleans(),
    ),
    st.builds(lambda d: frame(0x6, 0, 0, d), st.binary(min_size=7, max_size=9)),  # PING
    st.builds(lambda s, d: frame(0x2, 0, s, u32(d) + b"\x10"), streams, streams),  # PRIORITY
    st.builds(lambda s: frame(0x7, 0, 0, u32(s) + u32(0)), streams),  # GOAWAY
    st.builds(lambda s, b: frame(0x9, 0x4, s, b), streams, st.binary(max_size=10)),  # CONTINUATION
    st.builds(frame, st.integers(0, 20), st.integers(0, 255), streams, st.binary(max_size=20)),
    st.binary(max_size=30),
)
ops = st.one_of(
    st.tuples(st.just("request"), st.integers(0, 2), st.booleans()),
    st.tuples(
        st.just("body"), st.integers(0, 9), st.sampled_from([0, 3, 100, 16384]), st.booleans()
    ),
    st.tuples(st.just("reset"), st.integers(0, 9)),
    st.tuples(st.just("raw"), frames),
)


def build(plan: list[tuple[Any, ...]]) -> bytes:
    """Mostly what a client could send, on streams it opened in order (requests, bodies,
    resets), now and then anything at all."""
    out, opened = [], []
    for op in plan:
        if op[0] == "request":
            sid = 2 * len(opened) + 1
            opened.append(sid)
            out.append(headers_frame(sid, op[1], op[2], None))
        elif op[0] == "body" and opened:
            out.append(frame(0x0, 1 if op[3] else 0, opened[op[1] % len(opened)], b"x" * op[2]))
        elif op[0] == "reset" and opened:
            out.append(frame(0x3, 0, opened[op[1] % len(opened)], u32(8)))
        elif op[0] == "raw":
            out.append(op[1])
    return b"".join(out)


sequences = st.lists(st.one_of(ops, ops, ops.filter(lambda o: o[0] != "raw")), max_size=30).map(
    build
)


async def echo(req: IncomingRequest, writer: ResponseWriter) -> None:
    body = await req.body.read(1024)
    await writer.respond(200, [("x-len", str(len(body or b"")))], body or b"")


def handler(req: IncomingRequest, writer: ResponseWriter) -> Any:
    if req.path == "/cb":  # callback mode, answered at once
        writer.send(204, [], b"")
        writer.complete()
        return None
    return echo(req, writer)


class FakeTransport:
    """Enough of a transport for the protocol: bytes written are counted and dropped."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.closing = False
        self.written = 0
        self.protocol: H2ServerConnection | None = None

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, parts: list[bytes]) -> None:
        self.written += sum(map(len, parts))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            assert self.protocol is not None
            self.loop.call_soon(self.protocol.connection_lost, None)

    abort = close

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def one_connection(data: bytes, cut: int) -> tuple[CountingHooks, Listener, int]:
    loop = asyncio.get_running_loop()
    hooks = CountingHooks()
    limits = Limits(keepalive_timeout_ms=50, body_timeout_ms=50, send_timeout_ms=50)
    listener = Listener(handler, limits, hooks, None)  # type: ignore[arg-type]
    info = ConnectionInfo("inbound", ("127.0.0.1", 1), ("127.0.0.1", 2))
    hooks.on_connection_open(info)
    listener.open = 1  # as `HttpServerProtocol` counted it before the takeover
    transport = FakeTransport(loop)
    proto = H2ServerConnection(transport, info, listener)  # type: ignore[arg-type]
    transport.protocol = proto
    wire = PREFACE + frame(0x4, 0, 0, b"") + data  # the client preface ends with SETTINGS
    step = max(1, cut)
    for i in range(0, len(wire), step):
        if transport.closing:
            break
        proto.data_received(wire[i : i + step])
        await asyncio.sleep(0)
    for _ in range(5):  # let handlers run a little
        await asyncio.sleep(0)
    transport.close()
    async with asyncio.timeout(2):
        while not hooks.closed:
            await asyncio.sleep(0.001)
    await asyncio.sleep(0)
    return hooks, listener, len(proto.streams)


def test_random_frames_never_crash_the_http2_server() -> None:
    runner = asyncio.Runner()
    errors: list[dict[str, Any]] = []
    runner.get_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    try:

        @settings(
            max_examples=300,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        )
        @given(data=sequences, cut=st.sampled_from([1, 7, 100, 100_000]))
        def throw(data: bytes, cut: int) -> None:
            hooks, listener, left = runner.run(one_connection(data, cut))
            assert len(hooks.closed) == 1 and listener.open == 0 and left == 0
            assert errors == []

        throw()
    finally:
        runner.close()
