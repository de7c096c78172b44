"""Linkerd's proxy metric families: their names, help texts and labels, and the series keys.

Flagger's built-in Linkerd queries, `linkerd viz` and the Linkerd Grafana dashboards read the
proxy's own series by name and label (docs: LINKERD-REFERENCE.md §a, FLAGGER-CONTRACT.md §7.3),
so what this module names is Linkerd's: family names, label names, ``error`` label values,
the response classes (``classify``) and the gRPC code names.

```
LinkerdFamilies()  every family, in emission order (requests, latency, responses, ...)
HttpKey / RouteKey / PolicyRouteKey / BackendKey / TcpKey
    one label set and the cells it counts in (built once per distinct combination)
observe(series, status_code, grpc_status, error, latency_ms)
    one outcome: the status/classification/error counter, and the latency histogram
```

Keys are built by `ProxyMetrics` (`metrics.py`), which knows which labels each call site
gives; the cells, families and the text format are `registry.py`'s. Not here: series expiry,
``srv_*``/``authz_*`` policy labels, seconds-based duration histograms of the policy
families.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from typing import Final, Literal

from turnout.proxy.registry import (
    LATENCY_BOUNDS_MS,
    Cell,
    Family,
    Histogram,
    HistogramFamily,
    join_labels,
)

log = logging.getLogger(__name__)

Direction = Literal["inbound", "outbound"]
Peer = Literal["src", "dst"]

UNKNOWN_AUTHORITY: Final = "unknown"
"""``authority`` of an outbound request whose Host names nothing in the table (no Service
listener, no virtual host): one series for all of them, so clients cannot choose labels."""
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


def addr_labels(addr: tuple[str, int]) -> tuple[tuple[str, str], ...]:
    ip, port = addr
    text = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    return (("target_addr", text), ("target_ip", ip), ("target_port", str(port)))


def tls_labels(status: tuple[str, str, str]) -> tuple[tuple[str, str], ...]:
    """Linkerd's TLS labels of a `transport.messages.TlsStatus`: ``tls`` then, unless it is
    ``disabled``, ``client_id`` (inbound), ``server_id`` (outbound) or ``no_tls_reason``."""
    tls, name, value = status
    return (("tls", tls), (name, value)) if name else (("tls", tls),)


def classify(status_code: int | None, grpc_status: int | None, error: str) -> str:
    """Linkerd's default response class: ``failure`` or ``success``."""
    if error or status_code is None or status_code >= 500:
        return "failure"
    return "failure" if grpc_status else "success"


# -- cells and families ---------------------------------------------------------------------


# -- series keys: a label set and its cells, looked up once -------------------------------


class Outcome:
    __slots__ = ("latency", "total")

    def __init__(self, total: Cell, latency: Histogram | None) -> None:
        self.total, self.latency = total, latency


