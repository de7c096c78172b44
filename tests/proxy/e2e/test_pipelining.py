"""Pipelined requests with bodies through the whole proxy: every body reaches the backend
whole, whatever arrived while an earlier request on the connection was still in flight.

A request whose body has arrived whole by the time its turn comes (it waited behind an
earlier one) is the case: its body is buffered, not "no body". The backend records what
it received (`Backend.seen`), and each echoed answer says it too.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.proxy.e2e.backends import Backend, _pattern
from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import Mesh, bounded, route_to
from tests.proxy.transport.helpers import connect, read_response

ROUTE = route_to("web-v1")


async def _mesh(lab: Lab) -> tuple[Mesh, Backend]:
    v1 = await lab.backend("v1")
    return await lab.mesh({"web": [], "web-v1": [v1]}, ROUTE), v1


def _post(path: str, body: bytes, *, chunked: bool = False) -> bytes:
    if chunked:
        pieces = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:3], body[3:]) if p)
        return (
            f"POST {path} HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + (pieces + b"0\r\n\r\n")
        )
    head = f"POST {path} HTTP/1.1\r\nHost: web\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: web\r\n\r\n".encode()


async def _answers(reader: asyncio.StreamReader, n: int) -> list[tuple[int, str, str]]:
    """`n` answers: status, and the echoed path and body (a body that is no echo: as text)."""
    out = []
    for _ in range(n):
        status, headers, body = await read_response(reader)
        if headers.get("content-type", "").startswith("application/json"):
            echo = json.loads(body)
            out.append((status, echo["path"], echo["body"]))
        else:
            out.append((status, "", body.decode("latin-1")))
    return out


def _received(backend: Backend) -> dict[str, str]:
    """What the backend received: path -> body."""
    return {str(s["path"]): str(s["body"]) for s in backend.seen}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@bounded(15)
async def test_a_body_pipelined_behind_a_get_reaches_the_backend(lab: Lab, chunked: bool) -> None:
    mesh, backend = await _mesh(lab)
    async with connect(("127.0.0.1", mesh.outbound)) as (reader, writer):
        writer.write(_get("/first") + _post("/second", b"hello world", chunked=chunked))
        answers = await _answers(reader, 2)
    assert answers == [(200, "/first", ""), (200, "/second", "hello world")]
    assert _received(backend) == {"/first": "", "/second": "hello world"}


@pytest.mark.parametrize("n", [2, 3, 4])
@bounded(15)
async def test_every_body_of_a_pipeline_in_one_write_reaches_the_backend(lab: Lab, n: int) -> None:
    mesh, backend = await _mesh(lab)
    bodies = {f"/p{i}": f"body{i}".encode() * i for i in range(1, n + 1)}
    data = b"".join(
        _post(path, body, chunked=i % 2 == 0) for i, (path, body) in enumerate(bodies.items())
    )
    async with connect(("127.0.0.1", mesh.outbound)) as (reader, writer):
        writer.write(data)
        answers = await _answers(reader, n)
    want = {path: body.decode() for path, body in bodies.items()}
    assert answers == [(200, path, body) for path, body in want.items()]
    assert _received(backend) == want


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@bounded(15)
async def test_a_pipelined_body_split_across_writes_reaches_the_backend(
    lab: Lab, chunked: bool
) -> None:
    mesh, backend = await _mesh(lab)
    data = _get("/delay/200") + _post("/second", b"split in three", chunked=chunked)
    cut = [len(_get("/delay/200")) + 20, len(data) - 5]
    async with connect(("127.0.0.1", mesh.outbound)) as (reader, writer):
        for start, end in zip([0, *cut], [*cut, len(data)], strict=True):
            writer.write(data[start:end])
            await writer.drain()
            await asyncio.sleep(0.02)  # separate TCP segments, not a guess at a deadline
        answers = await _answers(reader, 2)
    assert answers[1] == (200, "/second", "split in three")
    assert _received(backend)["/second"] == "split in three"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@bounded(15)
async def test_a_body_arriving_while_the_first_response_is_slow_is_kept(
    lab: Lab, chunked: bool
) -> None:
    mesh, backend = await _mesh(lab)
    async with connect(("127.0.0.1", mesh.outbound)) as (reader, writer):
        writer.write(_get("/delay/300"))
        await backend.wait_hits("/delay/300", 1)
        writer.write(_post("/second", b"while you wait", chunked=chunked))
        answers = await _answers(reader, 2)
    assert answers[1] == (200, "/second", "while you wait")
    assert _received(backend)["/second"] == "while you wait"


@bounded(15)
async def test_a_pipelined_body_reaches_the_local_app_inbound(lab: Lab) -> None:
    app = await lab.backend("app")
    mesh = await lab.mesh({"web": []}, ROUTE, inbound_app=("127.0.0.1", app.port))
    assert mesh.inbound is not None
    async with connect(("127.0.0.1", mesh.inbound)) as (reader, writer):
        writer.write(_get("/first") + _post("/second", b"hello world"))
        answers = await _answers(reader, 2)
    assert answers == [(200, "/first", ""), (200, "/second", "hello world")]
    assert _received(app) == {"/first": "", "/second": "hello world"}


@pytest.mark.parametrize("size", [100_000, 1_000_000], ids=["over-retry-cap", "over-high-water"])
@bounded(20)
async def test_a_big_body_queued_behind_a_slow_response_is_streamed_whole(
    lab: Lab, size: int
) -> None:
    # Over the retry cap (64 KiB) the body is streamed, not buffered; over the read high
    # water (256 KiB) reading pauses while the request waits its turn, then resumes.
    mesh, backend = await _mesh(lab)
    data = _pattern(size)
    async with connect(("127.0.0.1", mesh.outbound)) as (reader, writer):
        writer.write(_get("/delay/200") + _post("/second", data))
        answers = await _answers(reader, 2)
    assert answers[1] == (200, "/second", data.decode("latin-1"))
    assert _received(backend)["/second"] == data.decode("latin-1")
