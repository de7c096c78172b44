"""Linkerd-compatible proxy metrics: a small registry and its Prometheus text exposition.

Flagger's built-in Linkerd queries, `linkerd viz` and the Linkerd Grafana dashboards read the
proxy's own series by name and label (docs: LINKERD-REFERENCE.md §a, FLAGGER-CONTRACT.md §7.3),
so the names, label names, bucket bounds and value units here are Linkerd's. Two differences,
both on purpose:

* Every series also carries the workload labels ``namespace``, ``<workload_kind>`` (e.g.
  ``deployment="podinfo"``) and ``pod`` (when known). Linkerd gets them from Prometheus
  relabeling at scrape time; a static scrape has none, and Flagger filters on them.
* The policy-route families (``outbound_http_route_*``) carry ``direction="outbound"`` too.
  ``process_*`` series carry only the workload labels.

Data flow::

    handler ──http()/route()/policy_route()/policy_backend()/tcp()──> key (cached per
              │                                                       distinct label combination;
              │                                                       label strings built once)
              └─request()/response()/...(key, ...)──> integer cells in the key
    admin /metrics ──render()──> text exposition 0.0.4 (sorted, escaped; the only formatting)

What the handler calls, and when (all methods are synchronous and allocation-free on the
hot path once a label combination has been seen; keys may be kept and reused freely)::

    key = m.http(direction=, authority=, target_addr=(ip, port), dst_namespace=,
                 dst_service=, tls="disabled")        # once per connection/endpoint, or per request
    m.request(key)                                     # request headers received (stream begins)
    m.response(key, status_code=, latency_ms=,         # response stream ended (or failed);
               grpc_status=None, error="")             # latency_ms = time to response headers
                                                       # status_code=None: no response (proxy error)

    rk = m.route(direction=, dst="web.shop.svc.cluster.local:80", rt_route=rule_name)
    m.route_request(rk) / m.route_response(rk, status_code=, latency_ms=, ...)   # per request
    m.route_actual_request(rk) / m.route_actual_response(rk, status_code=, ...)  # per attempt

    pk = m.policy_route(parent_namespace=, parent_name=, parent_port=, route_namespace=,
                        route_name=, route_kind="HTTPRoute", hostname=)
    bk = m.policy_backend(pk, backend_namespace=, backend_name=, backend_port=)
    m.backend_request(bk)                              # each attempt sent to a backend
    m.backend_response(bk, status_code=, error="")     # each attempt's outcome
    m.route_status(pk, status_code=, error="")         # once per request, when it ends; a
                                                       # timeout is status_code=None,
                                                       # error=REQUEST_TIMEOUT (or
                                                       # RESPONSE_HEADERS_TIMEOUT per try)
    m.retry(pk)                                        # a retry is sent
    m.retry_limit_exceeded(pk) / m.retry_overflow(pk)  # retryable, not retried (limit / budget
                                                       # or body too big)

    # the request path (telemetry.py) makes one call per event instead, into the same cells:
    m.attempt(rk, bk, status_code=, error=)           # each attempt: route_actual_*, backend_*
    m.finish(key, rk, pk, status_code=, latency_ms=,  # the request's end: request/response,
             grpc_status=, error=)                    # route_request/route_response, route_status
    t = m.plain_tally(ck, key, rk, pk, bk,            # a request answered by its only try:
                      status_code=)                   # finish + attempt in one tally, cached in
    t.n += 1; t.counts[bucket] += 1; t.sum += ms      # m.tallies; folded into the families
                                                      # by render() (fold())

    tk = m.tcp(direction=, peer="src"|"dst", target_addr=(ip, port))
    m.tcp_open(tk)                                     # connection accepted / connected
    m.tcp_bytes(tk, read=, write=)                     # optional, as bytes flow
    m.tcp_close(tk, read=, write=, errno="")           # connection closed ("" = clean)

Classification (legacy families): ``failure`` for 5xx, a gRPC status other than 0, any
``error`` or no response at all; otherwise ``success`` (Linkerd's default response classes).

What it deliberately does not do: no locking (one event loop owns it), no series expiry
(Linkerd drops series idle for 10 min; ours live until restart), no ``srv_*``/``authz_*``
policy labels, no seconds-based duration histograms of the policy families, no cap on the
number of series (the outbound ``authority`` label is as unbounded as Linkerd's).
"""

from __future__ import annotations

import logging
import os
import re
import resource
import time
from bisect import bisect_left
from collections.abc import Iterable
from typing import Final, Literal

log = logging.getLogger(__name__)

Direction = Literal["inbound", "outbound"]
Peer = Literal["src", "dst"]

