"""What the request path reports, in one place: metrics (Linkerd's families) and tap events.

```
Handler ── Exchange(telemetry, ...) ──> one per request (the Call reports into it), tap `req`
   .backend(b) .endpoint(addr, tls)  who serves it (dst labels, target_addr, tls labels);
   .routed(b, addr, tls)             both in one
   .attempt(status, error=...)       each try: route_actual_*, backend_* (policy families)
   .retry(...) .retry_skipped()      route retry counters
   .retry_success() .retry_limit_exceeded()
   .response_head(status)            response latency (time to headers), tap `rsp`
   .answered(status, now)            attempt + response_head in one (a try not retried)
   .finish(status, error=...)        request/response counters, route and policy series, tap `end`
   .abandon()                        the client left: the tries made still count
```

TLS labels (``tls``, then ``client_id``, ``server_id`` or ``no_tls_reason``) come from a
`TlsStatus` made once per connection (inbound: `IncomingRequest.peer_tls`, set by the
listener at accept) or per endpoint identity (outbound: `outbound_tls.server_tls`, given to
`endpoint`); the status is one more element of the cache keys, never a string built per
request. Tap prints it as Linkerd does: ``tls=true`` or the reason (``disabled``).

The ``authority`` an `Exchange` is given is already bounded (the handler's, from the table:
`RuntimeTable.authority_label`); it, not the Host header, keys every cache here.
Label keys are cached by `ProxyMetrics`, so a request costs a few dictionary hits and
integer increments; tap events are only built while someone is tapping. `finish` is
idempotent: the first call counts, later ones are ignored. A request answered by its first
and only try (the common case) is counted at `finish` in one `PlainTally` cell, try and
request together; `abandon()` (the client left) still counts what was tried.
"""

from __future__ import annotations

import errno
import itertools
import logging
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from turnout.proxy.actions import Backend, Decision
from turnout.proxy.families import (
    REQUEST_TIMEOUT,
    BackendKey,
    Direction,
    HttpKey,
    PolicyRouteKey,
    RouteKey,
    TcpKey,
)
from turnout.proxy.metrics import ProxyMetrics
from turnout.proxy.registry import LATENCY_BOUNDS_MS
from turnout.proxy.tap import TapEvent, TapHub, tap_id
from turnout.proxy.transport.messages import (
    TLS_DISABLED,
    ConnectionInfo,
    IncomingRequest,
    TlsStatus,
)

if TYPE_CHECKING:
    from turnout.proxy.tracing import Tracer

log = logging.getLogger(__name__)

_NO_ADDR = ("0.0.0.0", 0)
_NO_DST = ("", "", 0)
_TAP_BASE = itertools.count(1)
_COUNTED = -1
"""`Exchange._tried` once the tries are counted one by one (a retry, an error)."""


def tap_tls(status: TlsStatus) -> str:
    """A status as ``linkerd viz tap`` prints it: ``true``, the no-TLS reason, ``disabled``."""
    tls, name, value = status
    return value if name == "no_tls_reason" else tls


def _addr(addr: tuple[str, int]) -> str:
    return f"{addr[0]}:{addr[1]}"


MAX_CACHED_KEYS = 65_536
"""Key bundles cached (by authority label and route or endpoint); past this a cache starts
over. The labels are bounded by the table (`Exchange`'s `authority`), so this is a backstop."""


class _RouteKeys:
    """The metric keys every request of one route and Host needs, built once."""

    __slots__ = ("backends", "policy", "route")

    def __init__(self, route: RouteKey, policy: PolicyRouteKey) -> None:
        self.route = route
        self.policy = policy
        self.backends: dict[tuple[str, str, int], BackendKey] = {}


