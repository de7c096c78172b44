"""``--trace-otlp``: one OpenTelemetry span per sampled request per proxy, exported over
OTLP/HTTP as JSON (docs/tracing.md).

```
TracedExchange(...) ──Tracer.start(req)──> sampled? decided first, from the incoming
  │  (Telemetry.exchange                   traceparent / B3 or the rate; the forwarded
  │   with tracing on)                     headers name this proxy's span either way
  │                      ├─ not sampled ─> span None: nothing more per request
  │                      └─ sampled ─────> RequestSpan (ids, start time)
  ├─ .backend / .retry ───────────────────> cluster, retries
  └─ .finish ──RequestSpan.end──> one tuple ──otlp.SpanExporter──> thread: JSON, POST
```

Imported only by a proxy whose `ProxyConfig.trace` is set (`runner.build_proxy`): a proxy
without tracing makes plain `Exchange`s (`Telemetry.exchange`), which know no span: no test
per request. The OpenTelemetry SDK gives the resource
(``service.name`` and the rest, ``OTEL_RESOURCE_ATTRIBUTES`` honoured) and the ratio
sampler's bound, once at start; per request the proxy builds no SDK object: a sampled
request's span is a slotted object here and one tuple in the exporter's queue, a request
that is not sampled gets its ids and headers only. The export thread encodes and sends, so
the event loop never waits for the collector; a collector that is down loses spans, never
requests.
"""

from __future__ import annotations

import time
from random import getrandbits
from typing import TYPE_CHECKING, Literal

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from turnout.proxy.otlp import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    SpanExporter,
    json_str,
    span_json,
)
from turnout.proxy.process import Address
from turnout.proxy.telemetry import Exchange, Telemetry
from turnout.proxy.trace_context import NONE, propagate, read, traceparent

if TYPE_CHECKING:
    from turnout.proxy.actions import Backend, Decision
    from turnout.proxy.process import ProxyConfig
    from turnout.proxy.transport.messages import IncomingRequest, TlsStatus

EXPORT_DELAY_S = 1.0
"""How long finished spans wait in the queue before a batch goes out (the SDK's default
is 5 s; a second keeps traces fresh at the same batch size)."""

EXPORT_TIMEOUT_S = 5.0
"""One export's socket deadline: a collector that hangs costs the exporter's thread this
long per batch, and a stopping proxy at most this per batch still queued."""

SCOPE = "turnout.proxy"
_LOW_64 = (1 << 64) - 1
_KIND = {"inbound": SPAN_KIND_SERVER, "outbound": SPAN_KIND_CLIENT}

Record = tuple[
    bytes,  # trace id (32 hex digits)
    bytes,  # span id (16 hex digits)
    bytes | None,  # parent span id: the caller's (None: this span started the trace)
    int,  # kind
    int,  # start, ns since the epoch
    int,  # end
    str,  # method
    str,  # host
    str,  # path
    str,  # direction
    int,  # retries
    int | None,  # status answered
    str,  # route ("" when none matched)
    str,  # route rule
    str,  # backend cluster
    str,  # error: the transport's reason, "" when none
]
"""A finished span as the event loop leaves it: plain values, encoded by the thread."""


