"""TapHub and the ``linkerd viz tap`` line format (LINKERD-REFERENCE.md §b)."""

from __future__ import annotations

import json

import pytest

from tests.proxy.builders import mk_event, request_events
from turnout.proxy.tap import (
    TapEvent,
    TapFilter,
    TapHub,
    format_tap_json,
    format_tap_line,
    tap_json,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drain(sub: object) -> list[TapEvent]:
    buf = sub._buf  # type: ignore[attr-defined]
    out = list(buf)
    buf.clear()
    return out


# -- line format ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "line"),
    [
        pytest.param(
            mk_event("req"),
            "req id=7:1 proxy=in  src=10.1.0.3:51234 dst=10.1.0.5:8080 tls=true"
            " :method=GET :authority=web:80 :path=/api",
            id="req-inbound-padded",
        ),
        pytest.param(
            mk_event("rsp", direction="outbound", status=503, latency_us=1520),
            "rsp id=7:1 proxy=out src=10.1.0.3:51234 dst=10.1.0.5:8080 tls=true"
            " :status=503 latency=1520µs",
            id="rsp-outbound",
        ),
        pytest.param(
            mk_event("end", status=200, duration_us=86, response_bytes=1024),
            "end id=7:1 proxy=in  src=10.1.0.3:51234 dst=10.1.0.5:8080 tls=true"
            " duration=86µs response-length=1024B",
            id="end",
        ),
        pytest.param(
            mk_event("end", status=200, grpc_status=14, duration_us=5, response_bytes=0),
            "end id=7:1 proxy=in  src=10.1.0.3:51234 dst=10.1.0.5:8080 tls=true"
            " grpc-status=Unavailable duration=5µs response-length=0B",
            id="end-grpc",
        ),
        pytest.param(
            mk_event("end", reset_error="CANCEL", duration_us=5, response_bytes=3),
            "end id=7:1 proxy=in  src=10.1.0.3:51234 dst=10.1.0.5:8080 tls=true"
            " reset-error=CANCEL duration=5µs response-length=3B",
            id="end-reset",
        ),
    ],
)
def test_tap_lines_match_linkerds_format(event: TapEvent, line: str) -> None:
    assert format_tap_line(event) == line


def test_wide_tap_lines_append_the_route() -> None:
    event = mk_event("req", route="httproute/shop/web/rule/0")

    assert format_tap_line(event, wide=True).endswith(
        ":path=/api rt_route=httproute/shop/web/rule/0"
    )
    assert "rt_route" not in format_tap_line(event)
    assert format_tap_line(mk_event("req"), wide=True).endswith(":path=/api")


def test_tap_json_is_one_flat_object_per_event_without_unset_fields() -> None:
    event = mk_event("rsp", status=200, latency_us=900, route="r/0")

    assert (
        json.loads(format_tap_json(event))
        == tap_json(event)
        == {
            "type": "rsp",
            "id": "7:1",
            "direction": "inbound",
            "src": "10.1.0.3:51234",
            "dst": "10.1.0.5:8080",
            "tls": "true",
            "method": "GET",
            "authority": "web:80",
            "path": "/api",
            "route": "r/0",
            "status": 200,
            "latency_us": 900,
        }
    )
    assert "\n" not in format_tap_json(mk_event(path="/a\nb"))


# -- hub --------------------------------------------------------------------------------------


def test_publishing_without_subscribers_is_a_no_op() -> None:
    hub = TapHub()

    assert not hub.active
    hub.publish(mk_event())
    assert hub.dropped == 0

    with hub.subscribe():
        assert hub.active
    assert not hub.active and hub.subscribers == 0


@pytest.mark.parametrize(
    ("flt", "wanted"),
    [
        pytest.param(TapFilter(), {1, 2, 3, 4}, id="everything"),
        pytest.param(TapFilter(method="POST"), {2}, id="method"),
        pytest.param(TapFilter(authority="api:80"), {3}, id="authority"),
        pytest.param(TapFilter(path_prefix="/api/v1"), {1, 2}, id="path-prefix"),
        pytest.param(TapFilter(direction="outbound"), {4}, id="direction"),
    ],
)
def test_filters_select_requests_with_all_their_events(flt: TapFilter, wanted: set[int]) -> None:
    hub = TapHub()
    sub = hub.subscribe(flt)

    for events in (
        request_events(1, path="/api/v1/items"),
        request_events(2, method="POST", path="/api/v1/x"),
        request_events(3, authority="api:80", path="/health"),
        request_events(4, direction="outbound", path="/"),
    ):
        for e in events:
            hub.publish(e)

    got = drain(sub)
    assert {int(e.id.split(":")[1]) for e in got} == wanted
    assert len(got) == 3 * len(wanted)


def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    hub = TapHub()
    sub = hub.subscribe(max_queue=2)

    for stream in range(1, 6):
        hub.publish(mk_event("req", stream=stream))
    for stream in range(1, 6):
        hub.publish(mk_event("end", stream=stream, duration_us=1, response_bytes=0))

    assert [e.id for e in drain(sub)] == ["7:1", "7:2"]
    assert sub.dropped == 3 + 2, "3 requests, then the 2 ends of the admitted ones"
    assert hub.dropped == 5
    sub.close()
    assert hub.dropped == 5, "drops of closed subscriptions still count"


def test_responses_of_requests_a_subscriber_never_saw_are_not_delivered() -> None:
    hub = TapHub()
    early = request_events(1)
    hub.publish(early[0])
    sub = hub.subscribe()

    for e in [*early[1:], *request_events(2)]:
        hub.publish(e)

    assert [(e.kind, e.id) for e in drain(sub)] == [("req", "7:2"), ("rsp", "7:2"), ("end", "7:2")]


def test_max_rps_limits_requests_and_refills_over_time() -> None:
    clock = FakeClock()
    hub = TapHub(clock=clock)
    sub = hub.subscribe(TapFilter(max_rps=3))

    for stream in range(1, 6):
        for e in request_events(stream):
            hub.publish(e)
    first = drain(sub)
    clock.now += 0.5
    for e in request_events(6):
        hub.publish(e)

    assert {e.id for e in first} == {"7:1", "7:2", "7:3"}
    assert len(first) == 9
    assert [e.id for e in drain(sub)] == ["7:6"] * 3
    assert sub.dropped == 0, "rate limiting is not dropping"


async def test_a_closed_subscription_ends_its_iterator_after_draining() -> None:
    hub = TapHub()
    sub = hub.subscribe()
    for e in request_events(1):
        hub.publish(e)
    hub.close()

    got = [e.kind async for e in sub]

    assert got == ["req", "rsp", "end"]
    assert await sub.get() is None
