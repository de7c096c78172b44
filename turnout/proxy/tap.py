"""Tap: live request/response events, the way ``linkerd viz tap`` shows them.

::

    telemetry ──if hub.active: hub.publish(TapEvent)──> TapHub ──filter, rate limit──> Subscription
                                                                (bounded queue; full = drop)
    admin /tap ──hub.subscribe(TapFilter)──> async for event in sub ──> NDJSON or tap lines

The request path (`telemetry.Exchange`) publishes three events per request, all carrying the request's fields, so a
filter decides the same way for each of them:

* ``req`` when the request headers have been received (`latency_us`/`status` unset),
* ``rsp`` when the response headers are sent (`status`, `latency_us` = request init to
  response headers),
* ``end`` when the response stream ends (`duration_us` = response headers to end of stream,
  `response_bytes`, and `grpc_status` or `reset_error` when there is one).

Publishing never blocks and never raises: with no subscriber it is one list check (and the
request path skips building the event at all by testing ``hub.active`` first); with subscribers a
full queue drops the event and counts it. A subscription sees ``rsp``/``end`` only for the
requests whose ``req`` it was given, so rate limiting (`max_rps`, per request like Linkerd's
``--max-rps``) and drops never leave a response without its request.

What it deliberately does not do: no namespace/workload filter (a hub belongs to one proxy,
so they are implied), no header or body capture, and the JSON form is our flat event, not
Linkerd's nested ``-o json`` shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal

log = logging.getLogger(__name__)

TapKind = Literal["req", "rsp", "end"]

DEFAULT_TAP_QUEUE: Final = 1000
"""Events a subscriber may have waiting before further events are dropped."""
MAX_OPEN_REQUESTS: Final = 10_000
"""Request ids a subscriber remembers between ``req`` and ``end``; the oldest are forgotten."""

GRPC_CODE_NAMES: Final[tuple[str, ...]] = (
    *("OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound"),
    *("AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition"),
    *("Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss"),
    "Unauthenticated",
)
"""gRPC codes as Go's ``codes.Code.String()`` names them, which is what ``viz tap`` prints."""


def tap_id(base: int, stream: int) -> str:
    """Linkerd's event id: connection number ``:`` request number on that connection."""
    return f"{base}:{stream}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TapEvent:
    """One tap event; see the module docstring for when each kind is published."""

    kind: TapKind
    id: str
    """``<base>:<stream>``, from `tap_id`; the same for a request's three events."""
    direction: Literal["inbound", "outbound"]
    src: str
    """Client address ``ip:port``."""
    dst: str
    """Server address ``ip:port`` (for outbound, the endpoint picked)."""
    tls: str
    """Source peer's TLS status inbound, the destination's outbound (``true``, ``disabled``,
    or a no-TLS reason)."""
    method: str
    authority: str
    path: str
    route: str = ""
    """IR name of the matched rule; "" when none matched."""
    dst_namespace: str = ""
    """Namespace of the backend Service picked (outbound); "" when none."""
    dst_service: str = ""
    """Name of the backend Service picked (outbound); "" when none."""
    status: int | None = None
    """HTTP status; None on ``req``."""
    latency_us: int | None = None
    """``rsp``: microseconds from request init to response headers; None otherwise."""
    duration_us: int | None = None
    """``end``: microseconds from response headers to end of stream; None otherwise."""
    response_bytes: int | None = None
    """``end``: response body length in bytes; None otherwise."""
    grpc_status: int | None = None
    """``end``: gRPC status code when the response carried one."""
    reset_error: str = ""
    """``end``: why the stream was reset; "" when it ended cleanly."""


def format_tap_line(event: TapEvent, *, wide: bool = False) -> str:
    """The event as one ``linkerd viz tap`` line; `wide` appends ``rt_route=`` like ``-o wide``."""
    e = event
    proxy = "in " if e.direction == "inbound" else "out"  # "in " aligns with "out", as Linkerd
    head = f"{e.kind} id={e.id} proxy={proxy} src={e.src} dst={e.dst} tls={e.tls}"
    if e.kind == "req":
        line = f"{head} :method={e.method} :authority={e.authority} :path={e.path}"
    elif e.kind == "rsp":
        line = f"{head} :status={e.status} latency={e.latency_us}µs"
    else:
        if e.reset_error:
            head += f" reset-error={e.reset_error}"
        elif e.grpc_status is not None:
            head += f" grpc-status={grpc_code_name(e.grpc_status)}"
        line = f"{head} duration={e.duration_us}µs response-length={e.response_bytes}B"
    return f"{line} rt_route={e.route}" if wide and e.route else line


def grpc_code_name(code: int) -> str:
    """Go's name for a gRPC code; ``Code(N)`` for codes it does not know."""
    return GRPC_CODE_NAMES[code] if 0 <= code < len(GRPC_CODE_NAMES) else f"Code({code})"


