"""`ProxyMetrics`: one proxy's metrics, Linkerd-compatible, and their Prometheus exposition.

The names, labels, buckets and units are Linkerd's (`families.py`), so Flagger's Linkerd
queries and `linkerd viz` read our series unchanged. Two differences, both on purpose:

* Every series also carries the workload labels ``namespace``, ``<workload_kind>`` (e.g.
  ``deployment="podinfo"``) and ``pod`` (when known). Linkerd gets them from Prometheus
  relabeling at scrape time; a static scrape has none, and Flagger filters on them.
* The policy-route families (``outbound_http_route_*``) carry ``direction="outbound"`` too.
  ``process_*`` series carry only the workload labels.

```
telemetry ──http()/route()/policy_route()/policy_backend()/tcp()──> key (cached per distinct
          │                                                        label combination; label
          │                                                        strings built once)
          └─attempt()/finish()/plain_tally()/...(key, ...)──> integer cells in the key
admin /metrics ──render()──> fold the tallies, then text exposition 0.0.4 (`registry.py`)
```

Classification (legacy families): ``failure`` for 5xx, a gRPC status other than 0, any
``error`` or no response at all; otherwise ``success`` (Linkerd's default response classes).
What to call when is in `ProxyMetrics`'s docstring.

No label is the client's choice: the outbound ``authority`` and route ``dst`` are the table's
domain the Host matched, or ``unknown`` (`families.UNKNOWN_AUTHORITY`) when it names nothing
in the table, so the series are bounded by the table; paths, methods and headers are never
labels. The one exception is opt-in: `inbound_authority` (Linkerd's "unsafe" setting).

Not here: locking (one event loop owns it), series expiry (Linkerd drops series idle for 10
min; ours live until restart).
"""

from __future__ import annotations

import logging
import re
import time

from turnout.proxy.families import (
    BackendKey,
    Direction,
    HttpKey,
    LinkerdFamilies,
    Peer,
    PolicyRouteKey,
    RouteKey,
    StatusSeries,
    TcpKey,
    addr_labels,
    observe,
    tls_labels,
)
from turnout.proxy.inbound_guard import AuthzFamilies
from turnout.proxy.registry import PlainTally, join_labels, process_lines
from turnout.proxy.transport.messages import TLS_DISABLED, TlsStatus

log = logging.getLogger(__name__)

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

MAX_TALLIES = 65_536
"""Plain-path tallies kept (one per label combination and status); past this they are folded
and started over, so arbitrary Host headers cannot grow them without bound."""