LATENCY_BOUNDS_MS: Final[tuple[int, ...]] = (
    *(1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500),
    *(1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000),
)
"""Upper bounds of ``response_latency_ms`` (Linkerd's ``linkerd/metrics/src/latency.rs``);
a last ``+Inf`` bucket follows. Values are recorded as whole (truncated) milliseconds."""

REQUEST_TIMEOUT: Final = "REQUEST_TIMEOUT"
"""``error`` value: the route's request timeout expired (Linkerd's policy-route error label)."""
RESPONSE_HEADERS_TIMEOUT: Final = "RESPONSE_HEADERS_TIMEOUT"
"""``error`` value: no response headers within the per-try timeout."""
UNEXPECTED: Final = "UNEXPECTED"
"""``error`` value: any other proxy failure (connect error, reset, malformed response)."""

GRPC_STATUS_NAMES: Final[tuple[str, ...]] = (
    *("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND"),
    *("ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION"),
    *("ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"),
    "UNAUTHENTICATED",
)
"""gRPC code names by number, as the policy families label ``grpc_status``."""

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_N_BUCKETS: Final = len(LATENCY_BOUNDS_MS) + 1
_LE: Final = tuple(f'le="{b}"' for b in (*LATENCY_BOUNDS_MS, "+Inf"))


def escape_label_value(value: str) -> str:
    """Escape a label value for the text format: backslash, double quote and newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _join(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{escape_label_value(v)}"' for k, v in pairs)


def _addr_labels(addr: tuple[str, int]) -> tuple[tuple[str, str], ...]:
    ip, port = addr
    text = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    return (("target_addr", text), ("target_ip", ip), ("target_port", str(port)))


def _tls_labels(tls: str, no_tls_reason: str) -> tuple[tuple[str, str], ...]:
    return (("tls", tls), ("no_tls_reason", no_tls_reason)) if no_tls_reason else (("tls", tls),)


def classify(status_code: int | None, grpc_status: int | None, error: str) -> str:
    """Linkerd's default response class: ``failure`` or ``success``."""
    if error or status_code is None or status_code >= 500:
        return "failure"
    return "failure" if grpc_status else "success"


# -- cells and families ---------------------------------------------------------------------


class _Value:
    __slots__ = ("v",)

    def __init__(self) -> None:
        self.v = 0


class _Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * _N_BUCKETS
        """Per-bucket (not cumulative) counts; cumulated at render."""
        self.sum = 0


class _Family:
    """A counter or gauge family: label body (``a="1",b="2"``) -> cell."""

    __slots__ = ("help", "kind", "name", "series")

    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name, self.kind, self.help = name, kind, help_text
        self.series: dict[str, _Value] = {}

    def cell(self, labels: str) -> _Value:
        c = self.series.get(labels)
        if c is None:
            c = self.series[labels] = _Value()
        return c

    def render(self, out: list[str]) -> None:
        out.append(f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.kind}\n")
        out.extend(f"{self.name}{{{k}}} {c.v}\n" for k, c in sorted(self.series.items()))


class _HistFamily:
    """A ``*_ms`` histogram family with Linkerd's latency buckets."""

    __slots__ = ("help", "name", "series")

    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self.series: dict[str, _Histogram] = {}

    def cell(self, labels: str) -> _Histogram:
        h = self.series.get(labels)
        if h is None:
            h = self.series[labels] = _Histogram()
        return h

    def render(self, out: list[str]) -> None:
        n = self.name
        out.append(f"# HELP {n} {self.help}\n# TYPE {n} histogram\n")
        for labels, h in sorted(self.series.items()):
            total = 0
            for le, count in zip(_LE, h.counts, strict=True):
                total += count
                out.append(f"{n}_bucket{{{labels},{le}}} {total}\n")
            out.append(f"{n}_sum{{{labels}}} {h.sum}\n{n}_count{{{labels}}} {total}\n")


# -- keys the handler holds ------------------------------------------------------------------


class _Outcome:
    __slots__ = ("latency", "total")

    def __init__(self, total: _Value, latency: _Histogram | None) -> None:
        self.total, self.latency = total, latency