class Telemetry:
    """Shared by every request of one proxy."""

    __slots__ = (
        "clock",
        "exchange",
        "http_keys",
        "inbound_authority",
        "metrics",
        "route_keys",
        "tallies",
        "tap",
        "tracer",
    )

    def __init__(
        self,
        metrics: ProxyMetrics,
        tap: TapHub,
        *,
        clock: Callable[[], float] = time.monotonic,
        tracer: Tracer | None = None,
    ) -> None:
        self.metrics = metrics
        self.tap = tap
        self.clock = clock
        self.tracer = tracer
        """``--trace-otlp`` (`tracing.py`); None: tracing off."""
        self.exchange: type[Exchange] = Exchange if tracer is None else tracer.exchange
        """What the handler makes per request: `Exchange`, or with tracing its subclass that
        also keeps the span (`tracing.TracedExchange`), so tracing off costs no test."""
        # Label keys by what determines them, so a request costs dictionary hits only.
        self.http_keys: dict[tuple[object, ...], HttpKey] = {}
        self.route_keys: dict[tuple[str, str, str, str], _RouteKeys] = {}
        self.tallies = metrics.tallies
        self.inbound_authority = metrics.inbound_authority

    def http_key(self, ex: Exchange) -> HttpKey:
        ns, svc, _ = dst = ex.dst
        ck = (ex.direction, ex.authority, ex.target, dst, ex.tls)
        key = self.http_keys.get(ck)
        if key is None:
            if len(self.http_keys) > MAX_CACHED_KEYS:
                self.http_keys.clear()
            key = self.http_keys[ck] = self.metrics.http(
                direction=ex.direction,
                authority=ex.authority,
                target_addr=ex.target,
                dst_namespace=ns,
                dst_service=svc,
                tls=ex.tls,
            )
        return key

    def keys_for(
        self, direction: Literal["inbound", "outbound"], host: str, decision: Decision
    ) -> _RouteKeys:
        """The route-level keys of requests for `host` (the authority label, not the Host
        header) that reached `decision`'s route."""
        route = decision.route
        assert route is not None
        ck = (direction, host, route.rule, route.source)
        keys = self.route_keys.get(ck)
        if keys is None:
            if len(self.route_keys) > MAX_CACHED_KEYS:
                self.route_keys.clear()
            keys = self.route_keys[ck] = _RouteKeys(
                self.metrics.route(direction=direction, dst=host, rt_route=route.rule),
                self._new_policy_key(route.source, host),
            )
        return keys

    def _new_policy_key(self, source: str, host: str) -> PolicyRouteKey:
        kind, _, rest = source.partition("/")
        route_ns, _, route_name = rest.partition("/")
        svc, _, port = host.partition(":")
        parts = svc.split(".")
        parent_ns = parts[1] if len(parts) > 1 else route_ns
        parent_name = parts[0]
        if svc[:1].isdigit():  # an endpoint's address (IPv4)
            parent_ns, parent_name = route_ns, svc
        return self.metrics.policy_route(
            parent_namespace=parent_ns,
            parent_name=parent_name,
            parent_port=int(port) if port.isdigit() else 80,
            route_namespace=route_ns,
            route_name=route_name,
            route_kind=kind,
        )