class ProxyMetrics:
    """All of one proxy's metrics: the keys it hands out and the events it counts.

    What the request path calls, and when (synchronous, allocation-free once a label
    combination has been seen; keys may be kept and reused freely)::

        key = m.http(direction=, authority=, target_addr=(ip, port), dst_namespace=,
                     dst_service=, tls=TLS_DISABLED)  # per connection/endpoint, or per request
        m.request(key)                                 # request headers received
        m.response(key, status_code=, latency_ms=,     # response stream ended (or failed);
                   grpc_status=None, error="")         # latency_ms = time to response headers;
                                                       # status_code=None: no response
        rk = m.route(direction=, dst="web.shop.svc.cluster.local:80", rt_route=rule_name)
        m.route_request(rk) / m.route_response(rk, ...)            # per request
        m.route_actual_request(rk) / m.route_actual_response(rk, ...)  # per attempt
        pk = m.policy_route(parent_namespace=, parent_name=, parent_port=, route_namespace=,
                            route_name=, route_kind="HTTPRoute", hostname=)
        bk = m.policy_backend(pk, backend_namespace=, backend_name=, backend_port=)
        m.backend_request(bk) / m.backend_response(bk, status_code=, error="")  # per attempt
        m.route_status(pk, status_code=, error="")     # per request, at its end; a timeout is
                                                       # status_code=None, error=REQUEST_TIMEOUT
        m.retry(pk) / m.retry_success(pk) / m.retry_limit_exceeded(pk) / m.retry_overflow(pk)
        tk = m.tcp(direction=, peer="src"|"dst", target_addr=(ip, port), tls=TLS_DISABLED)
        m.tcp_open(tk) / m.tcp_bytes(tk, read=, write=) / m.tcp_close(tk, ..., errno="")

    `telemetry.py` makes one call per event instead, into the same cells: `attempt` (each
    try), `finish` (the request's end) and `plain_tally` (a request answered by its only
    try: both in one `PlainTally`, folded into the families by `render`).
    """

    def __init__(
        self,
        *,
        namespace: str,
        workload_kind: str = "deployment",
        workload_name: str,
        pod: str = "",
        inbound_authority: bool = False,
        start_time: float | None = None,
    ) -> None:
        """`workload_kind` is the label name Flagger filters on (``deployment``,
        ``statefulset``, ``daemonset`` ...); empty workload values are left out.
        `inbound_authority` adds ``authority`` to inbound series, as Linkerd's
        ``LINKERD2_PROXY_INBOUND_METRICS_AUTHORITY_LABELS=unsafe`` does. `start_time` is
        ``process_start_time_seconds``; None = now."""
        if not _LABEL_NAME.fullmatch(workload_kind):
            raise ValueError(f"workload_kind must be a label name, got {workload_kind!r}")
        self._fams = LinkerdFamilies()
        self._workload = tuple(
            (k, v) for k, v in (("namespace", namespace), (workload_kind, workload_name), ("pod", pod)) if v
        )  # fmt: skip
        self._workload_labels = join_labels(self._workload)
        self.authz = AuthzFamilies()
        """Inbound authorization's counters (`inbound_guard.py` counts into them)."""
        self.inbound_authority = inbound_authority
        """Inbound series carry ``authority`` (the Host as sent: unbounded, Linkerd's
        "unsafe" setting)."""
        self.start_time = time.time() if start_time is None else start_time
        self._http: dict[tuple[object, ...], HttpKey] = {}
        self._routes: dict[tuple[str, str, str], RouteKey] = {}
        self._policy: dict[tuple[object, ...], PolicyRouteKey] = {}
        self._backends: dict[tuple[object, ...], BackendKey] = {}
        self._tcp: dict[tuple[object, ...], TcpKey] = {}
        self.tallies: dict[tuple[object, ...], PlainTally] = {}
        """`plain_tally`'s by their caller's key; the request path reads it directly."""

    @property
    def workload_pairs(self) -> tuple[tuple[str, str], ...]:
        """``namespace``, ``<workload_kind>``, ``pod``: the labels every series carries."""
        return self._workload

    def _base(self, direction: Direction, *pairs: tuple[str, str]) -> str:
        return join_labels((("direction", direction), *self._workload, *pairs))

    # -- legacy endpoint families --------------------------------------------------------

    def http(
        self,
        *,
        direction: Direction,
        authority: str,
        target_addr: tuple[str, int],
        dst_namespace: str = "",
        dst_service: str = "",
        tls: TlsStatus = TLS_DISABLED,
    ) -> HttpKey:
        """The key for one endpoint label set; cached, so calling it per request is cheap.
        `target_addr` is the address the request is sent to: inbound, the local address the
        app serves on; outbound, the endpoint the balancer picked. `tls` is the connection's
        (inbound) or the endpoint's (outbound) mesh TLS status, labeled after the address as
        Linkerd does. Inbound, `authority` is dropped (Linkerd's cardinality default) and so
        are ``dst_*``."""
        if direction == "inbound":
            dst_namespace = dst_service = ""
            if not self.inbound_authority:
                authority = ""
        ck = (direction, authority, target_addr, dst_namespace, dst_service, tls)
        key = self._http.get(ck)
        if key is None:
            pairs: list[tuple[str, str]] = [("authority", authority)] if authority else []
            pairs += addr_labels(target_addr)
            pairs += tls_labels(tls)
            if direction == "outbound":
                pairs += (("dst_namespace", dst_namespace), ("dst_service", dst_service))
            f = self._fams
            key = self._http[ck] = HttpKey(
                self._base(direction, *pairs), f.request_total, f.response_total, f.response_latency
            )
        return key

    def request(self, key: HttpKey) -> None:
        """``request_total``: call when the request's headers have been received."""
        key.requests.v += 1

    def response(
        self,
        key: HttpKey,
        *,
        status_code: int | None,
        latency_ms: float,
        grpc_status: int | None = None,
        error: str = "",
    ) -> None:
        """``response_total`` and ``response_latency_ms``: call once when the response stream
        ends or fails. `latency_ms` is from request headers to response headers; `status_code`
        None means no response was received (then no latency is recorded)."""
        observe(key, status_code, grpc_status, error, latency_ms)

    # -- legacy route families -----------------------------------------------------------

    def route(self, *, direction: Direction, dst: str, rt_route: str) -> RouteKey:
        """The ``route_*`` key: `dst` is the service ``FQDN:port``, `rt_route` our IR rule name
        (``""`` when no rule matched, shown as ``[DEFAULT]`` by ``viz routes``)."""
        ck = (direction, dst, rt_route)
        key = self._routes.get(ck)
        if key is None:
            f = self._fams
            labels = self._base(direction, ("dst", dst), ("rt_route", rt_route))
            key = self._routes[ck] = RouteKey(
                StatusSeries(labels, f.route_request_total, f.route_response_total, f.route_latency),
                StatusSeries(labels, f.route_actual_request_total, f.route_actual_response_total, None),
            )  # fmt: skip
        return key

    def route_request(self, key: RouteKey) -> None:
        """``route_request_total``: once per request, when it starts."""
        key.effective.requests.v += 1

    def route_response(
        self,
        key: RouteKey,
        *,
        status_code: int | None,
        latency_ms: float,
        grpc_status: int | None = None,
        error: str = "",
    ) -> None:
        """``route_response_total``/``route_response_latency_ms``: once per request, at its end
        (after any retries), with the final outcome."""
        observe(key.effective, status_code, grpc_status, error, latency_ms)

    def route_actual_request(self, key: RouteKey) -> None:
        """``route_actual_request_total``: once per attempt (first try and every retry)."""
        key.actual.requests.v += 1

    def route_actual_response(
        self,
        key: RouteKey,
        *,
        status_code: int | None,
        grpc_status: int | None = None,
        error: str = "",
    ) -> None:
        """``route_actual_response_total``: once per attempt, with that attempt's outcome."""
        observe(key.actual, status_code, grpc_status, error, 0.0)

    # -- policy route families -----------------------------------------------------------

    def policy_route(
        self,
        *,
        parent_namespace: str,
        parent_name: str,
        parent_port: int,
        route_namespace: str,
        route_name: str,
        route_kind: str = "HTTPRoute",
        route_group: str = "gateway.networking.k8s.io",
        parent_kind: str = "Service",
        parent_group: str = "core",
        parent_section_name: str = "",
        hostname: str = "",
    ) -> PolicyRouteKey:
        """The ``outbound_http_route_*`` key. A synthesized default route is
        ``route_kind="default", route_group="", route_name="http"``, as in Linkerd."""
        ck: tuple[object, ...] = (parent_namespace, parent_name, parent_port, route_namespace)
        ck += (
            route_name,
            route_kind,
            route_group,
            parent_kind,
            parent_group,
            parent_section_name,
            hostname,
        )
        key = self._policy.get(ck)
        if key is None:
            base = self._base(
                "outbound",
                *(("parent_group", parent_group), ("parent_kind", parent_kind)),
                *(("parent_namespace", parent_namespace), ("parent_name", parent_name)),
                *(("parent_port", str(parent_port)), ("parent_section_name", parent_section_name)),
                *(("route_group", route_group), ("route_kind", route_kind)),
                *(("route_namespace", route_namespace), ("route_name", route_name)),
            )
            key = self._policy[ck] = PolicyRouteKey(base, hostname, self._fams)
        return key

    def policy_backend(
        self,
        route: PolicyRouteKey,
        *,
        backend_namespace: str,
        backend_name: str,
        backend_port: int,
        backend_kind: str = "Service",
        backend_group: str = "core",
        backend_section_name: str = "",
    ) -> BackendKey:
        """The ``outbound_http_route_backend_*`` key of one backend of `route`."""
        ck: tuple[object, ...] = (route.base, backend_namespace, backend_name, backend_port)
        ck += (backend_kind,)
        ck += (backend_group, backend_section_name)
        key = self._backends.get(ck)
        if key is None:
            extra = join_labels(
                (
                    *(("backend_group", backend_group), ("backend_kind", backend_kind)),
                    *(("backend_namespace", backend_namespace), ("backend_name", backend_name)),
                    ("backend_port", str(backend_port)),
                    ("backend_section_name", backend_section_name),
                )
            )
            key = self._backends[ck] = BackendKey(f"{route.base},{extra}", self._fams)
        return key

    def route_status(
        self,
        key: PolicyRouteKey,
        *,
        status_code: int | None,
        grpc_status: int | None = None,
        error: str = "",
    ) -> None:
        """``outbound_http_route_request_statuses_total``: once per request, when it ends.
        A timeout is ``status_code=None, error=REQUEST_TIMEOUT``."""
        key.statuses.count(status_code, grpc_status, error)

    def backend_request(self, key: BackendKey) -> None:
        """``outbound_http_route_backend_requests_total``: each attempt sent to the backend."""
        key.requests.v += 1

    def backend_response(
        self,
        key: BackendKey,
        *,
        status_code: int | None,
        grpc_status: int | None = None,
        error: str = "",
    ) -> None:
        """``outbound_http_route_backend_response_statuses_total``: each attempt's outcome;
        a per-try timeout is ``status_code=None, error=RESPONSE_HEADERS_TIMEOUT``."""
        key.statuses.count(status_code, grpc_status, error)

    # -- one call per event, for the request path -----------------------------------------

    def attempt(
        self, route: RouteKey, backend: BackendKey | None, *, status_code: int | None, error: str
    ) -> None:
        """One try: `route_actual_request`/`route_actual_response`, and with `backend`,
        `backend_request`/`backend_response` (no gRPC status: the proxy carries HTTP/1.1)."""
        route.actual.requests.v += 1
        observe(route.actual, status_code, None, error, 0.0)
        if backend is not None:
            backend.requests.v += 1
            backend.statuses.count(status_code, None, error)

    def finish(
        self,
        key: HttpKey,
        route: RouteKey | None,
        policy: PolicyRouteKey | None,
        *,
        status_code: int | None,
        latency_ms: float,
        grpc_status: int | None,
        error: str,
    ) -> None:
        """One request's end: `request` and `response`, and with a route `route_request`,
        `route_response` and `route_status`."""
        key.requests.v += 1
        observe(key, status_code, grpc_status, error, latency_ms)
        if route is not None:
            route.effective.requests.v += 1
            observe(route.effective, status_code, grpc_status, error, latency_ms)
        if policy is not None:
            policy.statuses.count(status_code, grpc_status, error)

    def plain_tally(
        self,
        ck: tuple[object, ...],
        key: HttpKey,
        route: RouteKey | None,
        policy: PolicyRouteKey | None,
        backend: BackendKey | None,
        *,
        status_code: int,
    ) -> PlainTally:
        """The tally (stored in `tallies` under `ck`) standing for `finish` with
        `status_code` and no error or gRPC status, plus, with `route`, one `attempt` with the
        same outcome: what a request answered by its first try costs, in one cell."""
        if len(self.tallies) >= MAX_TALLIES:
            self.fold()
            self.tallies.clear()
        o = key.fast.get(status_code) or key.outcome(status_code, None, "")
        cells = [key.requests, o.total]
        hists = [o.latency]
        if route is not None:
            eff = route.effective
            e = eff.fast.get(status_code) or eff.outcome(status_code, None, "")
            act = route.actual
            a = act.fast.get(status_code) or act.outcome(status_code, None, "")
            assert a.latency is None  # attempts have no latency family (`attempt`)
            cells += (eff.requests, e.total, act.requests, a.total)
            hists.append(e.latency)
        if policy is not None:
            cells.append(policy.statuses.cell(status_code, None, ""))
        if backend is not None:
            cells += (backend.requests, backend.statuses.cell(status_code, None, ""))
        tally = self.tallies[ck] = PlainTally(
            tuple(cells), tuple(h for h in hists if h is not None)
        )
        return tally

    def fold(self) -> None:
        """Add what the tallies counted to the families (render does it first)."""
        for tally in self.tallies.values():
            tally.fold()

    def retry(self, key: PolicyRouteKey) -> None:
        """``outbound_http_route_retry_requests_total``: a retry is sent."""
        key.retries.v += 1

    def retry_success(self, key: PolicyRouteKey) -> None:
        """``outbound_http_route_retry_successes_total``: a retry got a non-retriable answer."""
        key.successes.v += 1

    def retry_limit_exceeded(self, key: PolicyRouteKey) -> None:
        """``outbound_http_route_retry_limit_exceeded_total``: retryable, but at the limit."""
        key.limit_exceeded.v += 1

    def retry_overflow(self, key: PolicyRouteKey) -> None:
        """``outbound_http_route_retry_overflow_total``: retryable, but the budget is spent or
        the body was not buffered."""
        key.overflow.v += 1

    # -- transport -----------------------------------------------------------------------

    def tcp(
        self,
        *,
        direction: Direction,
        peer: Peer,
        target_addr: tuple[str, int],
        tls: TlsStatus = TLS_DISABLED,
        dst_namespace: str = "",
        dst_service: str = "",
    ) -> TcpKey:
        """The ``tcp_*`` key. ``peer="src"``: a connection we accepted; ``"dst"``: one we
        opened. ``dst_*`` are kept on outbound only."""
        if direction == "inbound":
            dst_namespace = dst_service = ""
        ck = (direction, peer, target_addr, tls, dst_namespace, dst_service)
        key = self._tcp.get(ck)
        if key is None:
            pairs = [("peer", peer), *addr_labels(target_addr), *tls_labels(tls)]
            if direction == "outbound":
                pairs += (("dst_namespace", dst_namespace), ("dst_service", dst_service))
            key = self._tcp[ck] = TcpKey(self._base(direction, *pairs), self._fams)
        return key

    def tcp_open(self, key: TcpKey) -> None:
        """A connection was accepted (``peer="src"``) or established (``peer="dst"``)."""
        key.opened.v += 1
        key.open.v += 1

    def tcp_bytes(self, key: TcpKey, *, read: int = 0, write: int = 0) -> None:
        """Bytes read from / written to the peer since the last call (optional while open)."""
        key.read.v += read
        key.write.v += write

    def tcp_close(self, key: TcpKey, *, read: int = 0, write: int = 0, errno: str = "") -> None:
        """The connection closed; `read`/`write` are bytes not yet reported with `tcp_bytes`;
        `errno` is ``""`` for a clean close, else the errno name (``ECONNRESET``)."""
        key.read.v += read
        key.write.v += write
        key.open.v -= 1
        c = key.closes.get(errno)
        if c is None:
            c = key.closes[errno] = key.close_family.cell(
                f"{key.labels},{join_labels([('errno', errno)])}"
            )
        c.v += 1

    # -- identity ------------------------------------------------------------------------

    def identity_issued(self, valid_until: float) -> None:
        """A leaf certificate was installed: ``identity_cert_refresh_count`` + 1 and
        ``identity_cert_expiration_timestamp_seconds`` = its NotAfter (whole seconds)."""
        f = self._fams
        f.identity_expiration.cell(self._workload_labels).v = int(valid_until)
        f.identity_refresh.cell(self._workload_labels).v += 1

    # -- exposition ----------------------------------------------------------------------

    def render(self) -> str:
        """The whole registry in the Prometheus text format 0.0.4: families in a fixed order,
        series sorted by their labels. Families without series are left out."""
        self.fold()
        out: list[str] = []
        for fam in (*self._fams.all(), *self.authz.all()):
            if fam.series:
                fam.render(out)
        out.append(process_lines(self._workload_labels, self.start_time))
        return "".join(out)