class _StatusSeries:
    """Requests plus responses by outcome for one label set (legacy ``*request_total`` /
    ``*response_total`` / ``*response_latency_ms``)."""

    __slots__ = ("fast", "labels", "latency_family", "outcomes", "requests", "total_family")

    def __init__(
        self, labels: str, requests: _Family, total: _Family, latency: _HistFamily | None
    ) -> None:
        self.labels = labels
        self.requests = requests.cell(labels)
        self.total_family, self.latency_family = total, latency
        self.fast: dict[int | None, _Outcome] = {}
        """Outcomes without gRPC status or error, by status code: the common case."""
        self.outcomes: dict[tuple[int | None, int | None, str], _Outcome] = {}

    def outcome(self, status_code: int | None, grpc_status: int | None, error: str) -> _Outcome:
        o = self.outcomes.get((status_code, grpc_status, error))
        if o is not None:
            return o
        code = "" if status_code is None else str(status_code)
        total = self.total_family.cell(
            self.labels
            + ","
            + _join(
                (
                    ("status_code", code),
                    ("classification", classify(status_code, grpc_status, error)),
                    ("grpc_status", "" if grpc_status is None else str(grpc_status)),
                    ("error", error),
                )
            )
        )
        latency = None
        if self.latency_family is not None and status_code is not None:
            latency = self.latency_family.cell(f'{self.labels},status_code="{code}"')
        o = self.outcomes[(status_code, grpc_status, error)] = _Outcome(total, latency)
        if grpc_status is None and not error:
            self.fast[status_code] = o
        return o


class HttpKey(_StatusSeries):
    """Label set of the legacy endpoint families; from `ProxyMetrics.http`."""

    __slots__ = ()


class RouteKey:
    """Label set of the ``route_*`` families; from `ProxyMetrics.route`."""

    __slots__ = ("actual", "effective")

    def __init__(self, effective: _StatusSeries, actual: _StatusSeries) -> None:
        self.effective, self.actual = effective, actual


class _Statuses:
    """Counter by (http_status, grpc_status, error) for the policy families."""

    __slots__ = ("by", "family", "fast", "labels")

    def __init__(self, family: _Family, labels: str) -> None:
        self.family, self.labels = family, labels
        self.by: dict[tuple[int | None, int | None, str], _Value] = {}
        self.fast: dict[int | None, _Value] = {}
        """Counters without gRPC status or error, by HTTP status: the common case."""

    def count(self, status_code: int | None, grpc_status: int | None, error: str) -> None:
        if grpc_status is None and not error:
            c = self.fast.get(status_code)
            if c is not None:
                c.v += 1
                return
        self.cell(status_code, grpc_status, error).v += 1

    def cell(self, status_code: int | None, grpc_status: int | None, error: str) -> _Value:
        c = self.by.get((status_code, grpc_status, error))
        if c is None:
            grpc = "" if grpc_status is None else _grpc_name(grpc_status)
            http = "" if status_code is None else str(status_code)
            extra = _join((("http_status", http), ("grpc_status", grpc), ("error", error)))
            c = self.by[(status_code, grpc_status, error)] = self.family.cell(
                f"{self.labels},{extra}"
            )
            if grpc_status is None and not error:
                self.fast[status_code] = c
        return c


def _observe(
    series: _StatusSeries,
    status_code: int | None,
    grpc_status: int | None,
    error: str,
    latency_ms: float,
) -> None:
    """Count one outcome in `series` (and its latency, where the series has a histogram)."""
    o = series.fast.get(status_code) if grpc_status is None and not error else None
    if o is None:
        o = series.outcome(status_code, grpc_status, error)
    o.total.v += 1
    h = o.latency
    if h is not None:
        ms = int(latency_ms)
        h.counts[bisect_left(LATENCY_BOUNDS_MS, ms)] += 1
        h.sum += ms


def _grpc_name(code: int) -> str:
    return GRPC_STATUS_NAMES[code] if 0 <= code < len(GRPC_STATUS_NAMES) else str(code)


class PolicyRouteKey:
    """Label set of the ``outbound_http_route_*`` families; from `ProxyMetrics.policy_route`."""

    __slots__ = ("base", "limit_exceeded", "overflow", "retries", "statuses", "successes")

    def __init__(self, base: str, hostname: str, fams: _Families) -> None:
        self.base = base
        """Workload, parent and route labels (no hostname): what backend series extend."""
        self.statuses = _Statuses(fams.route_statuses, f"{base},{_join([('hostname', hostname)])}")
        self.retries = fams.retry_requests.cell(base)
        self.successes = fams.retry_successes.cell(base)
        self.limit_exceeded = fams.retry_limit.cell(base)
        self.overflow = fams.retry_overflow.cell(base)


class BackendKey:
    """Label set of the ``outbound_http_route_backend_*`` families."""

    __slots__ = ("requests", "statuses")

    def __init__(self, labels: str, fams: _Families) -> None:
        self.requests = fams.backend_requests.cell(labels)
        self.statuses = _Statuses(fams.backend_statuses, labels)


