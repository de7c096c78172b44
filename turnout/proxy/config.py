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
ROUTER_FILTER = "envoy.filters.http.router"
HCM_FILTER = "envoy.filters.network.http_connection_manager"

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
