"""The gRPC and HTTP/2 helpers of the request path (`h2_call.py`, `heads.h2_request_headers`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from turnout.proxy import answers
from turnout.proxy.actions import RetryPolicy
from turnout.proxy.h2_call import (
    MIRROR_BUFFER_BYTES,
    Replay,
    for_grpc,
    is_grpc,
    status_of_lines,
    timeout_ms,
)
from turnout.proxy.transport.heads import h2_request_headers


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (b"250m", 250),
        (b"1S", 1000),
        (b"2M", 120_000),
        (b"1H", 3_600_000),
        (b"1500u", 2),
        (b"10n", 1),
        (b"12345678m", 12_345_678),
    ],
)
def test_grpc_timeout_in_milliseconds_rounded_up(value: bytes, ms: int) -> None:
    assert timeout_ms([(b"Grpc-Timeout", value)]) == ms


@pytest.mark.parametrize("value", [b"", b"m", b"10", b"10x", b"123456789m", b"-1m", b"1.5S"])
def test_a_malformed_grpc_timeout_is_ignored(value: bytes) -> None:
    assert timeout_ms([(b"grpc-timeout", value)]) is None


def test_grpc_is_its_content_type_only() -> None:
    assert is_grpc([(b"Content-Type", b"application/grpc+proto")])
    assert not is_grpc([(b"content-type", b"application/json")])
    assert not is_grpc([(b"x-content-type", b"application/grpc")])


def test_proxy_answers_get_a_grpc_form_made_once() -> None:
    twin = for_grpc(answers.NO_ENDPOINTS)
    assert (twin.status, twin.grpc_status, twin.body) == (200, 14, b"")
    assert for_grpc(answers.NO_ENDPOINTS) is twin
    assert for_grpc(answers.REQUEST_TIMEOUT).grpc_status == 4
    assert for_grpc(answers.UNEXPECTED).grpc_status == 2
    assert dict(twin.headers)["grpc-message"] == "no ready endpoints"
    assert status_of_lines([b"grpc-status", b": ", b"14", b"\r\n"]) == 14


def test_retry_on_names_become_grpc_codes() -> None:
    retry = RetryPolicy(
        attempts=2,
        retry_on=frozenset({"connect-failure", "unavailable", "deadline-exceeded"}),
        codes=frozenset({503}),
        backoff_base_ms=1,
        backoff_max_ms=1,
    )
    assert retry.grpc_codes == {14, 4}


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


async def test_replay_keeps_a_whole_body_under_the_cap_until_stopped() -> None:
    replay = Replay(_chunks(b"ab", b"cd"), cap=10)
    assert [c async for c in replay] == [b"ab", b"cd"]
    assert replay.body() == b"abcd"
    replay.stop()  # the first response byte
    assert replay.body() is None
    over = Replay(_chunks(b"abc", b"def"), cap=4)
    assert [c async for c in over] == [b"abc", b"def"]  # still relayed whole
    assert over.body() is None
    partial = Replay(_chunks(b"a", b"b"), cap=10)
    await partial.__anext__()
    assert partial.body() is None  # not all of it has arrived: no retry


def test_h2_request_headers_pseudo_first_hop_by_hop_dropped_te_trailers_kept() -> None:
    headers = h2_request_headers(
        "POST",
        "/p?q",
        "web:80",
        [
            (b"Host", b"web:80"),
            (b"Connection", b"keep-alive, x-hop"),
            (b"X-Hop", b"1"),
            (b"TE", b"trailers, deflate"),
            (b"Transfer-Encoding", b"chunked"),
            (b"X-Kept", b"yes"),
        ],
        content_length=3,
    )
    assert headers == [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"web:80"),
        (b":path", b"/p?q"),
        (b"te", b"trailers"),
        (b"x-kept", b"yes"),
        (b"content-length", b"3"),
    ]
    with pytest.raises(ValueError):
        h2_request_headers("GET", "/", "web", [(b"x-bad", b"a\r\nb")])


async def test_a_mirror_copy_gets_the_relayed_body_from_its_start() -> None:
    replay = Replay(_chunks(b"ab", b"cd", b"ef"), cap=3)
    assert await replay.__anext__() == b"ab"  # relayed before the tap: from the kept copy
    copy = replay.tap()
    assert copy is not None
    assert [c async for c in replay] == [b"cd", b"ef"]  # over the cap: the retry copy is gone
    assert [c async for c in copy] == [b"ab", b"cd", b"ef"]
    assert replay.tap() is None  # nothing kept to start a late copy from


async def test_a_mirror_copy_that_falls_behind_is_dropped_never_waited_for() -> None:
    big = b"x" * (MIRROR_BUFFER_BYTES // 2 + 1)
    replay = Replay(_chunks(big, big, b"end"), cap=10)
    copy = replay.tap()
    assert copy is not None
    assert [len(c) async for c in replay] == [len(big), len(big), 3]  # the request goes on
    with pytest.raises(ConnectionResetError):
        await copy.__anext__()
    unfinished = Replay(_chunks(b"a"), cap=10)
    late = unfinished.tap()
    assert late is not None
    unfinished.abandon()  # the call ended before its body was relayed whole
    with pytest.raises(ConnectionResetError):
        await late.__anext__()
