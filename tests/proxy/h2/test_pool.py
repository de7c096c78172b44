"""`H2Pool` on its own against the test's `h2` server: a second connection only when the
first is full (the peer's MAX_CONCURRENT_STREAMS), cancel resets the stream, and idle
connections closed by the sweep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.proxy.e2e.harness import bounded
from tests.proxy.h2.backends import H2Backend
from turnout.proxy.errors import UpstreamProtocolError
from turnout.proxy.transport.h2_client import H2Pool
from turnout.proxy.transport.heads import h2_request_headers
from turnout.proxy.transport.messages import RawHeaders, UpstreamHandle


class Receiver:
    def __init__(self) -> None:
        self.done: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.status = 0
        self.body = b""

    def on_head(
        self, conn: UpstreamHandle, status: int, headers: RawHeaders, n: int | None
    ) -> None:
        self.status = status

    def on_body(self, chunk: bytes) -> None:
        self.body += chunk

    def on_end(self) -> None:
        self.done.set_result((self.status, self.body))

    def on_error(self, error: BaseException) -> None:
        self.done.set_exception(error)


@pytest.fixture
async def backend() -> AsyncIterator[H2Backend]:
    b = await H2Backend(max_streams=2).start()
    yield b
    await b.stop()


def _send(pool: H2Pool, b: H2Backend, path: str, receiver: Receiver) -> UpstreamHandle:
    headers = h2_request_headers("POST", path, "web", [], content_length=1)
    return pool.send(
        ("127.0.0.1", b.port),
        method="POST",
        headers=headers,
        body=b"x",
        timeout_ms=5000,
        receiver=receiver,  # type: ignore[arg-type]
    )


@bounded(10)
async def test_a_second_connection_only_when_the_first_is_full(backend: H2Backend) -> None:
    pool = H2Pool(idle_timeout_ms=100)
    try:
        first = await asyncio.gather(*(_await(pool, backend, "/echo") for _ in range(2)))
        assert first == [(200, b"x")] * 2 and backend.connections == 1
        hung = [Receiver() for _ in range(3)]
        handles = [_send(pool, backend, "/hang", r) for r in hung]  # 2 fit, the 3rd does not
        while backend.hits["/hang"] < 3:
            await asyncio.sleep(0.01)
        assert backend.connections == 2
        assert pool.connection_count(("127.0.0.1", backend.port)) == 2
        for handle, r in zip(handles, hung, strict=True):
            handle.cancel(r)  # type: ignore[arg-type]
        assert await _await(pool, backend, "/echo") == (200, b"x")  # a freed stream is reused
        assert backend.connections == 2
        while pool.open_count:  # the idle sweep closes both (100 ms)
            await asyncio.sleep(0.02)
    finally:
        await pool.close()


async def _await(pool: H2Pool, b: H2Backend, path: str) -> tuple[int, bytes]:
    r = Receiver()
    _send(pool, b, path, r)
    return await r.done


@bounded(10)
async def test_a_malformed_response_fails_its_stream_only(backend: H2Backend) -> None:
    """h2's own header checks are off on upstream connections (`h2_upstream._CONFIG`): ours
    refuse an upper-case name as a stream error, and the connection serves the next."""
    pool = H2Pool()
    try:
        receiver = Receiver()
        _send(pool, backend, "/malformed", receiver)
        with pytest.raises(UpstreamProtocolError, match="malformed response head"):
            await receiver.done
        assert await _await(pool, backend, "/echo") == (200, b"x")
        assert backend.connections == 1
    finally:
        await pool.close()
