"""OTLP/HTTP with JSON encoding: the proxy's finished spans, batched by a thread of their own
and POSTed to a collector's ``/v1/traces`` (docs/tracing.md).

```
event loop: SpanExporter.add(record) ──deque (bounded)──> export thread: every second, or at
                                                          MAX_BATCH queued: encode(record)
                                                          for each, one JSON body, POST
                                                          http://HOST:PORT/v1/traces
```

Stdlib only (`json`, `http.client`, `threading`): OTLP's protobuf classes are not needed,
so the proxy does not depend on ``opentelemetry-proto``, whose ``opentelemetry/proto``
modules another dependency (``xds-protos``) also ships in an older version. The OTLP
specification allows JSON over HTTP (protobuf's JSON mapping, ids as hex, enums as
numbers, 64-bit integers as strings); every OpenTelemetry collector accepts it on port 4318.

The event loop's share is one ``deque.append`` per sampled request: records stay plain
tuples until the thread encodes them. A full queue drops its oldest records and a collector
that is down or refuses a batch loses that batch (logged once per outage; no retries but
one: a kept-alive connection the collector closed while idle is opened again), never a
request.
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from json.encoder import encode_basestring_ascii
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")

PATH = "/v1/traces"
"""OTLP/HTTP's traces path."""
MAX_QUEUE = 2048
"""Records held for export at most (the SDK's `BatchSpanProcessor` default); past it the
oldest go."""
MAX_BATCH = 512
"""Records in one request at most; this many queued wakes the thread before its delay."""

SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2
FLAGS_SAMPLED = 0x101
"""Span ``flags``: W3C sampled, and bit 8 (the next bit, "is remote", is known)."""
FLAGS_REMOTE_PARENT = 0x301
"""... and the parent is remote (a proxy's parent always is: another process)."""

Attribute = tuple[str, str | int]
json_str: Callable[[str], str] = encode_basestring_ascii
"""A JSON string literal (C, no options to parse: the per-span encoding calls it often)."""
_str = json_str
# The JSON written, as templates (braces read better with %):
_INT_ATTR = '{"key":%s,"value":{"intValue":"%d"}}'
_STR_ATTR = '{"key":%s,"value":{"stringValue":%s}}'
_PARENT = ',"parentSpanId":"%s"'
_STATUS_ERROR = ',"status":{"code":2,"message":%s}'
_SPAN = (
    '{"traceId":"%s","spanId":"%s"%s,"flags":%d,"name":%s,"kind":%d,'
    '"startTimeUnixNano":"%d","endTimeUnixNano":"%d","attributes":%s%s}'
)
_HEAD = (
    '{"resourceSpans":[{"resource":{"attributes":%s},"scopeSpans":[{"scope":{"name":%s},"spans":['
)
_TAIL = "]}]}]}"


def attributes_json(attrs: Sequence[Attribute]) -> str:
    """A JSON array of OTLP ``KeyValue``s: ints as ``intValue`` (a string, as OTLP/JSON
    writes 64-bit integers), anything else as ``stringValue``."""
    parts = []
    for key, value in attrs:
        if isinstance(value, int) and not isinstance(value, bool):
            parts.append(_INT_ATTR % (_str(key), value))
        else:
            parts.append(_STR_ATTR % (_str(key), _str(str(value))))
    return "[" + ",".join(parts) + "]"


def span_json(
    *,
    trace_id: bytes,
    span_id: bytes,
    parent_id: bytes | None,
    name: str,
    kind: int,
    start_ns: int,
    end_ns: int,
    attributes: str,
    error: str | None,
) -> str:
    """One OTLP ``Span`` as JSON; ids are lowercase hex bytes (as on the wire in
    ``traceparent``); `attributes`: a JSON array (`attributes_json`, or the same written
    by hand); `error`: None for status unset, else ERROR with that message."""
    parent = "" if parent_id is None else _PARENT % parent_id.decode()
    flags = FLAGS_SAMPLED if parent_id is None else FLAGS_REMOTE_PARENT
    status = "" if error is None else _STATUS_ERROR % _str(error)
    return _SPAN % (
        trace_id.decode(),
        span_id.decode(),
        parent,
        flags,
        _str(name),
        kind,
        start_ns,
        end_ns,
        attributes,
        status,
    )


class SpanExporter(Generic[R]):
    """Queue of finished spans (`R`: whatever the caller records) and the thread that
    encodes them with `encode` (to `span_json`'s output) and exports them."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        resource: Mapping[str, str | int],
        scope: str,
        encode: Callable[[R], str],
        delay_s: float,
        timeout_s: float,
    ) -> None:
        self.host, self.port = host, port
        self.queue: deque[R] = deque(maxlen=MAX_QUEUE)
        """Appended by the event loop, drained by the thread (deque is thread-safe)."""
        self.encode = encode
        self.delay_s, self.timeout_s = delay_s, timeout_s
        self.exported = 0
        """Records the collector accepted (a 2xx), for tests and logs."""
        self._head = _HEAD % (attributes_json(list(resource.items())), _str(scope))
        self._conn: http.client.HTTPConnection | None = None
        self._failing = False
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="otlp-export", daemon=True)
        self._thread.start()

    def add(self, record: R) -> None:
        """One finished span (the event loop's only call)."""
        queue = self.queue
        queue.append(record)
        if len(queue) >= MAX_BATCH:
            self._wake.set()

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Export what is queued and stop the thread (blocking: call it off the loop)."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.delay_s)
            self._wake.clear()
            stopping = self._stopping
            while self.queue:
                self._export(self._batch())
            if stopping:
                if self._conn is not None:
                    self._conn.close()
                return

    def _batch(self) -> list[R]:
        queue = self.queue
        batch: list[R] = []
        while queue and len(batch) < MAX_BATCH:
            batch.append(queue.popleft())
        return batch

    def _export(self, batch: list[R]) -> None:
        body = (self._head + ",".join(map(self.encode, batch)) + _TAIL).encode()
        while True:
            reused = self._conn is not None
            try:
                status = self._post(body)
                break
            except (OSError, http.client.HTTPException) as exc:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if reused and not isinstance(exc, TimeoutError):
                    continue  # the collector closed the idle connection: once more, anew
                self._failed(f"{type(exc).__name__}: {exc}", len(batch))
                return
        if 200 <= status < 300:
            self.exported += len(batch)
            if self._failing:
                log.info("trace export to %s:%d works again", self.host, self.port)
            self._failing = False
        else:
            self._failed(f"HTTP {status}", len(batch))

    def _post(self, body: bytes) -> int:
        conn = self._conn
        if conn is None:
            conn = self._conn = http.client.HTTPConnection(
                self.host, self.port, timeout=self.timeout_s
            )
        conn.request("POST", PATH, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        if resp.will_close:
            conn.close()
            self._conn = None
        return resp.status

    def _failed(self, reason: str, lost: int) -> None:
        if not self._failing:
            log.warning(
                "trace export to %s:%d failed (%s): %d spans dropped; further failures"
                " are not logged until it works again",
                self.host,
                self.port,
                reason,
                lost,
            )
        self._failing = True
