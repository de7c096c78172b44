"""Fault injection on a route (the `HTTPFault` filter config): delays and aborts, drawn per request.

```
Call.begin ── route has a Fault? ── delay_s(fault, draw) > 0 ─► a timer, then the request
Call._prepare ─ aborts(fault, draw) ─► the abort: its HTTP status (body "fault
                injected"), or gRPC: 200 with grpc-status / grpc-message, no body
```

Delay and abort are independent draws, each with its own probability in millionths (as
Envoy's and Istio's fault filters): a request can be delayed and then aborted. A request on
a route without a fault never calls into this module. Upgrades (WebSocket) are delayed but
never aborted, as the request is routed before the tunnel.

Not here: response rate limits, header-controlled faults (Envoy's ``x-envoy-fault-*``),
aborts after the upstream answered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from turnout.proxy.actions import Fault
from turnout.proxy.transport.messages import Headers

log = logging.getLogger(__name__)

ABORT_BODY = b"fault injected"
"""The body of an HTTP abort."""


def delay_s(fault: Fault, draw: Callable[[int], bool]) -> float:
    """Seconds to hold this request before it goes on; 0.0: no delay this time."""
    if fault.delay_per_million and draw(fault.delay_per_million):
        return fault.delay_ms / 1000
    return 0.0


def aborts(fault: Fault, draw: Callable[[int], bool]) -> bool:
    """This request is answered by the fault instead of a backend."""
    return bool(fault.abort_per_million) and draw(fault.abort_per_million)


def grpc_abort_headers(grpc_status: int) -> Headers:
    """The trailers-only gRPC answer of an abort (HTTP 200, the status in the headers)."""
    return [
        ("content-type", "application/grpc"),
        ("grpc-status", str(grpc_status)),
        ("grpc-message", "fault injected"),
    ]
