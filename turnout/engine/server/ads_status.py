"""What the ADS server reports about itself: one `StreamStatus` per open stream and the
`ServerStatus` around them (for `/debug` endpoints, `mesh tap`'s fan-in and tests), and the
`AdsMetrics` counters (one increment per xDS message, none per proxied request).

```
AdsServer.status() ──> ServerStatus(version, streams=(StreamStatus, ...), nacks)
AdsServer.metrics  ──> AdsMetrics: turnout_xds_{pushes,acks,nacks}_total{type_url}
```
"""

from __future__ import annotations

from dataclasses import dataclass, field

from turnout.engine.metrics import Counter
from turnout.engine.server.streams import Nack, SyncState


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStatus:
    """One open stream, for `/debug` endpoints and tests."""

    peer: str
    node_id: str
    namespace: str | None
    """The consumer view it gets; None = producer routes only."""
    acked: dict[str, str]
    """LDS/RDS/CDS/EDS/POLICY -> last ACKed version."""
    subscriptions: dict[str, tuple[str, ...]]
    """LDS/RDS/CDS/EDS/POLICY -> subscribed names (``("*",)`` = wildcard)."""
    nacks: tuple[Nack, ...]
    """The last unresolved NACK per type."""
    workload: str = ""
    """Node metadata `workload`."""
    pod: str = ""
    """Node metadata `pod` ("" = not sent)."""
    admin: str = ""
    """Node metadata `admin`: the proxy's admin ``HOST:PORT`` ("" = not sent)."""
    labels: dict[str, str] = field(default_factory=dict)
    """Node metadata `labels` (the workload's labels, as the proxy sent them)."""
    sent: dict[str, str] = field(default_factory=dict)
    """LDS/RDS/CDS/EDS/POLICY -> version of the last response sent."""
    sync: dict[str, SyncState] = field(default_factory=dict)
    """LDS/RDS/CDS/EDS/POLICY -> SYNCED/STALE/NOT SENT/IGNORED against the current table."""
    protocol: str = "sotw"
    """"delta" (`DeltaAggregatedResources`) or "sotw" (`StreamAggregatedResources`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStatus:
    version: int
    """Version of the current table; 0 = nothing published yet."""
    streams: tuple[StreamStatus, ...]
    nacks: int
    """NACKs received since start."""


def _by_type(name: str, help_text: str) -> Counter:
    return Counter(name, help_text, ("type_url",))


@dataclass(slots=True)
class AdsMetrics:
    """The ADS server's counters, by type URL; one increment per xDS message, none per
    proxied request."""

    pushes: Counter = field(
        default_factory=lambda: _by_type(
            "turnout_xds_pushes_total", "DiscoveryResponses sent to clients."
        )
    )
    acks: Counter = field(
        default_factory=lambda: _by_type("turnout_xds_acks_total", "Responses clients ACKed.")
    )
    nacks: Counter = field(
        default_factory=lambda: _by_type(
            "turnout_xds_nacks_total", "Responses clients rejected (NACKed)."
        )
    )
