"""The one-pass checks that stand in for h2's own (off on both sides for speed): upstream
response heads and trailers (`h2_upstream._response_head`, `_trailers`), the upstream
request's header list (`heads.h2_request_headers`), and a body taken whole without a task
(`RequestBody.take`)."""

from __future__ import annotations

import asyncio

import pytest

from turnout.proxy.transport.h2_request import AckedBody
from turnout.proxy.transport.h2_upstream import Malformed, _response_head, _trailers
from turnout.proxy.transport.heads import h2_request_headers
from turnout.proxy.transport.messages import Limits, RequestBody
from turnout.proxy.transport.streams import BodyStream

OK = (b":status", b"200")


def test_a_well_formed_head_is_read_in_one_pass() -> None:
    status, raw, length = _response_head(
        [
            OK,
            (b"content-type", b"application/grpc"),
            (b"content-length", b"5"),
            (b"te", b"trailers"),
        ]
    )
    assert (status, length) == (200, 5)
    assert raw.lines == [b"content-type", b": ", b"application/grpc", b"\r\n"]


@pytest.mark.parametrize(
    "head",
    [
        [(b"content-type", b"x")],  # no :status
        [OK, OK],
        [OK, (b":path", b"/")],
        [(b"a", b"b"), OK],  # a pseudo-header after a regular field
        [(b":status", b"20")],
        [(b":status", b"abc")],
        [OK, (b"X-Upper", b"v")],
        [OK, (b"sp ace", b"v")],
        [OK, (b"", b"v")],
        [OK, (b"a", b"b\r\nx-injected: 1")],
        [OK, (b"a", b"b\x00")],
        [OK, (b"a", b" b")],
        [OK, (b"connection", b"close")],
        [OK, (b"transfer-encoding", b"chunked")],
        [OK, (b"te", b"gzip")],
    ],
)
def test_a_malformed_head_is_refused(head: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(Malformed):
        _response_head(head)


@pytest.mark.parametrize(
    "trailers",
    [[OK], [(b"Grpc-Status", b"0")], [(b"grpc-message", b"a\nb")], [(b"upgrade", b"x")]],
)
def test_malformed_trailers_are_refused(trailers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(Malformed):
        _trailers(trailers)
    assert _trailers([(b"grpc-status", b"0")]) == [(b"grpc-status", b"0")]


def test_what_a_connection_header_names_is_dropped_te_kept_as_trailers() -> None:
    headers = h2_request_headers(
        "POST",
        "/p",
        "web",
        [
            (b"Connection", b"x-hop, te"),
            (b"X-Hop", b"1"),
            (b"TE", b"trailers"),
            (b"X-Kept", b"2"),
            (b"Host", b"web"),
        ],
    )
    assert headers[4:] == [(b"te", b"trailers"), (b"x-kept", b"2")]
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        h2_request_headers("GET", "/", "web", [(b"x", b"a\rb")])


async def test_a_body_is_taken_whole_only_once_it_has_all_arrived() -> None:
    stream = BodyStream(asyncio.get_running_loop(), high_water=1 << 20, pause=_no, resume=_no)
    body = RequestBody(stream, None)
    stream.feed(b"ab")
    assert body.take(10) is None  # not all here yet: nothing taken
    stream.feed(b"cd")
    stream.feed_eof()
    assert body.take(3) is None  # over the limit: nothing taken, still readable
    assert body.take(10) == b"abcd"
    assert body.exhausted


def _no() -> None:
    pass


class _Conn:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.limits = Limits()
        self.acked: list[tuple[int, int]] = []

    def ack(self, stream_id: int, size: int) -> None:
        self.acked.append((stream_id, size))


async def test_an_http2_body_taken_whole_hands_its_window_back() -> None:
    """Else every unary call taken so would shrink the connection's window for good."""
    conn = _Conn(asyncio.get_running_loop())
    stream = AckedBody(conn, 7)
    assert stream.take(b"hello")
    stream.feed_eof()
    assert RequestBody(stream, 5).take(64) == b"hello"
    assert conn.acked == [(7, 5)]