class Exchange:
    """One request's report; see the module docstring for the call order."""

    __slots__ = (
        "_done",
        "_keys",
        "_tried",
        "authority",
        "decision",
        "direction",
        "dst",
        "head_at",
        "owner",
        "request",
        "start",
        "status",
        "tap_id",
        "target",
        "tls",
    )

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
        """`target`: where the request goes, when known from the start (inbound: the app;
        None: the listener's address inbound, else set by `endpoint`). Positional on the
        request path: a keyword to a class call costs a dict per request. `authority`: the
        ``authority`` (and route ``dst``) label, bounded by the table (outbound: the domain
        the Host matched, or ``unknown``; inbound: the Host, kept only when the metrics
        keep inbound authorities)."""
        self.owner = owner
        inbound = direction == "inbound"
        if inbound:
            if not owner.inbound_authority:
                authority = ""
            if target is None:
                target = request.local
            self.tls: TlsStatus = request.peer_tls
            """Mesh TLS of the connection (inbound) or of the endpoint tried (`endpoint`)."""
        else:
            if target is None:
                target = _NO_ADDR
            self.tls = TLS_DISABLED
        self.authority = authority
        self.direction = direction
        self.request = request
        self.decision = decision
        self.start = start
        self.target: tuple[str, int] = target
        self.dst = _NO_DST
        """(namespace, service, port) of the backend picked; empty until then."""
        self.head_at: float | None = None
        self.status: int | None = None
        self.tap_id = ""
        self._done = False
        self._tried: int | None = None
        """The first try's status while it is the only one and answered: counted with the
        request's end (`finish`); `_COUNTED` once tries are counted one by one."""
        if decision is not None and (route := decision.route) is not None:
            keys = owner.route_keys.get((direction, authority, route.rule, route.source))
            if keys is None:
                keys = owner.keys_for(direction, authority, decision)
            self._keys: _RouteKeys | None = keys
        else:
            self._keys = None
        if inbound and owner.tap.active:
            self.publish("req")  # outbound: once the endpoint (and its TLS) is known

    def backend(self, backend: Backend) -> None:
        self.dst = backend.dst

    def attempt(self, status: int | None, *, error: str = "") -> None:
        """One try sent to the backend (the first and every retry) and its outcome."""
        keys = self._keys
        if keys is None:
            return
        if self._tried is None and status is not None and not error:
            self._tried = status  # counted at the end, with the request (`finish`)
            return
        self._count_tried()
        self.owner.metrics.attempt(keys.route, self._backend_key(), status_code=status, error=error)

    def abandon(self) -> None:
        """The request ends without an answer of ours (the client left): what was tried
        still counts."""
        self._count_tried()

    def _count_tried(self) -> None:
        tried, self._tried = self._tried, _COUNTED
        keys = self._keys
        if tried is not None and tried != _COUNTED and keys is not None:
            self.owner.metrics.attempt(keys.route, self._backend_key(), status_code=tried, error="")

    def endpoint(self, addr: tuple[str, int], tls: TlsStatus) -> None:
        """The try goes to `addr`, with `tls` (`outbound_tls.server_tls`; inbound, the
        connection's own)."""
        self.target = addr
        self.tls = tls
        if not self.tap_id and self.owner.tap.active:
            self.publish("req")

    def routed(self, backend: Backend, addr: tuple[str, int], tls: TlsStatus) -> None:
        """`backend(backend)` then `endpoint(addr, tls)`, in one call (the plain path's
        single try)."""
        self.dst = backend.dst
        self.target = addr
        self.tls = tls
        if not self.tap_id and self.owner.tap.active:
            self.publish("req")

    def retry(self, *, status: int | None, error: Exception | None) -> None:
        pk = self._policy_key()
        if pk is not None:
            self.owner.metrics.retry(pk)

    def retry_skipped(self) -> None:
        """Retriable, but the budget is spent or the body was not buffered."""
        pk = self._policy_key()
        if pk is not None:
            self.owner.metrics.retry_overflow(pk)

    def retry_limit_exceeded(self) -> None:
        """Retriable, but every attempt is used."""
        pk = self._policy_key()
        if pk is not None:
            self.owner.metrics.retry_limit_exceeded(pk)

    def retry_success(self) -> None:
        """A retry got an answer that is not retriable."""
        pk = self._policy_key()
        if pk is not None:
            self.owner.metrics.retry_success(pk)

    def response_head(self, status: int, now: float | None = None) -> None:
        """`now`: the caller's clock read of this moment, if it has one."""
        self.head_at = self.owner.clock() if now is None else now
        self.status = status
        if self.owner.tap.active:
            if not self.tap_id:
                self.publish("req")
            self.publish("rsp")

    def answered(self, status: int, now: float) -> None:
        """`attempt(status)` then `response_head(status, now)`, in one call: the answer of
        a try that is not retried (a plain call's one try)."""
        if self._keys is not None:
            if self._tried is None:
                self._tried = status  # counted at the end, with the request (`finish`)
            else:
                self.attempt(status)
        self.head_at = now
        self.status = status
        if self.owner.tap.active:
            if not self.tap_id:
                self.publish("req")
            self.publish("rsp")

    def finish(
        self,
        status: int | None,
        *,
        error: str = "",
        grpc_status: int | None = None,
        bytes_sent: int = 0,
    ) -> None:
        if self._done:
            return
        self._done = True
        owner = self.owner
        head = self.head_at
        tap = owner.tap.active
        # the clock only when needed: a response head's read marks the latency's end
        now = owner.clock() if head is None or tap else head
        if head is None:
            head = now
        keys = self._keys
        if (
            not error
            and grpc_status is None
            and status is not None
            and (keys is None or self._tried == status)
        ):
            # the plain path: answered by the first (only) try, or not routed (inbound)
            ck = (self.direction, self.authority, keys, self.target, self.dst, self.tls, status)
            tally = owner.tallies.get(ck)
            if tally is None:
                tally = owner.metrics.plain_tally(
                    ck,
                    owner.http_key(self),
                    None if keys is None else keys.route,
                    None if keys is None else keys.policy,
                    None if keys is None else self._backend_key(),
                    status_code=status,
                )
            tally.n += 1
            ms = int((head - self.start) * 1000)
            tally.counts[bisect_left(LATENCY_BOUNDS_MS, ms)] += 1
            tally.sum += ms
            if tap:
                self._publish_end(status, now, bytes_sent, grpc_status, error)
            return
        self._count_tried()
        m = owner.metrics
        latency_ms = (head - self.start) * 1000
        if error == REQUEST_TIMEOUT:
            status_code: int | None = status if self.head_at is not None else None
        else:
            status_code = status
        m.finish(
            self.owner.http_key(self),
            None if keys is None else keys.route,
            None if keys is None else keys.policy,
            status_code=status_code,
            latency_ms=latency_ms,
            grpc_status=grpc_status,
            error=error,
        )
        if owner.tap.active:
            self._publish_end(status, now, bytes_sent, grpc_status, error)

    def _publish_end(
        self, status: int | None, now: float, bytes_sent: int, grpc_status: int | None, error: str
    ) -> None:
        if not self.tap_id:
            self.publish("req")  # answered before any endpoint was tried
        if self.head_at is None:
            self.status = status
            self.head_at = now
            self.publish("rsp")
        self.publish(
            "end", end=now, response_bytes=bytes_sent, grpc_status=grpc_status, reset=error
        )

    # ----------------------------------------------------------------------- helpers

    def _backend_key(self) -> BackendKey | None:
        keys = self._keys
        dst = self.dst
        if keys is None or not dst[1]:
            return None
        bk = keys.backends.get(dst)
        if bk is None:
            ns, svc, port = dst
            bk = keys.backends[dst] = self.owner.metrics.policy_backend(
                keys.policy, backend_namespace=ns, backend_name=svc, backend_port=port
            )
        return bk

    def _policy_key(self) -> PolicyRouteKey | None:
        keys = self._keys
        return None if keys is None else keys.policy

    def publish(
        self,
        kind: Literal["req", "rsp", "end"],
        *,
        end: float | None = None,
        response_bytes: int | None = None,
        grpc_status: int | None = None,
        reset: str = "",
    ) -> None:
        if not self.tap_id:
            self.tap_id = tap_id(next(_TAP_BASE), 0)
        req = self.request
        decision = self.decision
        latency = None
        duration = None
        if kind == "rsp" and self.head_at is not None:
            latency = int((self.head_at - self.start) * 1_000_000)
        if kind == "end" and end is not None and self.head_at is not None:
            duration = int((end - self.head_at) * 1_000_000)
        self.owner.tap.publish(
            TapEvent(
                kind=kind,
                id=self.tap_id,
                direction=self.direction,
                src=_addr(req.peer),
                # no endpoint picked (answered here: no route, no endpoints): the listener's
                # address the client reached, never 0.0.0.0:0; read only while tapped
                dst=_addr(self.target if self.target is not _NO_ADDR else req.local),
                tls=tap_tls(self.tls),
                method=req.method,
                authority=req.host,
                path=req.target,
                route=decision.route.rule if decision is not None and decision.route else "",
                dst_namespace=self.dst[0],
                dst_service=self.dst[1],
                status=self.status if kind != "req" else None,
                latency_us=latency,
                duration_us=duration,
                response_bytes=response_bytes,
                grpc_status=grpc_status,
                reset_error=reset,
            )
        )