class PlainTally:
    """Requests of one label combination and status that took the plain path (one try,
    answered, no error), counted with one increment each and folded into every family they
    belong to when the registry is rendered (`ProxyMetrics.fold`): the request path then
    touches one cell instead of a dozen."""

    __slots__ = ("cells", "counts", "hists", "n", "sum")

    def __init__(self, cells: tuple[_Value, ...], hists: tuple[_Histogram, ...]) -> None:
        self.cells, self.hists = cells, hists
        """Where each request counts once; where its latency counts."""
        self.n = 0
        self.counts = [0] * _N_BUCKETS
        """Latency per bucket (as `_Histogram.counts`), since the last fold."""
        self.sum = 0

    def fold(self) -> None:
        n = self.n
        if not n:
            return
        for c in self.cells:
            c.v += n
        counts = self.counts
        for h in self.hists:
            hc = h.counts
            for i, k in enumerate(counts):
                hc[i] += k
            h.sum += self.sum
        self.n = self.sum = 0
        self.counts = [0] * _N_BUCKETS


MAX_TALLIES = 65_536
"""Plain-path tallies kept (one per label combination and status); past this they are folded
and started over, so arbitrary Host headers cannot grow them without bound."""


class TcpKey:
    """Label set of the ``tcp_*`` families; from `ProxyMetrics.tcp`."""

    __slots__ = ("close_family", "closes", "labels", "open", "opened", "read", "write")

    def __init__(self, labels: str, fams: _Families) -> None:
        self.labels = labels
        self.opened = fams.tcp_open_total.cell(labels)
        self.open = fams.tcp_open_connections.cell(labels)
        self.read = fams.tcp_read.cell(labels)
        self.write = fams.tcp_write.cell(labels)
        self.close_family = fams.tcp_close
        self.closes: dict[str, _Value] = {}


class _Families:
    """Every family, in emission order (Linkerd's: requests, latency, responses)."""

    def __init__(self) -> None:
        c, g, h = "counter", "gauge", _HistFamily
        self.request_total = _Family("request_total", c, "Total count of HTTP requests.")
        self.response_latency = h("response_latency_ms", "Elapsed times between a request's headers being received and its response headers, in milliseconds.")  # fmt: skip
        self.response_total = _Family("response_total", c, "Total count of HTTP responses.")
        self.route_request_total = _Family("route_request_total", c, "Total count of HTTP requests by route.")  # fmt: skip
        self.route_latency = h("route_response_latency_ms", "Elapsed times between a request's headers being received and its response headers, in milliseconds, by route.")  # fmt: skip
        self.route_response_total = _Family("route_response_total", c, "Total count of HTTP responses by route.")  # fmt: skip
        self.route_actual_request_total = _Family("route_actual_request_total", c, "Total count of HTTP requests by route, including retries.")  # fmt: skip
        self.route_actual_response_total = _Family("route_actual_response_total", c, "Total count of HTTP responses by route, including retries.")  # fmt: skip
        p = "outbound_http_route_"
        self.route_statuses = _Family(f"{p}request_statuses_total", c, "Completed route requests by status and error.")  # fmt: skip
        self.backend_requests = _Family(f"{p}backend_requests_total", c, "Requests dispatched to a route backend.")  # fmt: skip
        self.backend_statuses = _Family(f"{p}backend_response_statuses_total", c, "Completed route backend responses by status and error.")  # fmt: skip
        self.retry_requests = _Family(f"{p}retry_requests_total", c, "Retry requests emitted.")
        self.retry_successes = _Family(f"{p}retry_successes_total", c, "Successful responses to retry requests.")  # fmt: skip
        self.retry_limit = _Family(f"{p}retry_limit_exceeded_total", c, "Retryable requests not retried because the retry limit was reached.")  # fmt: skip
        self.retry_overflow = _Family(f"{p}retry_overflow_total", c, "Retryable requests not retried because of the retry budget or body size.")  # fmt: skip
        self.tcp_open_total = _Family("tcp_open_total", c, "Total count of opened connections.")
        self.tcp_open_connections = _Family("tcp_open_connections", g, "Number of currently-open connections.")  # fmt: skip
        self.tcp_read = _Family("tcp_read_bytes_total", c, "Total count of bytes read from peers.")  # fmt: skip
        self.tcp_write = _Family("tcp_write_bytes_total", c, "Total count of bytes written to peers.")  # fmt: skip
        self.tcp_close = _Family("tcp_close_total", c, "Total count of closed connections.")

    def all(self) -> tuple[_Family | _HistFamily, ...]:
        return tuple(vars(self).values())


