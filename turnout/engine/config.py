"""Engine defaults, kept together so that every "unset" has one documented value."""

from __future__ import annotations

from typing import Literal

CONTROLLER_NAME = "turnout.dev/gateway-controller"
"""`GatewayClass.spec.controllerName` (and `status.parents[].controllerName`) that is ours."""

POLICY_GROUP = "policy.turnout.dev"
"""API group of Turnout's own CRDs (FaultInjection)."""

CLUSTER_DOMAIN = "cluster.local"
"""Kubernetes cluster domain used in Service FQDNs and xDS listener names."""

DEFAULT_REQUEST_TIMEOUT_MS: int | None = None
"""Route `timeouts.request` when unset: no deadline, as Linkerd and Envoy do by default."""

DEFAULT_BACKEND_REQUEST_TIMEOUT_MS: int | None = None
"""Route `timeouts.backendRequest` when unset: no per-try deadline."""

DEFAULT_RETRY_ATTEMPTS = 1
"""GEP-1731 `retry.attempts` when a `retry` stanza omits it (retries after the first try)."""

DEFAULT_RETRY_BACKOFF_MS = 25
"""GEP-1731 `retry.backoff` when unset: Envoy's base interval, the minimum wait between tries."""

DEFAULT_RETRY_CODES: tuple[int, ...] = ()
"""GEP-1731 `retry.codes` when unset: only connection errors are retried."""

DEFAULT_BUDGET_PERCENT = 20
"""Retry budget: retries may add this percentage of requests (Linkerd's and GEP-3388's default)."""

DEFAULT_BUDGET_INTERVAL_MS = 10_000
"""Retry budget window (GEP-3388 `budget.interval` default 10s)."""

DEFAULT_MIN_RETRY_COUNT = 10
"""Retries always allowed per `DEFAULT_MIN_RETRY_INTERVAL_MS` whatever the budget (GEP-3388)."""

DEFAULT_MIN_RETRY_INTERVAL_MS = 1_000
"""Interval of the minimum retry rate (GEP-3388 `minRetryRate.interval` default 1s)."""

INVALID_BACKEND_STATUS = 500
"""HTTP status for the share of an invalid backendRef (Gateway API: 500)."""

NO_BACKEND_STATUS = 500
"""HTTP status for a rule whose weights are all zero or that has no backendRefs.

Gateway API leaves "all weights 0" open; we treat it like the all-invalid rule (500 = no usable
backend), which is also what Envoy answers for a route with no usable weighted cluster.
"""

NO_ROUTE_STATUS = 404
"""HTTP status when no rule of the parent matches."""

DEFAULT_REDIRECT_STATUS = 302
"""`requestRedirect.statusCode` default."""

DEFAULT_XDS_ADDRESS = "127.0.0.1:18000"
"""`mesh serve --xds`: where the ADS server listens (gRPC)."""

DEFAULT_ADMIN_ADDRESS = "127.0.0.1:18001"
"""`mesh serve --admin` (/ready, /metrics, /debug/...), and where `mesh routes` finds the
local control plane when no `-f` is given (`--control-plane`)."""

DEFAULT_PROMETHEUS_ADDRESS = "127.0.0.1:9090"
"""Where `mesh serve --prometheus` (given no address) has its Prometheus listen."""

MAX_DOCUMENT_BYTES = 3 * 1024 * 1024
"""Largest YAML document (one object, or one `kind: List`) a manifest may hold: the API
server's request limit (3 MiB), so what loads here could also be applied to a cluster."""

DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024
"""Largest manifest file read (`--max-file-size`): several documents of up to
`MAX_DOCUMENT_BYTES` each (10,000 routes as `mesh` writes them take 5 MiB)."""

MAX_DOCUMENT_NODES = 1_000_000
"""Most values (mappings, lists, scalars) one document may hold, each alias counted as the
values it repeats: a YAML alias bomb ("billion laughs") expands past it in a few levels and
is refused before anything walks the expansion."""

MAX_DOCUMENT_DEPTH = 100
"""Deepest nesting of mappings and lists in a document (an HTTPRoute is 8 deep, the Gateway
API CRDs 24); deeper input would exhaust Python's recursion limit in the stages after it."""

# --------------------------------------------------------------------------- authorization

DEFAULT_INBOUND_POLICY: Literal["all-unauthenticated"] = "all-unauthenticated"
"""Linkerd's cluster default (`proxy.defaultInboundPolicy`): a port with no Server, in a
namespace without `config.linkerd.io/default-inbound-policy`, allows every client."""

DEFAULT_CLUSTER_NETWORKS: tuple[str, ...] = (
    "10.0.0.0/8",
    "100.64.0.0/10",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fd00::/8",
)
"""Linkerd's `clusterNetworks` Helm default: what the `cluster-*` default policies admit."""

DEFAULT_ISTIO_ROOT_NAMESPACE = "istio-system"
"""Istio's root namespace: an AuthorizationPolicy there applies mesh-wide."""

DEFAULT_POLICY_ANNOTATION = "config.linkerd.io/default-inbound-policy"
"""The Namespace annotation that overrides the cluster default policy for its workloads."""

OPAQUE_PORTS_ANNOTATION = "config.linkerd.io/opaque-ports"
"""Service or Namespace annotation: ports (``25,3306,4000-4100``) that carry no HTTP, so the
proxy skips protocol detection."""

SERVER_FIRST_PORTS: dict[int, str] = {
    25: "SMTP",
    587: "SMTP submission",
    3306: "MySQL",
    4444: "Galera",
    5432: "PostgreSQL",
    6379: "Redis",
    9300: "Elasticsearch",
    11211: "Memcached",
}
"""Linkerd's default opaque ports: protocols where the server speaks first, so a proxy
waiting for the client's first bytes (protocol detection) stalls until its timeout."""
