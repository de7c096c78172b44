"""`Tracer.start`: the sampling decision comes first (the incoming context's flag, else the
rate), a request that is not sampled gets its headers and no span, and a collector that is
down costs spans only (no socket of the test answers: port 9, discard, is closed here)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import cast

import pytest

from turnout.proxy.otlp import MAX_BATCH
from turnout.proxy.process import ProxyConfig, TraceConfig
from turnout.proxy.tracing import Record, RequestSpan, Tracer
from turnout.proxy.transport.messages import IncomingRequest, RequestBody

TRACE = b"4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = b"00f067aa0ba902b7"
DOWN = "127.0.0.1:9"


@pytest.fixture
def tracers() -> Iterator[dict[int, Tracer]]:
    """A tracer per rate (per million), made on first use, shut down after the test."""
    made: dict[int, Tracer] = {}

    class Tracers(dict[int, Tracer]):
        def __missing__(self, rate: int) -> Tracer:
            trace = TraceConfig(otlp=DOWN, sample_per_million=rate, service_name="web")
            made[rate] = self[rate] = Tracer(ProxyConfig(namespace="shop", trace=trace))
            return made[rate]

    yield Tracers()
    for tracer in made.values():
        tracer.shutdown()


def request(*headers: tuple[bytes, bytes]) -> IncomingRequest:
    return IncomingRequest(
        "GET", "/", "/", "", [(b"host", b"web.shop"), *headers], "web.shop", "1.1", True,
        cast(RequestBody, None), ("127.0.0.1", 1), ("127.0.0.1", 4140), None,
    )  # fmt: skip


def sent(req: IncomingRequest, name: bytes) -> list[bytes]:
    return [v for n, v in req.raw_headers if n == name]


def test_rate_zero_starts_an_unsampled_trace_and_records_nothing(
    tracers: dict[int, Tracer],
) -> None:
    req = request()
    assert tracers[0].start(req, "outbound") is None
    (traceparent,) = sent(req, b"traceparent")
    version, trace_id, span_id, flags = traceparent.split(b"-")
    assert (version, flags, len(trace_id), len(span_id)) == (b"00", b"00", 32, 16)


def test_the_parents_flag_wins_over_the_rate(tracers: dict[int, Tracer]) -> None:
    req = request((b"traceparent", b"00-%s-%s-01" % (TRACE, CALLER)))
    span = tracers[0].start(req, "inbound")
    assert isinstance(span, RequestSpan)
    assert (span.trace_id, span.parent_id) == (TRACE, CALLER)
    assert sent(req, b"traceparent") == [b"00-%s-%s-01" % (TRACE, span.span_id)]

    req = request((b"traceparent", b"00-%s-%s-00" % (TRACE, CALLER)))
    assert tracers[1_000_000].start(req, "inbound") is None
    ((_, trace_id, span_id, flags),) = (v.split(b"-") for v in sent(req, b"traceparent"))
    assert (trace_id, flags) == (TRACE, b"00") and span_id != CALLER


@pytest.mark.parametrize(("rate", "sampled"), [(0, b"0"), (1_000_000, b"1")])
def test_b3_without_a_decision_gets_the_rates_and_passes_it_on(
    tracers: dict[int, Tracer], rate: int, sampled: bytes
) -> None:
    req = request((b"x-b3-traceid", TRACE), (b"x-b3-spanid", CALLER))
    span = tracers[rate].start(req, "outbound")
    assert (span is not None) is (sampled == b"1")
    assert sent(req, b"x-b3-sampled") == [sampled]
    assert sent(req, b"x-b3-parentspanid") == [CALLER]


def test_a_collector_that_is_down_loses_the_spans_and_says_so_once(
    tracers: dict[int, Tracer], caplog: pytest.LogCaptureFixture
) -> None:
    tracer = tracers[1_000_000]
    span = tracer.start(request(), "outbound")
    assert span is not None
    exporter = tracer.exporter
    with caplog.at_level(logging.WARNING, logger="turnout.proxy.otlp"):
        for _ in range(MAX_BATCH + 1):  # two batches: two POSTs tried, each refused
            exporter.add(span_record(span))
        tracer.shutdown()  # drains the queue
    assert exporter.exported == 0 and not exporter.queue
    (warning,) = caplog.records
    assert "trace export to 127.0.0.1:9 failed" in warning.getMessage()


def span_record(span: RequestSpan) -> Record:
    return (
        span.trace_id,
        span.span_id,
        None,
        span.kind,
        1,
        2,
        "GET",
        "web.shop",
        "/",
        "outbound",
        0,
        200,
        "",
        "",
        "",
        "",
    )


def test_an_invalid_traceparent_is_replaced_by_a_new_trace(tracers: dict[int, Tracer]) -> None:
    req = request((b"traceparent", b"00-%s-%s-01" % (b"0" * 32, CALLER)))
    assert tracers[0].start(req, "outbound") is None
    (traceparent,) = sent(req, b"traceparent")
    assert b"0" * 32 not in traceparent and traceparent.endswith(b"-00")
