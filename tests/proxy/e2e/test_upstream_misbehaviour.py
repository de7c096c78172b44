"""A backend that breaks HTTP/1.1 framing, through the whole proxy: a response longer than
its Content-Length (here, a second whole response in the same write) must cost that one
upstream connection, never send a client someone else's answer.

The raw backend echoes each request's path as the body, so every client can check that the
answer it got is its own; `/poison/...` answers carry a second, unrequested response.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import Mesh, bounded, route_to
from tests.proxy.transport.helpers import connect, raw_upstream, read_request

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


@bounded(20)
async def test_a_16mb_response_header_is_answered_502_and_not_read(lab: Lab) -> None:
    sent_whole: list[bool] = []

    async def huge_header(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * (16 << 20) + b"\r\n")
        try:
            await writer.drain()
            sent_whole.append(True)
        except ConnectionError:
            sent_whole.append(False)  # the proxy closed it, having stopped reading
        writer.write(b"content-length: 2\r\n\r\nok")

    async with raw_upstream(huge_header) as ((_, port), _):
        mesh = await lab.mesh({"web": [], "web-v1": [port]}, ROUTE)
        got = await asyncio.gather(*(mesh.get("web", f"/{i}") for i in range(10)))
        for status, headers, _ in got:
            assert status == 502, (status, headers)
            assert headers.getall("l5d-proxy-error") == ["upstream protocol error"]
            assert "x-big" not in headers
        async with asyncio.timeout(5):
            while len(sent_whole) < 10:
                await asyncio.sleep(0.01)
        assert sent_whole == [False] * 10


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    """`/never`: no answer at all; `/stall/N`: a head announcing N bytes, 1000 of them, then
    silence; `/late`: a whole answer after 0.6 s."""
    while True:
        path = (await read_request(reader)).split(b" ", 2)[1]
        if path == b"/late":
            await asyncio.sleep(0.6)
            writer.write(_answer(b"late"))
        elif path.startswith(b"/stall/"):
            size = int(path.rsplit(b"/", 1)[1])
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + b"x" * 1000)
        elif path == b"/never":
            await reader.read()
            return
        await writer.drain()


async def _fast_read_timeout(lab: Lab, port: int, route: str = ROUTE) -> Mesh:
    mesh = await lab.mesh({"web": [], "web-v1": [port]}, route)
    mesh.proxy.pool.read_timeout_ms = 300  # the default is 60 s
    return mesh


@bounded(15)
async def test_a_backend_that_never_answers_is_504_without_a_route_timeout(lab: Lab) -> None:
    async with raw_upstream(_silent) as ((_, port), _):
        mesh = await _fast_read_timeout(lab, port)
        status, headers, body = await mesh.get("web", "/never")
        assert status == 504, (status, headers, body)
        assert headers.getall("l5d-proxy-error") == ["upstream read timeout"]
        # a small body that stops is still buffered: nothing was sent, a 504 can be
        status, headers, _ = await mesh.get("web", "/stall/2000")
        assert (status, headers.getall("l5d-proxy-error")) == (504, ["upstream read timeout"])


@bounded(15)
async def test_a_streamed_body_that_stops_closes_the_client_connection(lab: Lab) -> None:
    async with raw_upstream(_silent) as ((_, port), _):
        mesh = await _fast_read_timeout(lab, port)
        async with connect(("127.0.0.1", mesh.outbound)) as (reader, writer):
            writer.write(b"GET /stall/1000000 HTTP/1.1\r\nHost: web\r\n\r\n")
            got = await reader.read(-1)  # until the proxy closes: the answer cannot complete
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), got[:200]
        assert b"content-length: 1000000" in head.lower()
        assert len(body) == 1000


@bounded(15)
async def test_a_route_timeout_replaces_the_read_timeout(lab: Lab) -> None:
    async with raw_upstream(_silent) as ((_, port), _):
        route = route_to("web-v1", options="timeouts: {request: 5s}")
        mesh = await _fast_read_timeout(lab, port, route)
        status, _, body = await mesh.get("web", "/late")
        assert (status, body) == (200, b"late")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@bounded(30)
async def test_a_101_to_a_plain_request_is_502_and_leaks_no_connection(lab: Lab) -> None:
    async def switches(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int):
        await read_request(reader)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                     b"connection: upgrade\r\n\r\nwelcome")  # fmt: skip
        await writer.drain()
        await reader.read()  # open for as long as the proxy keeps its end

    async with raw_upstream(switches) as ((host, port), connections):
        mesh = await lab.mesh({"web": [], "web-v1": [port]}, ROUTE, inbound_app=(host, port))
        status, headers, _ = await mesh.get("web", "/first")
        assert (status, headers.getall("l5d-proxy-error")) == (502, ["upstream protocol error"])
        # inbound, to the local app: no balancer takes the endpoint out after 7 failures,
        # so every request meets the 101
        before = _open_fds()  # the test's own sockets (client, proxy and backend) included
        got = [(await mesh.get("web", f"/{i}", port=mesh.inbound))[0] for i in range(200)]
        assert got == [502] * 200
        async with asyncio.timeout(5):
            while _open_fds() > before + 10:  # each upstream connection closed (both ends)
                await asyncio.sleep(0.01)
        assert connections[0] == 201


CONNECTION_OPTIONS = (
    b"HTTP/1.1 200 OK\r\nConnection: x-secret, X-Other\r\nX-Secret: 1\r\nx-other: 2\r\n"
    b"Keep-Alive: timeout=5\r\nconnection: keep-alive,x-third\r\nX-Third: 3\r\n"
    b"Proxy-Authenticate: Basic\r\nX-Kept: yes\r\ncontent-length: 2\r\n\r\nok"
)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param("", id="as-received"),
        pytest.param(
            "filters: [{type: ResponseHeaderModifier, responseHeaderModifier: "
            "{add: [{name: x-added, value: a}]}}]",
            id="with-a-response-filter",
        ),
    ],
)
@bounded(15)
async def test_headers_named_in_the_upstream_connection_header_stay_behind(
    lab: Lab, options: str
) -> None:
    async def named(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int):
        while True:
            await read_request(reader)
            writer.write(CONNECTION_OPTIONS)
            await writer.drain()

    async with raw_upstream(named) as ((_, port), _):
        mesh = await lab.mesh({"web": [], "web-v1": [port]}, route_to("web-v1", options=options))
        status, headers, body = await mesh.get("web", "/")
        assert (status, body) == (200, b"ok")
        assert headers.get("x-kept") == "yes"
        for gone in ("x-secret", "x-other", "x-third", "keep-alive", "proxy-authenticate"):
            assert gone not in headers, (gone, headers)
