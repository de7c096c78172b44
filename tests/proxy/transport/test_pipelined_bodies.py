"""`RequestBody` of pipelined requests, at the transport's contract: a request that waited
behind another one may have its body buffered whole when its turn comes; `exhausted` (not
`complete`) says whether there is anything to read (the proxy's handler asks that)."""

from __future__ import annotations

import asyncio

from tests.proxy.transport.helpers import CountingHooks, connect, read_response, running
from turnout.proxy.transport import IncomingRequest, ResponseWriter


async def test_a_body_that_arrived_while_queued_is_still_to_read() -> None:
    release = asyncio.Event()
    seen: list[tuple[str, bool, bool, bytes | None]] = []

    async def handler(req: IncomingRequest, writer: ResponseWriter) -> None:
        if req.path == "/first":
            await release.wait()  # the next request's body arrives meanwhile
        exhausted, complete = req.body.exhausted, req.body.complete
        body = await req.body.read(1024)
        seen.append((req.path, exhausted, complete, body))
        await writer.respond(200, [], body or b"")

    data = (
        b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /second HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world"
        b"POST /third HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
    )
    hooks = CountingHooks()
    async with running(handler, hooks=hooks) as addr, connect(addr) as (reader, writer):
        writer.write(data)
        async with asyncio.timeout(5):
            while not hooks.opened or hooks.opened[0].bytes_read < len(data):
                await asyncio.sleep(0.005)  # until the server has parsed all of it
            release.set()
            answers = [(await read_response(reader))[::2] for _ in range(3)]
    assert answers == [(200, b""), (200, b"hello world"), (200, b"")]
    assert seen == [
        ("/first", True, True, b""),
        ("/second", False, True, b"hello world"),  # arrived whole, not yet read
        ("/third", True, True, b""),
    ]
