"""Fault injection on a route (the `HTTPFault` filter config): delays and aborts, drawn per request.

```
Call.begin ── route has a Fault? ── delay_s(fault, draw) > 0 ─► a timer, then the request
Call._prepare ─ aborts(fault, draw) ─► fault.abort: its HTTP status, or gRPC: 200 with
                grpc-status / grpc-message; `l5d-proxy-error: fault injected` on both
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

log = logging.getLogger(__name__)


def delay_s(fault: Fault, draw: Callable[[int], bool]) -> float:
    """Seconds to hold this request before it goes on; 0.0: no delay this time."""
    if fault.delay_per_million and draw(fault.delay_per_million):
        return fault.delay_ms / 1000
    return 0.0


def aborts(fault: Fault, draw: Callable[[int], bool]) -> bool:
    """This request is answered by the fault instead of a backend."""
    return bool(fault.abort_per_million) and draw(fault.abort_per_million)