class TcpHooks:
    """Linkerd's ``tcp_*`` families for a listener's accepted connections (``peer="src"``),
    labelled by the connection's TLS (`ConnectionInfo.tls_status`): a `ConnectionHooks`
    for `serve_http` / `serve_detecting`. Once per connection, nothing per request."""

    __slots__ = ("direction", "metrics")

    def __init__(self, metrics: ProxyMetrics, direction: Direction) -> None:
        self.metrics = metrics
        self.direction: Direction = direction

    def on_connection_open(self, conn: ConnectionInfo) -> None:
        # --transparent: the address the client connected to, as Linkerd labels it
        target = conn.original_dst or conn.local
        ns, svc = conn.destination or ("", "")
        key = self.metrics.tcp(
            direction=self.direction,
            peer="src",
            target_addr=target,
            tls=conn.tls_status,
            dst_namespace=ns,
            dst_service=svc,
        )
        conn.metrics = key
        self.metrics.tcp_open(key)

    def on_connection_close(self, conn: ConnectionInfo, error: BaseException | None) -> None:
        key = conn.metrics
        if not isinstance(key, TcpKey):
            return
        code = getattr(error, "errno", None)
        name = errno.errorcode.get(code, "") if isinstance(code, int) else ""
        if error is not None and not name:
            name = "ECONNRESET" if isinstance(error, ConnectionResetError) else "EIO"
        self.metrics.tcp_close(key, read=conn.bytes_read, write=conn.bytes_written, errno=name)
