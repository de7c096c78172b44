"""`trace_context`: which incoming headers continue a trace, and what the proxy forwards."""

from __future__ import annotations

import pytest

from turnout.proxy.trace_context import TraceContext, extract, propagate

TRACE = b"4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = b"00f067aa0ba902b7"
MINE = b"b7ad6b7169203331"


def test_a_w3c_traceparent_continues_its_trace() -> None:
    got = extract([(b"Traceparent", b"00-%s-%s-01" % (TRACE, SPAN))])
    assert got == TraceContext(TRACE, SPAN, True)


def test_an_unsampled_traceparent_says_so() -> None:
    got = extract([(b"traceparent", b"00-%s-%s-00" % (TRACE, SPAN))])
    assert got is not None and got.sampled is False


@pytest.mark.parametrize(
    "value",
    [
        b"00-%s-%s-01" % (b"0" * 32, SPAN),
        b"00-%s-%s-01" % (TRACE, b"0" * 16),
        b"ff-%s-%s-01" % (TRACE, SPAN),
        b"00-%s-%s-01-extra" % (TRACE, SPAN),
        b"00-%s-%s" % (TRACE, SPAN),
        b"garbage",
    ],
)
def test_an_invalid_traceparent_is_no_context(value: bytes) -> None:
    assert extract([(b"traceparent", value)]) is None


def test_a_later_version_is_read_as_version_00() -> None:
    got = extract([(b"traceparent", b"01-%s-%s-01-more" % (TRACE, SPAN))])
    assert got == TraceContext(TRACE, SPAN, True)


def test_traceparent_wins_over_b3_whose_form_is_kept() -> None:
    got = extract(
        [(b"b3", b"%s-%s-0" % (TRACE, MINE)), (b"traceparent", b"00-%s-%s-01" % (TRACE, SPAN))]
    )
    assert got == TraceContext(TRACE, SPAN, True, "single")


def test_single_b3_with_a_64_bit_trace_id_is_widened() -> None:
    got = extract([(b"b3", b"a3ce929d0e0e4736-%s-1-%s" % (SPAN, MINE))])
    assert got == TraceContext(b"0" * 16 + b"a3ce929d0e0e4736", SPAN, True, "single")


def test_multi_b3_and_its_debug_flag() -> None:
    headers = [(b"X-B3-TraceId", TRACE), (b"X-B3-SpanId", SPAN), (b"X-B3-Flags", b"1")]
    assert extract(headers) == TraceContext(TRACE, SPAN, True, "multi")
    no_decision = [(b"x-b3-traceid", TRACE), (b"x-b3-spanid", SPAN)]
    assert extract(no_decision) == TraceContext(TRACE, SPAN, None, "multi")


@pytest.mark.parametrize(
    "headers",
    [
        [(b"b3", b"1")],
        [(b"b3", b"%s" % TRACE)],
        [(b"x-b3-traceid", TRACE)],
        [(b"x-b3-traceid", b"xyz"), (b"x-b3-spanid", SPAN)],
        [],
    ],
)
def test_b3_without_both_ids_is_no_context(headers: list[tuple[bytes, bytes]]) -> None:
    assert extract(headers) is None


def test_propagate_makes_the_proxy_span_the_parent_and_keeps_tracestate() -> None:
    headers = [
        (b"accept", b"*/*"),
        (b"traceparent", b"00-%s-%s-01" % (TRACE, SPAN)),
        (b"tracestate", b"congo=t61rcWkgMzE"),
    ]
    out = propagate(headers, trace_id=TRACE, span_id=MINE, sampled=True)
    assert out == [
        (b"accept", b"*/*"),
        (b"tracestate", b"congo=t61rcWkgMzE"),
        (b"traceparent", b"00-%s-%s-01" % (TRACE, MINE)),
    ]
    assert extract(out) == TraceContext(TRACE, MINE, True)


def test_propagate_rewrites_b3_in_the_form_it_came_in() -> None:
    multi = [(b"X-B3-TraceId", TRACE), (b"X-B3-SpanId", SPAN), (b"X-B3-Sampled", b"1")]
    out = propagate(multi, trace_id=TRACE, span_id=MINE, sampled=True, b3="multi", parent_id=SPAN)
    assert sorted(out) == sorted(
        [
            (b"traceparent", b"00-%s-%s-01" % (TRACE, MINE)),
            (b"x-b3-traceid", TRACE),
            (b"x-b3-spanid", MINE),
            (b"x-b3-sampled", b"1"),
            (b"x-b3-parentspanid", SPAN),
        ]
    )
    single = propagate(
        [(b"b3", b"%s-%s-0" % (TRACE, SPAN))],
        trace_id=TRACE,
        span_id=MINE,
        sampled=False,
        b3="single",
        parent_id=SPAN,
    )
    assert (b"b3", b"%s-%s-0-%s" % (TRACE, MINE, SPAN)) in single
    assert (b"traceparent", b"00-%s-%s-00" % (TRACE, MINE)) in single