# -- the registry ----------------------------------------------------------------------------


class ProxyMetrics:
    """All of one proxy's metrics. See the module docstring for what to call when."""

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
        self._fams = _Families()
        self._workload = tuple(
            (k, v) for k, v in (("namespace", namespace), (workload_kind, workload_name), ("pod", pod)) if v
        )  # fmt: skip
        self._workload_labels = _join(self._workload)
        self._inbound_authority = inbound_authority
        self.start_time = time.time() if start_time is None else start_time
        self._http: dict[tuple[object, ...], HttpKey] = {}
        self._routes: dict[tuple[str, str, str], RouteKey] = {}
        self._policy: dict[tuple[object, ...], PolicyRouteKey] = {}
        self._backends: dict[tuple[object, ...], BackendKey] = {}
        self._tcp: dict[tuple[object, ...], TcpKey] = {}
        self.tallies: dict[tuple[object, ...], PlainTally] = {}
        """`plain_tally`'s by their caller's key; the request path reads it directly."""

    def _base(self, direction: Direction, *pairs: tuple[str, str]) -> str:
        return _join((("direction", direction), *self._workload, *pairs))

    # -- legacy endpoint families --------------------------------------------------------

    def http(
        self,
        *,
        direction: Direction,
        authority: str,
        target_addr: tuple[str, int],
        dst_namespace: str = "",
        dst_service: str = "",
        tls: str = "disabled",
        no_tls_reason: str = "",
    ) -> HttpKey:
        """The key for one endpoint label set; cached, so calling it per request is cheap.
        `target_addr` is the address the request is sent to: inbound, the local address the
        app serves on; outbound, the endpoint the balancer picked. Inbound, `authority` is
        dropped (Linkerd's cardinality default) and so are ``dst_*``."""
        if direction == "inbound":
            dst_namespace = dst_service = ""
            if not self._inbound_authority:
                authority = ""
        ck = (direction, authority, target_addr, dst_namespace, dst_service, tls, no_tls_reason)
        key = self._http.get(ck)
        if key is None:
            pairs: list[tuple[str, str]] = [("authority", authority)] if authority else []
            pairs += _addr_labels(target_addr)
            pairs += _tls_labels(tls, no_tls_reason)
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
        _observe(key, status_code, grpc_status, error, latency_ms)

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
                _StatusSeries(labels, f.route_request_total, f.route_response_total, f.route_latency),
                _StatusSeries(labels, f.route_actual_request_total, f.route_actual_response_total, None),
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
        _observe(key.effective, status_code, grpc_status, error, latency_ms)

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
        _observe(key.actual, status_code, grpc_status, error, 0.0)

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
            extra = _join(
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
        _observe(route.actual, status_code, None, error, 0.0)
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
        _observe(key, status_code, grpc_status, error, latency_ms)
        if route is not None:
            route.effective.requests.v += 1
            _observe(route.effective, status_code, grpc_status, error, latency_ms)
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
        tls: str = "disabled",
        no_tls_reason: str = "",
        dst_namespace: str = "",
        dst_service: str = "",
    ) -> TcpKey:
        """The ``tcp_*`` key. ``peer="src"``: a connection we accepted; ``"dst"``: one we
        opened. ``dst_*`` are kept on outbound only."""
        if direction == "inbound":
            dst_namespace = dst_service = ""
        ck = (direction, peer, target_addr, tls, no_tls_reason, dst_namespace, dst_service)
        key = self._tcp.get(ck)
        if key is None:
            pairs = [("peer", peer), *_addr_labels(target_addr), *_tls_labels(tls, no_tls_reason)]
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
                f"{key.labels},{_join([('errno', errno)])}"
            )
        c.v += 1

    # -- exposition ----------------------------------------------------------------------

    def render(self) -> str:
        """The whole registry in the Prometheus text format 0.0.4: families in a fixed order,
        series sorted by their labels. Families without series are left out."""
        self.fold()
        out: list[str] = []
        for fam in self._fams.all():
            if fam.series:
                fam.render(out)
        w = f"{{{self._workload_labels}}}" if self._workload_labels else ""
        out.append(
            "# HELP process_start_time_seconds Time that the process started (in seconds since the UNIX epoch)\n"
            f"# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds{w} {self.start_time!r}\n"
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
            f"# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes{w} {resident_memory_bytes()}\n"
        )  # fmt: skip
        return "".join(out)


def resident_memory_bytes() -> int:
    """Current RSS from ``/proc/self/statm`` (a procfs read never waits on a disk), else the
    peak RSS that ``getrusage`` reports (in KiB on Linux)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
