"""A backend that breaks HTTP/1.1 framing, through the whole proxy: a response longer than
its Content-Length (here, a second whole response in the same write) must cost that one
upstream connection, never send a client someone else's answer.

The raw backend echoes each request's path as the body, so every client can check that the
answer it got is its own; `/poison/...` answers carry a second, unrequested response.
"""

from __future__ import annotations

import asyncio

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import Mesh, bounded, route_to
from tests.proxy.transport.helpers import raw_upstream, read_request

ROUTE = route_to("web-v1")


def _answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


async def echo_path(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    """Keep-alive: answer every request with its path; a `/poison/` path's answer is
    followed, in the same write, by a whole second response nobody asked for."""
    while True:
        head = await read_request(reader)
        path = head.split(b" ", 2)[1]
        data = _answer(path)
        if path.startswith(b"/poison/"):
            data += _answer(b"stale " + path)
        writer.write(data)
        await writer.drain()


async def _mismatches(mesh: Mesh, paths: list[str], *, workers: int) -> list[tuple[str, str]]:
    """Send `paths` from `workers` concurrent clients; the (asked, got) pairs that differ."""
    wrong: list[tuple[str, str]] = []
    todo = iter(paths)

    async def worker() -> None:
        for path in todo:
            try:
                async with asyncio.timeout(5):
                    status, _, body = await mesh.get("web", path)
                got = body.decode() if status == 200 else f"{status} {body.decode()}"
            except TimeoutError:
                got = "no answer"
            if got != path:
                wrong.append((path, got))

    async with asyncio.TaskGroup() as tg:
        for _ in range(workers):
            tg.create_task(worker())
    return wrong


@bounded(40)
async def test_a_response_overrunning_its_length_never_reaches_another_client(lab: Lab) -> None:
    async with raw_upstream(echo_path) as ((_, port), connections):
        mesh = await lab.mesh({"web": [], "web-v1": [port]}, ROUTE)
        # one poisoning answer, then normal concurrent traffic
        assert (await mesh.get("web", "/poison/0"))[2] == b"/poison/0"
        wrong = await _mismatches(mesh, [f"/id/{i}" for i in range(300)], workers=50)
        assert wrong == []
        # one poisoning answer in every ten requests
        paths = [f"/poison/{i}" if i % 10 == 0 else f"/id/{i}" for i in range(300)]
        wrong = await _mismatches(mesh, paths, workers=50)
        assert wrong == []
        assert connections[0] >= 31  # each poisoned connection was closed, never reused