class TracedExchange(Exchange):
    """`Exchange` with the request's span: what `Telemetry.exchange` makes with tracing on
    (so a proxy without it has no span to test for). The span is None when not sampled."""

    __slots__ = ("span",)

    def __init__(
        self,
        owner: Telemetry,
        direction: Literal["inbound", "outbound"],
        request: IncomingRequest,
        decision: Decision | None,
        start: float,
        target: tuple[str, int] | None,
        authority: str,
    ) -> None:
        tracer = owner.tracer
        assert tracer is not None
        self.span = tracer.start(request, direction)
        super().__init__(owner, direction, request, decision, start, target, authority)

    def backend(self, backend: Backend) -> None:
        super().backend(backend)
        if self.span is not None:
            self.span.cluster = backend.cluster

    def routed(self, backend: Backend, addr: tuple[str, int], tls: TlsStatus) -> None:
        super().routed(backend, addr, tls)
        if self.span is not None:
            self.span.cluster = backend.cluster

    def retry(self, *, status: int | None, error: Exception | None) -> None:
        super().retry(status=status, error=error)
        if self.span is not None:
            self.span.retries += 1

    def abandon(self) -> None:
        """The client left: the span ends as an error (``error.type`` ``client_left``)."""
        super().abandon()
        span, self.span = self.span, None
        if span is not None:
            span.end(self, None, "client_left")

    def finish(
        self,
        status: int | None,
        *,
        error: str = "",
        grpc_status: int | None = None,
        bytes_sent: int = 0,
    ) -> None:
        span, self.span = self.span, None
        if span is not None:
            span.end(self, status, error)
        super().finish(status, error=error, grpc_status=grpc_status, bytes_sent=bytes_sent)


class Tracer:
    """The proxy's sampler (decided per request before anything is built) and its spans'
    exporter."""

    exchange = TracedExchange

    def __init__(self, config: ProxyConfig) -> None:
        trace = config.trace
        assert trace is not None
        attrs = {"service.name": trace.service_name, "k8s.namespace.name": config.namespace}
        if config.pod:
            attrs["k8s.pod.name"] = config.pod
        resource = Resource.create(attrs).attributes
        self.bound = TraceIdRatioBased.get_bound_for_rate(trace.sample_per_million / 1_000_000)
        """The SDK's ratio sampler: a new trace (or a B3 one without a decision) is sampled
        when its id's low 64 bits are below this (0: never; 2**64: always)."""
        collector = Address.parse(trace.otlp)
        self.exporter: SpanExporter[Record] = SpanExporter(
            collector.host,
            collector.port,
            resource={k: v for k, v in resource.items() if isinstance(v, str | int)},
            scope=SCOPE,
            encode=_Encoder(),
            delay_s=EXPORT_DELAY_S,
            timeout_s=EXPORT_TIMEOUT_S,
        )

    def start(
        self, req: IncomingRequest, direction: Literal["inbound", "outbound"]
    ) -> RequestSpan | None:
        """Decide whether the request is sampled (its trace context's flag, else the
        rate), give it this proxy's span id in the headers it forwards, and return the
        span to fill in, or None when it is not sampled."""
        headers = req.raw_headers
        incoming = read(headers)
        span_id = b"%016x" % (getrandbits(64) or 1)
        parent = None
        if isinstance(incoming, str):
            number = getrandbits(128) or 1
            trace_id = b"%032x" % number
            sampled = number & _LOW_64 < self.bound
            if incoming is NONE:  # the common case: one header more, nothing to take out
                req.add_header(b"traceparent", traceparent(trace_id, span_id, sampled))
            else:
                req.replace_headers(
                    propagate(headers, trace_id=trace_id, span_id=span_id, sampled=sampled)
                )
        else:
            trace_id = incoming.trace_id
            said = incoming.sampled
            sampled = int(trace_id[16:], 16) < self.bound if said is None else said
            parent = incoming.span_id
            req.replace_headers(
                propagate(
                    headers,
                    trace_id=trace_id,
                    span_id=span_id,
                    sampled=sampled,
                    b3=incoming.b3,
                    parent_id=parent,
                )
            )
        if not sampled:
            return None
        return RequestSpan(self.exporter, trace_id, span_id, parent, _KIND[direction], direction)

    def shutdown(self) -> None:
        """Export what is queued, then stop the exporter's thread (the proxy is stopping;
        blocking: not on the event loop)."""
        self.exporter.shutdown()


