"""``--trace-otlp``: one OpenTelemetry span per request per proxy, exported over OTLP/gRPC
(docs/tracing.md).

```
Exchange(...) ──Tracer.start(req)──> RequestSpan: parent from traceparent / B3, the forwarded
                                      headers rewritten to name this span (trace_context.py)
Exchange.backend / .retry ─────────> cluster, retries
Exchange.finish ──RequestSpan.end──> attributes, ERROR on 5xx ──BatchSpanProcessor──> collector
```

Imported only by a proxy whose `ProxyConfig.trace` is set (`runner.build_proxy`): the
OpenTelemetry SDK and grpc load nowhere else, and a proxy without tracing pays one ``is
None`` per request. The processor queues finished spans and a thread of the SDK exports
them, so the event loop never waits for the collector; a collector that is down loses
spans, never requests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from turnout.proxy.trace_context import extract, propagate

if TYPE_CHECKING:
    from turnout.proxy.actions import Backend
    from turnout.proxy.process import ProxyConfig
    from turnout.proxy.telemetry import Exchange
    from turnout.proxy.transport.messages import IncomingRequest

EXPORT_DELAY_MS = 1000
"""How long finished spans wait in the queue before a batch goes out (the SDK's default
is 5 s; a second keeps traces fresh at the same batch size)."""

EXPORT_TIMEOUT_S = 5
"""One export's deadline, retries included (the SDK's default is 10 s): a collector that is
down costs the exporter's thread this long per batch, and a stopping proxy at most this per
batch still queued (the SDK stops flushing after 30 s in all)."""

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_KIND = {"inbound": SpanKind.SERVER, "outbound": SpanKind.CLIENT}


class Tracer:
    """The proxy's spans: one `TracerProvider` (resource: the workload), its sampler and its
    OTLP exporter."""

    def __init__(self, config: ProxyConfig) -> None:
        trace = config.trace
        assert trace is not None
        resource = {"service.name": trace.service_name, "k8s.namespace.name": config.namespace}
        if config.pod:
            resource["k8s.pod.name"] = config.pod
        self.ratio = TraceIdRatioBased(trace.sample_per_million / 1_000_000)
        """New traces' sampler; also decides for a B3 context that carries no decision."""
        self.provider = TracerProvider(
            resource=Resource.create(resource), sampler=ParentBased(root=self.ratio)
        )
        exporter = OTLPSpanExporter(
            endpoint=f"http://{trace.otlp}", insecure=True, timeout=EXPORT_TIMEOUT_S
        )
        self.provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=EXPORT_DELAY_MS)
        )
        self.tracer = self.provider.get_tracer("turnout.proxy")

    def start(self, req: IncomingRequest, direction: Literal["inbound", "outbound"]) -> RequestSpan:
        """The request's span, child of the trace context it carries (if any); the request's
        headers now carry this span as the upstream's parent, sampled or not."""
        incoming = extract(req.raw_headers)
        context = None
        if incoming is not None:
            trace_id = int(incoming.trace_id, 16)
            sampled = incoming.sampled
            if sampled is None:
                result = self.ratio.should_sample(None, trace_id, "")
                sampled = result.decision is Decision.RECORD_AND_SAMPLE
            parent = SpanContext(
                trace_id,
                int(incoming.span_id, 16),
                is_remote=True,
                trace_flags=_SAMPLED if sampled else _NOT_SAMPLED,
            )
            context = trace_api.set_span_in_context(NonRecordingSpan(parent))
        span = self.tracer.start_span(
            f"{req.method} {req.host}", context=context, kind=_KIND[direction]
        )
        own = span.get_span_context()
        req.replace_headers(
            propagate(
                req.raw_headers,
                trace_id=b"%032x" % own.trace_id,
                span_id=b"%016x" % own.span_id,
                sampled=own.trace_flags.sampled,
                b3="" if incoming is None else incoming.b3,
                parent_id=None if incoming is None else incoming.span_id,
            )
        )
        return RequestSpan(span, direction)

    def shutdown(self) -> None:
        """Export what is queued, then stop the exporter's thread (the proxy is stopping)."""
        self.provider.shutdown()


class RequestSpan:
    """One request's span while it runs: what `Exchange` learns on the way, set at the end."""

    __slots__ = ("cluster", "direction", "retries", "span")

    def __init__(self, span: trace_api.Span, direction: str) -> None:
        self.span = span
        self.direction = direction
        self.cluster = ""
        self.retries = 0

    def backend(self, backend: Backend) -> None:
        self.cluster = backend.cluster

    def end(self, ex: Exchange, status: int | None, error: str) -> None:
        """Attributes from the finished exchange; status ERROR on a 5xx, or on an exchange
        that ended without one (`error`: the transport's reason)."""
        span = self.span
        if not span.is_recording():
            span.end()
            return
        req = ex.request
        span.set_attribute("http.request.method", req.method)
        span.set_attribute("url.path", req.path)
        span.set_attribute("server.address", req.host)
        span.set_attribute("turnout.direction", self.direction)
        span.set_attribute("turnout.retries", self.retries)
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        decision = ex.decision
        if decision is not None and decision.route is not None:
            span.set_attribute("turnout.route", decision.route.source)
            span.set_attribute("turnout.route.rule", decision.route.rule)
        if self.cluster:
            span.set_attribute("turnout.backend", self.cluster)
        if error:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, error))
        elif status is None or status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()
