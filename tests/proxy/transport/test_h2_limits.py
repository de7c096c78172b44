"""HTTP/2 limits (D8 of docs/plan-http2.md) against a raw `h2` client: the stream limit
(REFUSED_STREAM, the connection lives on), header lists over the limit (431 on that stream),
rapid reset (CVE-2023-44487) and control-frame floods (GOAWAY(ENHANCE_YOUR_CALM) while
another connection is served), idle connections, and broken frames (GOAWAY(PROTOCOL_ERROR))."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from hpack import Decoder, Encoder

from tests.proxy.transport.helpers import CountingHooks, connect, running
from tests.support.h2client import H2Client
from turnout.proxy.transport import IncomingRequest, Limits, ResponseWriter
from turnout.proxy.transport.h2_server import RAPID_RESET_MIN_STREAMS, take_over

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
BASE = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]


def frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    """A frame as on the wire, whatever it says (a polite client would refuse to send it)."""
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + sid.to_bytes(4, "big") + payload


async def read_statuses(reader: asyncio.StreamReader, n: int) -> dict[int, bytes]:
    """The :status of the first `n` responses, from the frames as they come (HPACK-decoded
    in order; an `h2` client would refuse responses on streams it did not open)."""
    decoder = Decoder()
    seen: dict[int, bytes] = {}
    async with asyncio.timeout(5):
        while len(seen) < n:
            head = await reader.readexactly(9)
            length, kind = int.from_bytes(head[:3], "big"), head[3]
            sid = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            payload = await reader.readexactly(length)
            if kind == 0x1:  # HEADERS (ours: never padded, never with priority)
                seen[sid] = dict(decoder.decode(payload, raw=True))[b":status"]
    return seen


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.005)


class Held:
    """A handler that answers /hold only when released, everything else at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.holding = 0
        self.calls = 0

    async def __call__(self, req: IncomingRequest, writer: ResponseWriter) -> None:
        self.calls += 1
        if req.path == "/hold":
            self.holding += 1
            try:
                await self.release.wait()
            finally:
                self.holding -= 1
        await writer.respond(200, [], b"ok")


async def test_the_stream_over_the_limit_is_refused_and_the_others_are_served() -> None:
    held = Held()
    async with running(held, http2=take_over) as addr:
        client = await H2Client.open(addr)
        try:
            sids = [client.start("GET", "/hold") for _ in range(100)]
            await until(lambda: held.holding == 100)
            limit = client.conn.remote_settings  # the client itself would refuse a 101st
            limit.max_concurrent_streams = 1000
            limit.acknowledge()
            extra = client.start("GET", "/hold")
            refused = client.responses[extra]
            await asyncio.wait_for(refused.done.wait(), 5)
            assert refused.reset == ErrorCodes.REFUSED_STREAM and refused.status == 0
            held.release.set()
            done = [client.responses[s] for s in sids]
            await asyncio.wait_for(asyncio.gather(*(r.done.wait() for r in done)), 10)
            assert {r.status for r in done} == {200}
            again = await client.request("GET", "/now")  # a slot is free again
            assert again.status == 200
        finally:
            await client.close()
    assert held.calls == 101


async def test_a_header_list_over_the_limit_is_answered_431_on_its_stream() -> None:
    held = Held()
    async with running(held, http2=take_over, limits=Limits(max_header_bytes=4096)) as addr:
        client = await H2Client.open(addr)
        try:
            big = await client.request("GET", "/x", headers=[(b"x-big", b"v" * 5000)])
            many = await client.request(
                "GET", "/x", headers=[(b"x-%d" % i, b"1") for i in range(101)]
            )
            fine = await client.request("GET", "/x", headers=[(b"x-small", b"v" * 100)])
        finally:
            await client.close()
    assert big.status == 431 and big.header(b"l5d-proxy-error") == b"request header too large"
    assert many.status == 431
    assert fine.status == 200 and held.calls == 1  # the refused ones never reached it


async def test_rapid_reset_gets_goaway_while_another_connection_is_served() -> None:
    held = Held()
    hooks = CountingHooks()
    async with running(held, http2=take_over, hooks=hooks) as addr:
        calm = await H2Client.open(addr)
        attacker = await H2Client.open(addr)
        try:
            # 10,000 HEADERS + RST_STREAM, 100 per write, until the GOAWAY stops us
            with contextlib.suppress(ProtocolError, ConnectionError):
                for _ in range(100):
                    if attacker.eof.is_set() or attacker.goaway is not None:
                        break
                    for _ in range(100):
                        sid = attacker.conn.get_next_available_stream_id()
                        attacker.start("GET", "/hold")
                        attacker.conn.reset_stream(sid)
                    attacker.flush()
                    await attacker.writer.drain()
            await asyncio.wait_for(attacker.wait_closed(), 10)
            resp = await calm.request("GET", "/calm")
        finally:
            await attacker.close()
            await calm.close()
    assert attacker.goaway is not None
    assert attacker.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert resp.status == 200
    assert held.calls <= 2 * RAPID_RESET_MIN_STREAMS + 2  # not 10,000 handlers
    assert held.holding == 0  # every reset stream's handler was cancelled