class RequestSpan:
    """One sampled request's span while it runs: what `Exchange` learns on the way."""

    __slots__ = (
        "cluster",
        "direction",
        "exporter",
        "kind",
        "parent_id",
        "retries",
        "span_id",
        "start_ns",
        "trace_id",
    )

    def __init__(
        self,
        exporter: SpanExporter[Record],
        trace_id: bytes,
        span_id: bytes,
        parent_id: bytes | None,
        kind: int,
        direction: str,
    ) -> None:
        self.exporter = exporter
        self.trace_id, self.span_id, self.parent_id = trace_id, span_id, parent_id
        self.kind, self.direction = kind, direction
        self.start_ns = time.time_ns()
        self.cluster = ""
        self.retries = 0

    def end(self, ex: Exchange, status: int | None, error: str) -> None:
        """The finished exchange into the exporter's queue (`error`: the transport's
        reason when it ended without an answer)."""
        req, decision = ex.request, ex.decision
        route = decision.route if decision is not None else None
        self.exporter.add(
            (
                self.trace_id,
                self.span_id,
                self.parent_id,
                self.kind,
                self.start_ns,
                time.time_ns(),
                req.method,
                req.host,
                req.path,
                self.direction,
                self.retries,
                status,
                "" if route is None else route.source,
                "" if route is None else route.rule,
                self.cluster,
                error,
            )
        )


_ATTRS = (
    '[{"key":"http.request.method","value":{"stringValue":%s}},'
    '{"key":"url.path","value":{"stringValue":%s}},'
    '{"key":"server.address","value":{"stringValue":%s}},'
    '{"key":"turnout.direction","value":{"stringValue":"%s"}},'
    '{"key":"turnout.retries","value":{"intValue":"%d"}}'
)
_STATUS = ',{"key":"http.response.status_code","value":{"intValue":"%d"}}'
_ROUTE = (
    ',{"key":"turnout.route","value":{"stringValue":%s}},'
    '{"key":"turnout.route.rule","value":{"stringValue":%s}}'
)
_BACKEND = ',{"key":"turnout.backend","value":{"stringValue":%s}}'
_ERROR = ',{"key":"error.type","value":{"stringValue":%s}}'


_CACHED = 1024
"""Distinct request shapes whose encoded attributes `_Encoder` keeps (then it starts over)."""


class _Encoder:
    """Records into OTLP spans, on the export thread only. Most requests repeat a shape
    (method, host, path, route, backend, status...): its attributes are encoded once."""

    __slots__ = ("shapes",)

    def __init__(self) -> None:
        self.shapes: dict[tuple[object, ...], tuple[str, str, str | None]] = {}

    def __call__(self, r: Record) -> str:
        shape = r[6:]
        known = self.shapes.get(shape)
        if known is None:
            if len(self.shapes) >= _CACHED:
                self.shapes.clear()
            known = self.shapes[shape] = _attributes(r)
        attrs, name, failed = known
        return span_json(
            trace_id=r[0],
            span_id=r[1],
            parent_id=r[2],
            name=name,
            kind=r[3],
            start_ns=r[4],
            end_ns=r[5],
            attributes=attrs,
            error=failed,
        )


def _attributes(r: Record) -> tuple[str, str, str | None]:
    """A record's attributes (JSON), span name and status (None: unset, else ERROR's
    message): attributes named as OpenTelemetry's HTTP conventions and ``turnout.*``;
    ERROR on a 5xx, or on an exchange that ended without an answer."""
    method, host, path, direction, retries, status, route, rule, cluster, error = r[6:]
    attrs = _ATTRS % (json_str(method), json_str(path), json_str(host), direction, retries)
    if status is not None:
        attrs += _STATUS % status
    if route:
        attrs += _ROUTE % (json_str(route), json_str(rule))
    if cluster:
        attrs += _BACKEND % json_str(cluster)
    if error:
        attrs += _ERROR % json_str(error)
    failed = error if error else "" if status is None or status >= 500 else None
    return attrs + "]", f"{method} {host}", failed
