"""Proxy defaults and the well-known names of docs/xds.md, kept together in one place.

Nothing here is computed; every "unset" the runtime table meets resolves to one of these
documented values.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

CLUSTER_DOMAIN = "cluster.local"
"""Kubernetes cluster domain: listener names are ``NAME.NS.svc.<CLUSTER_DOMAIN>:PORT``."""

DEFAULT_SERVICE_PORT = 80
"""Port assumed by `listener_for_host` when the Host header carries none."""

NO_ROUTE_STATUS = 404
"""Answer when no route matches (Gateway API: 404; for mesh the request is rejected)."""

INVALID_CLUSTER = "turnout/invalid"
"""The cluster invalid backends point at; it never has endpoints and is never contacted."""

METADATA_NAMESPACE = "turnout"
"""`filter_metadata` key under which the control plane puts what xDS has no field for."""

FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"
BACKEND_FILTER = "turnout.filters.http.backend"
"""`ClusterWeight.typed_per_filter_config` key of a backend's redirect or path rewrite
(docs/xds.md "Backend filters"); no HTTP filter of the chain has this name."""
ROUTER_FILTER = "envoy.filters.http.router"
HCM_FILTER = "envoy.filters.network.http_connection_manager"
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
"""A Gateway filter chain's transport socket for HTTPS (`listener_tls.py`)."""

UPSTREAM_SCHEME = "http"
"""Scheme of every upstream request: mesh traffic between sidecars is cleartext (h2c too)."""

DEFAULT_BACKOFF_MAX_FACTOR = 10
"""Envoy's default `retry_back_off.max_interval`: ten times the base interval."""

KNOWN_RETRY_ON = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "envoy-ratelimited",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)
"""`retry_policy.retry_on` tokens we accept (Envoy's router and gRPC sets); others NACK."""

# --- transport (turnout.proxy.transport): listener limits and upstream pool ---------------

DEFAULT_MAX_HEADER_BYTES = 16 * 1024
"""Request line plus header block, in bytes; beyond it the server answers 431 and closes (414
when the request-target alone is longer: RFC 9112 §3)."""

DEFAULT_MAX_HEADER_COUNT = 100
"""Header fields per request; beyond it the server answers 431 and closes."""

DEFAULT_HEADER_TIMEOUT_MS = 10_000
"""From a request's first byte to the end of its header block; on expiry 408 and close."""

DEFAULT_BODY_TIMEOUT_MS = 30_000
"""Longest wait for the next piece of a request body (an inactivity timeout, not a total)."""

DEFAULT_KEEPALIVE_TIMEOUT_MS = 60_000
"""An idle client connection (no request in progress) is closed after this long."""

DEFAULT_SEND_TIMEOUT_MS = 60_000
"""Longest wait for a slow reader to drain the write buffer before the connection is aborted."""

DEFAULT_MAX_PIPELINED = 32
"""Requests parsed ahead of the one being answered; beyond it the server stops reading."""

DEFAULT_READ_HIGH_WATER = 256 * 1024
"""Buffered body bytes (per message) above which a connection's reading is paused."""

DEFAULT_MAX_CONNECTIONS: int | None = None
"""Client connections one listener keeps at once; None means no limit."""

DEFAULT_H2_MAX_CONCURRENT_STREAMS = 100
"""HTTP/2 streams open at once on one client connection (Envoy's hardened value: 100)."""

DEFAULT_H2_INITIAL_WINDOW = 65_535
"""HTTP/2 per-stream receive window: unread request body bytes one stream may hold."""

DEFAULT_H2_CONNECTION_WINDOW = 1024 * 1024
"""HTTP/2 receive window of a whole client connection (1 MiB: one slow stream cannot starve
the others)."""

DEFAULT_CONNECT_TIMEOUT_MS = 1_000
"""TCP connect to an upstream endpoint."""

DEFAULT_POOL_IDLE_TIMEOUT_MS = 60_000
"""An idle pooled upstream connection is closed after this long (Envoy: 1 h; Go: 90 s)."""

DEFAULT_POOL_MAX_IDLE_PER_ENDPOINT = 64
"""Idle keep-alive connections kept per upstream ``(host, port)``; more are closed."""

DEFAULT_UPSTREAM_READ_TIMEOUT_MS: int | None = 60_000
"""Longest silence of an upstream on an exchange that has no deadline of its own (a route
without `timeouts.request` or `timeouts.backendRequest`, the inbound app): from the end of
the request to the response head, and between two reads of its body. Then 504 `upstream
read timeout`, or the client's connection reset when the response had started. None: wait
forever. nginx's `proxy_read_timeout` has the same meaning and default."""

DEFAULT_UPSTREAM_MAX_HEADER_BYTES = 16 * 1024
"""Header block of an upstream's response (names and values, each header counted with 4
bytes for ": " and CRLF), or the trailers of its body, as the listener's
`DEFAULT_MAX_HEADER_BYTES`; beyond it the exchange fails (502) and the connection is closed,
having read little more than this."""