async def test_a_ping_flood_gets_goaway() -> None:
    async with running(Held(), http2=take_over) as addr:
        client = await H2Client.open(addr)
        try:
            with contextlib.suppress(ProtocolError, ConnectionError):
                for i in range(3000):
                    if client.eof.is_set() or client.goaway is not None:
                        break
                    client.conn.ping(b"%08d" % i)
                    if i % 100 == 99:
                        client.flush()
                        await client.writer.drain()
                client.flush()
            await asyncio.wait_for(client.wait_closed(), 10)
        finally:
            await client.close()
    assert client.goaway is not None
    assert client.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


async def test_an_idle_connection_gets_goaway_and_is_closed() -> None:
    hooks = CountingHooks()
    async with running(
        Held(), http2=take_over, hooks=hooks, limits=Limits(keepalive_timeout_ms=200)
    ) as addr:
        client = await H2Client.open(addr)
        try:
            assert (await client.request("GET", "/x")).status == 200
            await asyncio.wait_for(client.wait_closed(), 5)
        finally:
            await client.close()
        await until(lambda: len(hooks.closed) == 1)
    assert client.goaway is not None and client.goaway.error_code == ErrorCodes.NO_ERROR
    assert hooks.opened[0].requests == 1


async def test_broken_frames_get_goaway_protocol_error_and_one_close() -> None:
    hooks = CountingHooks()
    async with running(Held(), http2=take_over, hooks=hooks) as addr:
        async with connect(addr) as (reader, writer):
            # a DATA frame on stream 0 is a connection error (RFC 9113 §6.1)
            writer.write(
                PREFACE
                + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
                + b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x"
            )
            reply = await asyncio.wait_for(reader.read(-1), 5)
        await until(lambda: len(hooks.closed) == 1)
    goaway = reply.find(b"\x07\x00\x00\x00\x00\x00")  # type GOAWAY, no flags, stream 0
    assert goaway > 0, reply
    code = int.from_bytes(reply[goaway + 10 : goaway + 14], "big")
    assert code == ErrorCodes.PROTOCOL_ERROR
    assert len(hooks.opened) == 1


async def test_a_stream_the_client_gives_no_window_is_reset_after_the_send_timeout() -> None:
    cancelled: list[int] = []

    async def endless(req: IncomingRequest, writer: ResponseWriter) -> None:
        await writer.start(200, [])
        try:
            while True:
                await writer.write(b"z" * 16_384)  # waits once the window is used up
        except asyncio.CancelledError:
            cancelled.append(1)
            raise

    limits = Limits(send_timeout_ms=200)
    async with running(endless, http2=take_over, limits=limits) as addr:  # type: ignore[arg-type]
        client = await H2Client.open(addr, auto_ack=False)
        try:
            sid = client.start("GET", "/endless")
            resp = client.responses[sid]
            await asyncio.wait_for(resp.done.wait(), 5)
            other = await client.request("GET", "/endless-too")  # the connection lives on
        finally:
            await client.close()
    assert resp.reset == ErrorCodes.CANCEL and len(resp.body) == 65_535
    assert other.reset == ErrorCodes.CANCEL  # (no window left on the connection either)
    assert cancelled == [1, 1]


MALFORMED = [
    pytest.param([(b":method", b"GET"), (b":path", b"/")], id="no-scheme"),
    pytest.param([(b":method", b"GET"), (b":scheme", b"http")], id="no-path"),
    pytest.param(
        [(b":path", b"/"), (b":scheme", b"http"), (b":method", b"GET"), (b":method", b"GET")],
        id="twice",
    ),
    pytest.param(
        [(b":method", b"GET"), (b"x", b"1"), (b":scheme", b"http"), (b":path", b"/")],
        id="pseudo-late",
    ),
    pytest.param([*BASE, (b"X-Upper", b"1")], id="upper-case-name"),
    pytest.param([*BASE, (b"x-smuggle", b"a\r\nHost: evil")], id="crlf-in-value"),
    pytest.param([*BASE, (b"x-nul", b"a\x00b")], id="nul-in-value"),
    pytest.param([*BASE, (b"x-space", b" padded")], id="leading-space"),
    pytest.param([*BASE, (b"connection", b"close")], id="connection"),
    pytest.param([*BASE, (b"transfer-encoding", b"chunked")], id="transfer-encoding"),
    pytest.param([*BASE, (b"te", b"gzip")], id="te-not-trailers"),
    pytest.param([*BASE, (b"host", b"other")], id="host-not-authority"),
    pytest.param([*BASE, (b":status", b"200")], id="response-pseudo"),
    pytest.param(
        [*BASE[:3], (b":authority", b"a"), (b":protocol", b"websocket")], id="ext-connect"
    ),
]


@pytest.mark.parametrize("fields", MALFORMED)
async def test_a_malformed_request_is_refused_400_and_never_reaches_the_handler(
    fields: list[tuple[bytes, bytes]],
) -> None:
    held = Held()
    async with running(held, http2=take_over) as addr, connect(addr) as (reader, writer):
        encoder = Encoder()
        block = encoder.encode(fields)
        ok = encoder.encode([*BASE, (b"te", b"trailers"), (b"cookie", b"a=1")])
        writer.write(
            PREFACE
            + frame(0x4, 0, 0, b"")
            + frame(0x1, 0x5, 1, block)  # HEADERS, END_HEADERS | END_STREAM
            + frame(0x1, 0x5, 3, ok)
        )
        replies = await read_statuses(reader, 2)
    assert replies == {1: b"400", 3: b"200"}
    assert held.calls == 1
