"""Turnout's proxy: xDS in, a runtime table, and the HTTP/1.1 request path that applies it.

```
table source: -f (StaticTable) | --xds (xds_client + xds_resources) ──> RuntimeTable.from_xds
  RuntimeTable (table, routes, index, matching, hosts, policies, clusters, actions)
     decide(request, listener=) -> Decision       explain(...) -> Explanation (mesh routes explain)
request path: transport.server ─► handler (listener, decide) ─► call (the flow: filters,
  faults, retries, balancer, budget, answers) ─► transport.client ─► the backend
reporting: telemetry ─► metrics (families, registry) and tap ─► admin /metrics /ready /tap
process: runner (one proxy: listeners, admin, table swaps), workers (`mesh proxy`, N
  processes), process (what a proxy is given: ProxyConfig, TableSource, SourceSpec)
```

This package's names are the table API that `mesh routes explain`, `mesh test` and the tests
use without a running proxy (`RuntimeTable`, `Decision` and its parts, `apply_*_filters`,
`listener_for_host`); the running proxy is `workers.run_proxy`. It is Turnout's data plane,
with its own HTTP/1.1 server and client (`transport/`), and works from the Envoy protobufs
only (docs/xds.md is the contract, docs/proxy.md the design): it imports neither
`turnout.engine` nor kubernetes.
"""

from __future__ import annotations

import logging

from turnout.proxy.actions import (
    Action,
    Backend,
    Cors,
    Decision,
    DirectResponse,
    Fault,
    Forward,
    InvalidBackend,
    Mirror,
    Redirect,
    RetryPolicy,
    RouteRef,
)
from turnout.proxy.errors import ProxyError, TableError
from turnout.proxy.explain import Explanation, RouteVerdict
from turnout.proxy.filters import apply_request_filters, apply_response_filters, redirect_location
from turnout.proxy.hosts import listener_for_host
from turnout.proxy.request import RequestInfo, UpstreamRequest
from turnout.proxy.table import NO_LISTENER, NO_ROUTE, RuntimeTable

log = logging.getLogger(__name__)

__all__ = [
    "NO_LISTENER",
    "NO_ROUTE",
    "Action",
    "Backend",
    "Cors",
    "Decision",
    "DirectResponse",
    "Explanation",
    "Fault",
    "Forward",
    "InvalidBackend",
    "Mirror",
    "ProxyError",
    "Redirect",
    "RequestInfo",
    "RetryPolicy",
    "RouteRef",
    "RouteVerdict",
    "RuntimeTable",
    "TableError",
    "UpstreamRequest",
    "apply_request_filters",
    "apply_response_filters",
    "listener_for_host",
    "redirect_location",
]
