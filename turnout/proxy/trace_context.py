"""Trace context on the wire: reading W3C ``traceparent`` or B3 from a request's raw headers,
and writing the proxy's own span into the headers it forwards (docs/tracing.md).

```
incoming raw headers ──extract()──> TraceContext(trace_id, span_id, sampled, b3)
                                        │  the proxy's span: same trace, its own span id
forwarded raw headers <──propagate()────┘  traceparent rewritten, tracestate kept,
                                           B3 rewritten in the form it came in
```

Pure stdlib over bytes, so it costs no import: only a proxy with ``--trace-otlp`` calls it,
once per request. Ids are lowercase hex bytes as they go on the wire (32 digits for a trace,
16 for a span); B3's 64-bit trace ids are widened to 128 bits with leading zeros, as the W3C
and B3 specifications both allow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

RawPairs = list[tuple[bytes, bytes]]

B3Form = Literal["", "single", "multi"]

_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_B3_ID = re.compile(rb"[0-9a-f]{16}|[0-9a-f]{32}")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16

_B3_MULTI = frozenset(
    (b"x-b3-traceid", b"x-b3-spanid", b"x-b3-parentspanid", b"x-b3-sampled", b"x-b3-flags")
)
_REPLACED = _B3_MULTI | {b"traceparent", b"b3"}
"""What `propagate` drops from the forwarded headers and writes again."""


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The trace a request belongs to and the span that sent it (the parent of the proxy's)."""

    trace_id: bytes
    """32 lowercase hex digits, never all zero."""
    span_id: bytes
    """16 lowercase hex digits, never all zero: the caller's span."""
    sampled: bool | None
    """The caller's decision; None: B3 without one (the proxy's sampler decides)."""
    b3: B3Form = ""
    """The B3 form the request carried, also beside a ``traceparent`` that won: the form
    `propagate` writes back ("": none, only ``traceparent`` goes on)."""


NONE: Literal["none"] = "none"
"""`read`: the request carries no trace header at all (the proxy's span may just be added)."""
INVALID: Literal["invalid"] = "invalid"
"""`read`: trace headers, none of them valid (`propagate` drops them)."""


def extract(headers: RawPairs) -> TraceContext | None:
    """The request's trace context: a valid ``traceparent`` first (W3C Trace Context, any
    version read as version 00), else single-header ``b3``, else ``x-b3-traceid`` and
    ``x-b3-spanid`` (with ``x-b3-sampled`` or ``x-b3-flags: 1``). None when there is no
    valid one: the proxy's span then starts a trace."""
    ctx = read(headers)
    return None if isinstance(ctx, str) else ctx


def read(headers: RawPairs) -> TraceContext | Literal["none", "invalid"]:
    """`extract`, telling apart a request with no trace header (`NONE`) from one whose
    trace headers are all invalid (`INVALID`)."""
    traceparent = single = None
    multi: dict[bytes, bytes] = {}
    for name, value in headers:
        lower = name.lower()
        if lower == b"traceparent":
            traceparent = value
        elif lower == b"b3":
            single = value
        elif lower in _B3_MULTI:
            multi[lower] = value
    if traceparent is not None and (ctx := _from_traceparent(traceparent.strip().lower())):
        form: B3Form = "single" if single is not None else "multi" if multi else ""
        return ctx if not form else TraceContext(ctx.trace_id, ctx.span_id, ctx.sampled, form)
    if single is not None and (ctx := _from_b3_single(single.strip().lower())):
        return ctx
    if multi and (ctx := _from_b3_multi(multi)):
        return ctx
    if traceparent is None and single is None and not multi:
        return NONE
    return INVALID


def traceparent(trace_id: bytes, span_id: bytes, sampled: bool) -> bytes:
    """A version 00 ``traceparent`` value."""
    return b"00-%s-%s-0%s" % (trace_id, span_id, b"1" if sampled else b"0")


def _from_traceparent(value: bytes) -> TraceContext | None:
    m = _TRACEPARENT.fullmatch(value)
    if m is None:
        return None
    version, trace_id, span_id, flags, rest = m.groups()
    if version == b"ff" or (version == b"00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id, span_id, bool(int(flags, 16) & 1))


def _b3_sampled(value: bytes | None) -> bool | None:
    if value in (b"1", b"d", b"true"):
        return True
    if value in (b"0", b"false"):
        return False
    return None


def _ids(trace_id: bytes, span_id: bytes) -> tuple[bytes, bytes] | None:
    if not _B3_ID.fullmatch(trace_id) or len(span_id) != 16 or not _B3_ID.fullmatch(span_id):
        return None
    trace_id = trace_id.rjust(32, b"0")
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id


def _from_b3_single(value: bytes) -> TraceContext | None:
    """``b3: {traceid}-{spanid}[-{sampled}[-{parentspanid}]]``; a lone ``0``/``1``/``d``
    (a decision without ids) is no context to continue."""
    parts = value.split(b"-")
    if len(parts) < 2 or len(parts) > 4:
        return None
    ids = _ids(parts[0], parts[1])
    if ids is None:
        return None
    sampled = _b3_sampled(parts[2]) if len(parts) > 2 else None
    return TraceContext(*ids, sampled, "single")


def _from_b3_multi(multi: dict[bytes, bytes]) -> TraceContext | None:
    ids = _ids(
        multi.get(b"x-b3-traceid", b"").strip().lower(),
        multi.get(b"x-b3-spanid", b"").strip().lower(),
    )
    if ids is None:
        return None
    sampled = _b3_sampled(multi.get(b"x-b3-sampled", b"").strip().lower())
    if multi.get(b"x-b3-flags", b"").strip() == b"1":
        sampled = True
    return TraceContext(*ids, sampled, "multi")


def propagate(
    headers: RawPairs,
    *,
    trace_id: bytes,
    span_id: bytes,
    sampled: bool,
    b3: B3Form = "",
    parent_id: bytes | None = None,
) -> RawPairs:
    """`headers` to forward with the proxy's span (`span_id`, in `trace_id`) as the
    upstream's parent: any ``traceparent``, ``b3`` and ``x-b3-*`` taken out, a version 00
    ``traceparent`` written, and B3 written again in the form `b3` names (the caller's
    span, `parent_id`, is B3's parent span id there). ``tracestate`` and the rest stay as they
    came, in order."""
    out = [(n, v) for n, v in headers if n.lower() not in _REPLACED]
    flag = b"1" if sampled else b"0"
    out.append((b"traceparent", traceparent(trace_id, span_id, sampled)))
    if b3 == "single":
        single = b"%s-%s-%s" % (trace_id, span_id, flag)
        out.append((b"b3", single if parent_id is None else b"%s-%s" % (single, parent_id)))
    elif b3 == "multi":
        out += (
            (b"x-b3-traceid", trace_id),
            (b"x-b3-spanid", span_id),
            (b"x-b3-sampled", flag),
        )
        if parent_id is not None:
            out.append((b"x-b3-parentspanid", parent_id))
    return out
