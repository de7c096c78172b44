"""What the listener does with bad, slow, oversized or vanishing clients and failing handlers.
Bad input is crafted with raw sockets; every case must end with the connection closed."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from tests.proxy.transport.helpers import (
    CountingHooks,
    connect,
    raw,
    read_response,
    running,
)
from turnout.proxy.transport import IncomingRequest, Limits, ResponseWriter


async def ok(req: IncomingRequest, writer: ResponseWriter) -> None:
    body = await req.body.read(1 << 20)
    await writer.respond(200, [("x-path", req.path)], body or b"")


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


async def test_too_many_headers_is_431() -> None:
    async with running(ok, limits=Limits(max_header_count=10)) as addr:
        headers = b"".join(b"x-h%d: v\r\n" % i for i in range(11))
        assert status_of(await raw(addr, b"GET / HTTP/1.1\r\n" + headers + b"\r\n")) == 431
        headers = b"".join(b"x-h%d: v\r\n" % i for i in range(10))
        head = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
        good = await raw(addr, head + headers[18:] + b"\r\n")  # 8 of them, 10 in all
        assert status_of(good) == 200


async def test_too_big_headers_is_431() -> None:
    async with running(ok, limits=Limits(max_header_bytes=1024)) as addr:
        big = b"GET / HTTP/1.1\r\nx-big: " + b"a" * 2000 + b"\r\n\r\n"
        assert status_of(await raw(addr, big)) == 431
        long_url = b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\n\r\n"
        # a request-target alone over the limit: 414 (RFC 9112 §3: MUST), as nginx answers
        assert status_of(await raw(addr, long_url)) == 414
        # an endless header trickled in small pieces is cut off too
        async with connect(addr) as (reader, writer):
            writer.write(b"GET / HTTP/1.1\r\nx-endless: ")
            reply = b""
            try:
                for _ in range(40):
                    writer.write(b"b" * 100)
                    await writer.drain()
                    await asyncio.sleep(0.001)
                async with asyncio.timeout(3):
                    reply = await reader.read(-1)
            except ConnectionResetError:
                pass  # the server closed while we were still sending: the 431 may be lost
            assert reply == b"" or status_of(reply) == 431
            assert reader.at_eof() or writer.transport.is_closing()


async def test_garbage_is_400_and_closed() -> None:
    async with running(ok) as addr:
        for junk in (
            b"garbage\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.9\r\n\r\n",  # a minor version llhttp does not take (9.9: 505)
            b"CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n",
        ):
            assert status_of(await raw(addr, junk)) == 400, junk


async def test_garbage_after_a_good_request_answers_that_one_first() -> None:
    async with running(ok) as addr:
        reply = await raw(addr, b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n\x00\x01junk\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200 OK")
        assert b"x-path: /first" in reply
        assert reply.count(b"HTTP/1.1 400") == 1


async def test_slow_headers_are_408() -> None:
    async with (
        running(ok, limits=Limits(header_timeout_ms=100)) as addr,
        connect(addr) as (reader, writer),
    ):
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n")
        async with asyncio.timeout(3):
            assert status_of(await reader.read(-1)) == 408


async def test_a_request_line_cut_short_is_closed_after_the_header_timeout() -> None:
    """Bytes that start no head (a method cut short) still get only the header timeout."""
    async with (
        running(ok, limits=Limits(header_timeout_ms=100, keepalive_timeout_ms=60_000)) as addr,
        connect(addr) as (reader, writer),
    ):
        writer.write(b"GE")
        async with asyncio.timeout(3):
            await reader.read(-1)  # closed well before the keep-alive timeout


async def test_a_slow_head_of_a_second_request_is_408() -> None:
    async with (
        running(ok, limits=Limits(header_timeout_ms=100)) as addr,
        connect(addr) as (reader, writer),
    ):
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        async with asyncio.timeout(3):
            assert (await read_response(reader))[0] == 200
            writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n")
            assert status_of(await reader.read(-1)) == 408


async def test_idle_keepalive_connection_is_closed() -> None:
    async with (
        running(ok, limits=Limits(keepalive_timeout_ms=100)) as addr,
        connect(addr) as (reader, writer),
    ):
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        async with asyncio.timeout(3):
            assert (await read_response(reader))[0] == 200
            assert await reader.read(-1) == b""


async def test_slow_body_is_408() -> None:
    async with (
        running(ok, limits=Limits(body_timeout_ms=100)) as addr,
        connect(addr) as (reader, writer),
    ):
        writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        async with asyncio.timeout(3):
            assert status_of(await reader.read(-1)) == 408


async def test_malformed_chunked_body_is_400() -> None:
    async with running(ok) as addr:
        reply = await raw(
            addr, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        )
        assert status_of(reply) == 400


async def test_handler_exception_is_500_and_the_connection_survives(
    caplog: object,
) -> None:
    async def broken(req: IncomingRequest, writer: ResponseWriter) -> None:
        if req.path == "/boom":
            raise RuntimeError("boom")
        await ok(req, writer)

    async with running(broken) as addr, connect(addr) as (reader, writer):
        writer.write(b"GET /boom HTTP/1.1\r\nHost: a\r\n\r\n")
        async with asyncio.timeout(3):
            assert (await read_response(reader))[0] == 500
        assert (
            status_of(await raw(addr, b"GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
            == 200
        )


async def test_handler_that_does_not_answer_is_500() -> None:
    async def silent(req: IncomingRequest, writer: ResponseWriter) -> None:
        return None

    async with running(silent) as addr:
        assert (
            status_of(await raw(addr, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
            == 500
        )


async def test_client_disconnect_cancels_the_handler() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow(req: IncomingRequest, writer: ResponseWriter) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    hooks = CountingHooks()
    async with running(slow, hooks=hooks) as addr:
        async with connect(addr) as (_, writer):
            writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            async with asyncio.timeout(3):
                await started.wait()
        async with asyncio.timeout(3):
            await cancelled.wait()
    info, _error = hooks.closed[0]
    assert info.requests == 1
    assert info.bytes_read == len(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert info.bytes_written == 0


async def test_connection_hooks_count_bytes() -> None:
    hooks = CountingHooks()
    async with running(ok, hooks=hooks) as addr:
        request = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
        reply = await raw(addr, request)
    ((info, error),) = hooks.closed
    assert (info.direction, info.bytes_read, info.bytes_written) == (
        "inbound",
        len(request),
        len(reply),
    )
    assert error is None
    assert hooks.opened == [info]


async def test_max_connections_closes_the_extra_ones() -> None:
    async with (
        running(ok, limits=Limits(max_connections=1)) as addr,
        connect(addr) as (reader, writer),
    ):
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        async with asyncio.timeout(3):
            assert (await read_response(reader))[0] == 200
        assert await raw(addr, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == b""


async def test_a_client_that_never_reads_a_callback_answer_is_dropped_after_the_send_timeout() -> (
    None
):
    """Pipelined requests each answered at once by a callback-mode handler (the answers leave
    together at the end of the loop round); the client reads nothing: the connection is reset
    after `send_timeout_ms` instead of holding the buffered bytes forever."""
    body = b"x" * 60_000
    requests = 200  # 12 MB: more than the kernel keeps for one socket

    def send_big(req: IncomingRequest, writer: ResponseWriter) -> None:
        writer.send(200, [], body)
        writer.complete()

    limits = Limits(send_timeout_ms=200, max_pipelined=requests)
    async with running(send_big, limits=limits) as addr:  # type: ignore[arg-type]
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, addr)
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * requests)
            await asyncio.sleep(1.0)  # not reading: the server's buffer fills, then it gives up
            got = 0
            async with asyncio.timeout(5):
                with contextlib.suppress(ConnectionError):
                    while chunk := await reader.read(1 << 20):
                        got += len(chunk)
            assert got < requests * len(body)  # cut off: the answers never all came
        finally:
            writer.close()


async def test_the_headers_the_listener_drops_count_toward_the_caps() -> None:
    """l5d-client-id and l5d-require-id are not passed on as headers, but they are header
    fields of the request: "header fields per request" counts them."""
    mesh = b"l5d-client-id: a.b\r\nl5d-require-id: c.d\r\n"
    async with running(ok, limits=Limits(max_header_count=10)) as addr:
        head = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + mesh
        fields = b"".join(b"x-h%d: v\r\n" % i for i in range(7))  # 11 fields in all
        assert status_of(await raw(addr, head + fields + b"\r\n")) == 431
        assert status_of(await raw(addr, head + fields[9:] + b"\r\n")) == 200  # 10


async def test_the_caps_hold_for_a_head_sent_in_small_pieces() -> None:
    """The caps are added up at the end of each read inside a head, not per field: a head
    trickled in pieces, each under the caps, is refused once what it holds is over."""
    many = b"".join(b"x-h%d: v\r\n" % i for i in range(12))
    wide = b"".join(b"x-w%d: %s\r\n" % (i, b"v" * 40) for i in range(40))  # ~1.9 KB
    for limits, fields in (
        (Limits(max_header_count=10), many),
        (Limits(max_header_bytes=1024), wide),
    ):
        async with running(ok, limits=limits) as addr, connect(addr) as (reader, writer):
            data = b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n"
            reply = b""
            try:
                for i in range(0, len(data), 30):
                    writer.write(data[i : i + 30])
                    await writer.drain()
                    await asyncio.sleep(0.001)
                async with asyncio.timeout(3):
                    reply = await reader.read(-1)
            except ConnectionResetError:
                pass  # closed while we still sent: the 431 may be lost
            assert reply == b"" or status_of(reply) == 431, limits
            assert reply != b"" or reader.at_eof() or writer.transport.is_closing()