def tap_json(event: TapEvent) -> dict[str, object]:
    """The event as a flat JSON object; unset fields are left out."""
    e = event
    out: dict[str, object] = {
        "type": e.kind,
        "id": e.id,
        "direction": e.direction,
        "src": e.src,
        "dst": e.dst,
        "tls": e.tls,
        "method": e.method,
        "authority": e.authority,
        "path": e.path,
    }
    if e.route:
        out["route"] = e.route
    if e.dst_service:
        out["dst_namespace"], out["dst_service"] = e.dst_namespace, e.dst_service
    optional: tuple[tuple[str, int | None], ...] = (
        ("status", e.status),
        ("latency_us", e.latency_us),
    )
    optional += (("duration_us", e.duration_us), ("bytes", e.response_bytes))
    optional += (("grpc_status", e.grpc_status),)
    out.update((k, v) for k, v in optional if v is not None)
    if e.reset_error:
        out["reset_error"] = e.reset_error
    return out


def format_tap_json(event: TapEvent) -> str:
    """`tap_json` serialized compactly on one line (no newline)."""
    return json.dumps(tap_json(event), separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class TapFilter:
    """Which requests a subscriber wants; empty fields match everything."""

    method: str = ""
    """Exact method, e.g. ``GET``."""
    authority: str = ""
    """Exact authority (Host), e.g. ``web.shop.svc.cluster.local:80``."""
    path_prefix: str = ""
    """Plain string prefix of the path."""
    direction: Literal["", "inbound", "outbound"] = ""
    max_rps: int = 0
    """Requests per second let through (``req`` events; their ``rsp``/``end`` follow);
    0 = no limit."""

    def matches(self, event: TapEvent) -> bool:
        return (
            (not self.method or event.method == self.method)
            and (not self.authority or event.authority == self.authority)
            and event.path.startswith(self.path_prefix)
            and (not self.direction or event.direction == self.direction)
        )


class Subscription:
    """One subscriber's bounded queue. Iterate it (``async for``) or `get`; use it as a
    context manager so it is unsubscribed however the consumer ends."""

    def __init__(
        self, hub: TapHub, flt: TapFilter, *, max_queue: int, clock: Callable[[], float]
    ) -> None:
        self.filter = flt
        self.dropped = 0
        """Events dropped because the queue was full."""
        self.closed = False
        self._hub, self._max, self._clock = hub, max_queue, clock
        self._buf: deque[TapEvent] = deque()
        self._ready = asyncio.Event()
        self._open: dict[str, None] = {}
        """Ids of admitted requests whose ``end`` has not come yet (insertion-ordered)."""
        self._tokens = float(flt.max_rps)
        self._refilled = clock()

    def offer(self, event: TapEvent) -> None:
        """Queue `event` if it passes the filter and there is room; never blocks."""
        if event.kind == "req":
            if not self.filter.matches(event) or not self._admit():
                return
        elif event.id not in self._open:
            return
        elif event.kind == "end":
            del self._open[event.id]
        if len(self._buf) >= self._max:
            self.dropped += 1
            return
        if event.kind == "req":
            self._open[event.id] = None
            if len(self._open) > MAX_OPEN_REQUESTS:
                del self._open[next(iter(self._open))]
        self._buf.append(event)
        self._ready.set()

    def _admit(self) -> bool:
        rate = self.filter.max_rps
        if rate <= 0:
            return True
        now = self._clock()
        self._tokens = min(float(rate), self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def get(self) -> TapEvent | None:
        """The next event; None once the subscription is closed and drained."""
        while not self._buf:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._buf.popleft()

    def close(self) -> None:
        """Unsubscribe; `get` returns what is queued, then None."""
        self._hub.unsubscribe(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> TapEvent:
        event = await self.get()
        if event is None:
            raise StopAsyncIteration
        return event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class TapHub:
    """Fan-out of tap events to subscribers. Single event loop; not thread-safe."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._subs: tuple[Subscription, ...] = ()
        self._clock = clock
        self._dropped_closed = 0
        self.active = False
        """True while anyone is subscribed: test it before building a `TapEvent`."""

    def subscribe(
        self, flt: TapFilter | None = None, *, max_queue: int = DEFAULT_TAP_QUEUE
    ) -> Subscription:
        sub = Subscription(self, flt or TapFilter(), max_queue=max_queue, clock=self._clock)
        self._subs = (*self._subs, sub)
        self.active = True
        log.debug("tap subscribed subscribers=%d", len(self._subs))
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub.closed:
            return
        sub.closed = True
        sub._ready.set()
        self._subs = tuple(s for s in self._subs if s is not sub)
        self._dropped_closed += sub.dropped
        self.active = bool(self._subs)
        log.debug("tap unsubscribed subscribers=%d dropped=%d", len(self._subs), sub.dropped)

    def publish(self, event: TapEvent) -> None:
        """Offer `event` to every subscriber; never blocks."""
        for sub in self._subs:
            sub.offer(event)

    def close(self) -> None:
        """Unsubscribe everyone (shutdown): their iterators end after draining."""
        for sub in self._subs:
            self.unsubscribe(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    @property
    def dropped(self) -> int:
        """Events dropped over the hub's lifetime, all subscribers together."""
        return self._dropped_closed + sum(s.dropped for s in self._subs)