class StatusSeries:
    """Requests plus responses by outcome for one label set (legacy ``*request_total`` /
    ``*response_total`` / ``*response_latency_ms``)."""

    __slots__ = ("fast", "labels", "latency_family", "outcomes", "requests", "total_family")

    def __init__(
        self, labels: str, requests: Family, total: Family, latency: HistogramFamily | None
    ) -> None:
        self.labels = labels
        self.requests = requests.cell(labels)
        self.total_family, self.latency_family = total, latency
        self.fast: dict[int | None, Outcome] = {}
        """Outcomes without gRPC status or error, by status code: the common case."""
        self.outcomes: dict[tuple[int | None, int | None, str], Outcome] = {}

    def outcome(self, status_code: int | None, grpc_status: int | None, error: str) -> Outcome:
        o = self.outcomes.get((status_code, grpc_status, error))
        if o is not None:
            return o
        code = "" if status_code is None else str(status_code)
        total = self.total_family.cell(
            self.labels
            + ","
            + join_labels(
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
        o = self.outcomes[(status_code, grpc_status, error)] = Outcome(total, latency)
        if grpc_status is None and not error:
            self.fast[status_code] = o
        return o


class HttpKey(StatusSeries):
    """Label set of the legacy endpoint families; from `ProxyMetrics.http`."""

    __slots__ = ()


class RouteKey:
    """Label set of the ``route_*`` families; from `ProxyMetrics.route`."""

    __slots__ = ("actual", "effective")

    def __init__(self, effective: StatusSeries, actual: StatusSeries) -> None:
        self.effective, self.actual = effective, actual


class Statuses:
    """Counter by (http_status, grpc_status, error) for the policy families."""

    __slots__ = ("by", "family", "fast", "labels")

    def __init__(self, family: Family, labels: str) -> None:
        self.family, self.labels = family, labels
        self.by: dict[tuple[int | None, int | None, str], Cell] = {}
        self.fast: dict[int | None, Cell] = {}
        """Counters without gRPC status or error, by HTTP status: the common case."""

    def count(self, status_code: int | None, grpc_status: int | None, error: str) -> None:
        if grpc_status is None and not error:
            c = self.fast.get(status_code)
            if c is not None:
                c.v += 1
                return
        self.cell(status_code, grpc_status, error).v += 1

    def cell(self, status_code: int | None, grpc_status: int | None, error: str) -> Cell:
        c = self.by.get((status_code, grpc_status, error))
        if c is None:
            grpc = "" if grpc_status is None else grpc_name(grpc_status)
            http = "" if status_code is None else str(status_code)
            extra = join_labels((("http_status", http), ("grpc_status", grpc), ("error", error)))
            c = self.by[(status_code, grpc_status, error)] = self.family.cell(
                f"{self.labels},{extra}"
            )
            if grpc_status is None and not error:
                self.fast[status_code] = c
        return c


def observe(
    series: StatusSeries,
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


def grpc_name(code: int) -> str:
    return GRPC_STATUS_NAMES[code] if 0 <= code < len(GRPC_STATUS_NAMES) else str(code)


class PolicyRouteKey:
    """Label set of the ``outbound_http_route_*`` families; from `ProxyMetrics.policy_route`."""

    __slots__ = ("base", "limit_exceeded", "overflow", "retries", "statuses", "successes")

    def __init__(self, base: str, hostname: str, fams: LinkerdFamilies) -> None:
        self.base = base
        """Workload, parent and route labels (no hostname): what backend series extend."""
        self.statuses = Statuses(
            fams.route_statuses, f"{base},{join_labels([('hostname', hostname)])}"
        )
        self.retries = fams.retry_requests.cell(base)
        self.successes = fams.retry_successes.cell(base)
        self.limit_exceeded = fams.retry_limit.cell(base)
        self.overflow = fams.retry_overflow.cell(base)


class BackendKey:
    """Label set of the ``outbound_http_route_backend_*`` families."""

    __slots__ = ("requests", "statuses")

    def __init__(self, labels: str, fams: LinkerdFamilies) -> None:
        self.requests = fams.backend_requests.cell(labels)
        self.statuses = Statuses(fams.backend_statuses, labels)


class TcpKey:
    """Label set of the ``tcp_*`` families; from `ProxyMetrics.tcp`."""

    __slots__ = ("close_family", "closes", "labels", "open", "opened", "read", "write")

    def __init__(self, labels: str, fams: LinkerdFamilies) -> None:
        self.labels = labels
        self.opened = fams.tcp_open_total.cell(labels)
        self.open = fams.tcp_open_connections.cell(labels)
        self.read = fams.tcp_read.cell(labels)
        self.write = fams.tcp_write.cell(labels)
        self.close_family = fams.tcp_close
        self.closes: dict[str, Cell] = {}


class LinkerdFamilies:
    """Every family, in emission order (Linkerd's: requests, latency, responses)."""

    def __init__(self) -> None:
        c, g, h = "counter", "gauge", HistogramFamily
        self.request_total = Family("request_total", c, "Total count of HTTP requests.")
        self.response_latency = h("response_latency_ms", "Elapsed times between a request's headers being received and its response headers, in milliseconds.")  # fmt: skip
        self.response_total = Family("response_total", c, "Total count of HTTP responses.")
        self.route_request_total = Family("route_request_total", c, "Total count of HTTP requests by route.")  # fmt: skip
        self.route_latency = h("route_response_latency_ms", "Elapsed times between a request's headers being received and its response headers, in milliseconds, by route.")  # fmt: skip
        self.route_response_total = Family("route_response_total", c, "Total count of HTTP responses by route.")  # fmt: skip
        self.route_actual_request_total = Family("route_actual_request_total", c, "Total count of HTTP requests by route, including retries.")  # fmt: skip
        self.route_actual_response_total = Family("route_actual_response_total", c, "Total count of HTTP responses by route, including retries.")  # fmt: skip
        p = "outbound_http_route_"
        self.route_statuses = Family(f"{p}request_statuses_total", c, "Completed route requests by status and error.")  # fmt: skip
        self.backend_requests = Family(f"{p}backend_requests_total", c, "Requests dispatched to a route backend.")  # fmt: skip
        self.backend_statuses = Family(f"{p}backend_response_statuses_total", c, "Completed route backend responses by status and error.")  # fmt: skip
        self.retry_requests = Family(f"{p}retry_requests_total", c, "Retry requests emitted.")
        self.retry_successes = Family(f"{p}retry_successes_total", c, "Successful responses to retry requests.")  # fmt: skip
        self.retry_limit = Family(f"{p}retry_limit_exceeded_total", c, "Retryable requests not retried because the retry limit was reached.")  # fmt: skip
        self.retry_overflow = Family(f"{p}retry_overflow_total", c, "Retryable requests not retried because of the retry budget or body size.")  # fmt: skip
        self.tcp_open_total = Family("tcp_open_total", c, "Total count of opened connections.")
        self.tcp_open_connections = Family("tcp_open_connections", g, "Number of currently-open connections.")  # fmt: skip
        self.tcp_read = Family("tcp_read_bytes_total", c, "Total count of bytes read from peers.")  # fmt: skip
        self.tcp_write = Family("tcp_write_bytes_total", c, "Total count of bytes written to peers.")  # fmt: skip
        self.tcp_close = Family("tcp_close_total", c, "Total count of closed connections.")
        self.identity_expiration = Family("identity_cert_expiration_timestamp_seconds", g, "Time when this proxy's current mTLS identity certificate will expire (in seconds since the UNIX epoch).")  # fmt: skip
        self.identity_refresh = Family("identity_cert_refresh_count", c, "The total number of times this proxy's mTLS identity certificate has been refreshed by the Identity service.")  # fmt: skip

    def all(self) -> tuple[Family | HistogramFamily, ...]:
        return tuple(vars(self).values())


# -- the registry ----------------------------------------------------------------------------
