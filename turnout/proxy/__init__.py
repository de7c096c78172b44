"""Turnout's proxy: the runtime table built from xDS and the functions that apply it.

```
xDS resources ──RuntimeTable.from_xds──> RuntimeTable ──decide()──> Decision
                                                        └─explain()─> Explanation
Decision ──apply_request_filters / apply_response_filters / redirect_location──> wire values
Host header ──listener_for_host──> listener name
```

Works from the Envoy protobufs only (docs/xds.md is the contract); it imports neither
`turnout.engine.model` nor kubernetes, and holds no HTTP client or server code yet.
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