DEFAULT_UPSTREAM_MAX_HEADER_COUNT = 100
"""Header fields of an upstream's response head, as the listener's
`DEFAULT_MAX_HEADER_COUNT`; beyond it the exchange fails (502) and the connection is closed."""

# --------------------------------------------------------------------------- balancer

DEFAULT_EWMA_RTT_MS = 30
"""Peak-EWMA estimate of an endpoint nothing was observed on yet: Linkerd's `default_rtt`
(`linkerd/linkerd2: policy-controller/grpc/src/outbound.rs`)."""

DEFAULT_EWMA_DECAY_MS = 10_000
"""Peak-EWMA time constant: Linkerd's `decay` (same source); tower's `PeakEwma` decay."""

DEFAULT_FAILURE_ACCRUAL_MAX_FAILURES = 7
"""Consecutive failed attempts that take an endpoint out of the balancer; 0 disables.
Linkerd's `balancer.linkerd.io/failure-accrual-consecutive-max-failures` default."""

DEFAULT_FAILURE_ACCRUAL_MIN_BACKOFF_MS = 1_000
"""First time out of the balancer; Linkerd's `…-consecutive-min-penalty` default (1s)."""

DEFAULT_FAILURE_ACCRUAL_MAX_BACKOFF_MS = 60_000
"""Longest time out of the balancer; Linkerd's `…-consecutive-max-penalty` default (1m)."""

DEFAULT_FAILURE_ACCRUAL_JITTER_PERCENT = 50
"""Each backoff is lengthened by up to this share; Linkerd's `…-consecutive-jitter-ratio` 0.5."""

# --------------------------------------------------------------------------- retry budget

DEFAULT_BUDGET_PERCENT = 20
"""Retries allowed as a share of requests when a cluster carries no `retryBudget` metadata:
GEP-3388 `budget.percent` default, Linkerd's `retryRatio: 0.2`. The budget defaults mirror
`turnout.engine.config`, which the compiler already applies; these cover other xDS sources."""

DEFAULT_BUDGET_INTERVAL_MS = 10_000
"""Window over which requests are counted: GEP-3388 `budget.interval` default, Linkerd's `ttl`."""

DEFAULT_MIN_RETRY_COUNT = 10
"""Retries always allowed per `DEFAULT_MIN_RETRY_INTERVAL_MS`: GEP-3388 `minRetryRate.count`,
Linkerd's `minRetriesPerSecond: 10`."""

DEFAULT_MIN_RETRY_INTERVAL_MS = 1_000
"""GEP-3388 `minRetryRate.interval` default (1s)."""

DEFAULT_BUDGET_SLOTS = 10
"""Buckets per window of the retry budget's sliding counters (tower's `TpsBudget` uses 10)."""

# --------------------------------------------------------------------------- xDS client (ADS)

DEFAULT_XDS_BACKOFF_BASE_MS = 500
"""First reconnect delay; each failed attempt doubles it, up to `DEFAULT_XDS_BACKOFF_MAX_MS`.
The delay actually slept is jittered down to half of it, so proxies restarted together
do not reconnect together."""

DEFAULT_XDS_BACKOFF_MAX_MS = 30_000
"""Cap of the reconnect delay (before jitter)."""

DEFAULT_XDS_CONNECT_TIMEOUT_MS = 5_000
"""Deadline to open the stream and send the first request (the channel fails fast)."""

DEFAULT_XDS_SEND_TIMEOUT_MS = 5_000
"""Deadline of one write on the stream; a stuck write means a dead stream."""

DEFAULT_XDS_IDLE_TIMEOUT_MS = 600_000
"""Inactivity watchdog: no response for this long and the stream is reopened (a resync,
harmless when nothing changed). Dead TCP peers are caught sooner by the keepalive."""

DEFAULT_XDS_DEPENDENCY_TIMEOUT_MS = 15_000
"""How long an update may wait for the RouteConfigurations, Clusters and load assignments it
names before the client builds anyway, so a missing one is NACKed instead of waited for
forever (Envoy's `initial_fetch_timeout` and gRPC's does-not-exist timer are 15 s). The wait
never holds the stream: responses are ACKed as they arrive (`xds_resources.py`)."""

DEFAULT_XDS_KEEPALIVE_MS = 300_000
"""HTTP/2 ping interval on the ADS channel; gRPC servers refuse pings more frequent than
5 minutes by default (GOAWAY too_many_pings)."""

DEFAULT_XDS_KEEPALIVE_TIMEOUT_MS = 20_000
"""A ping unanswered for this long closes the channel (and the stream reconnects)."""

DEFAULT_XDS_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest DiscoveryResponse accepted (gRPC's default of 4 MiB is too small for big meshes)."""

DEFAULT_XDS_DELTA = True
"""Our proxy speaks delta (incremental) xDS: a change sends only the resources it touched."""
DEFAULT_XDS_STOP_TIMEOUT_MS = 5_000
"""Deadline for closing the channel when the client stops or a stream ends."""

MAX_XDS_ERROR_DETAIL_CHARS = 4_096
"""A NACK's `error_detail.message` is truncated to this many characters."""
