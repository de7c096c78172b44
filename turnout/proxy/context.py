"""What one request runs against: the `ProxyState` it read at its start, and its handler.

```
table update ──runner.Proxy.apply──> ProxyState(table, balancers, budgets, version)
                                        └── Handler.swap(state): new requests read it
request ── Handler ─► Call(h: CallContext, ..., state: ProxyState)
              the Call keeps both: its tries, retries and mirrors use that state's
              balancers and budgets even after a newer table has been swapped in
```

`ProxyState` is replaced as a whole, never changed: its balancers and budgets are plain
dicts holding this table's clusters only (the `Balancer`/`Budget` objects in them are shared
across tables, so their state carries over). `CallContext` is what a `Call` uses of the
`Handler` that made it (pool, direction, app, randomness, clock, mirrors), a Protocol so
that `call.py` does not import `handler.py`, which imports it.

Not here: building a state (`runner.Proxy.apply`), the request's flow (`call.py`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from turnout.proxy.actions import Decision
from turnout.proxy.balancer import Balancer
from turnout.proxy.budget import Budget
from turnout.proxy.clusters import ByCluster
from turnout.proxy.h2_call import Replay
from turnout.proxy.table import RuntimeTable
from turnout.proxy.transport.client import UpstreamPool
from turnout.proxy.transport.messages import Headers, IncomingRequest

log = logging.getLogger(__name__)

Direction = Literal["inbound", "outbound"]


@dataclass(frozen=True, slots=True)
class ProxyState:
    """Everything a request reads at its start; replaced whole on each table update."""

    table: RuntimeTable
    balancers: ByCluster[Balancer]
    """The table's clusters only, fixed for this state (not the live `Balancers`)."""
    budgets: ByCluster[Budget]
    """As `balancers`."""
    version: str = ""
    http2: frozenset[str] = frozenset()
    """The table's clusters whose upstreams speak HTTP/2 (`ClusterInfo.http2`: appProtocol
    h2c or grpc)."""
    resolved: dict[str, tuple[Balancer | None, Budget | None]] | None = field(
        init=False, repr=False, compare=False
    )
    """Derived from snapshot dicts (`runner.Proxy.apply`): cluster -> its balancer and
    budget, one look-up per request (`PlainCall.begin_plain`); None with the live objects."""

    def __post_init__(self) -> None:
        balancers, budgets = self.balancers, self.budgets
        resolved: dict[str, tuple[Balancer | None, Budget | None]] | None = None
        if isinstance(balancers, dict) and isinstance(budgets, dict):
            resolved = {c: (balancers.get(c), budgets.get(c)) for c in {*balancers, *budgets}}
        object.__setattr__(self, "resolved", resolved)


class CallContext(Protocol):
    """What a `Call` uses of the `Handler` (one listener's request path) that made it."""

    pool: UpstreamPool
    direction: Direction
    app: tuple[str, int] | None
    """Inbound only: where the local app listens."""
    rng: random.Random
    require_mtls: bool
    """Outbound: ``--require-mtls``, a request is never sent to an endpoint without an
    identity (502, `outbound_tls.py`)."""

    @property
    def clock(self) -> Callable[[], float]:
        """Monotonic seconds."""
        ...

    def draw(self, per_million: int) -> bool:
        """True with probability `per_million` / 1e6."""
        ...

    def mirror(
        self,
        decision: Decision,
        state: ProxyState,
        req: IncomingRequest,
        target: str,
        headers: Headers,
        body: bytes | Replay,
    ) -> None:
        """Send `decision`'s mirrored copies (a relayed body's as it is relayed); fire and
        forget."""
        ...
