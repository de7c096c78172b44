"""Timing and limits of the ADS server, with their defaults (`DEFAULT_*`), in one place.

Every duration is an `int` in milliseconds named `*_ms`, as everywhere in Turnout.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SEND_TIMEOUT_MS = 10_000
"""How long one DiscoveryResponse may wait for the client's flow-control window; a client
that reads nothing for this long has its stream closed (it reconnects and resyncs)."""

DEFAULT_STOP_GRACE_MS = 1_000
"""`stop()`: grace given to open streams before grpc cancels them."""

DEFAULT_STOP_TIMEOUT_MS = 5_000
"""`stop()` and per-stream cleanup: upper bound on waiting for tasks to end."""

DEFAULT_KEEPALIVE_MS = 60_000
"""HTTP/2 keepalive ping interval on idle streams (finds dead clients behind NATs)."""

DEFAULT_KEEPALIVE_TIMEOUT_MS = 20_000
"""A keepalive ping unanswered this long closes the connection."""

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest DiscoveryRequest/Response (a big RouteConfiguration is megabytes)."""

DEFAULT_HEAP_SETTLE_MS = 5_000
"""`mesh serve`'s `heap_settle_ms`: how long after a publish the heap is collected once."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """Settings of `AdsServer`; every field is in milliseconds except the message size."""

    send_timeout_ms: int = DEFAULT_SEND_TIMEOUT_MS
    stop_grace_ms: int = DEFAULT_STOP_GRACE_MS
    stop_timeout_ms: int = DEFAULT_STOP_TIMEOUT_MS
    keepalive_ms: int = DEFAULT_KEEPALIVE_MS
    keepalive_timeout_ms: int = DEFAULT_KEEPALIVE_TIMEOUT_MS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    heap_settle_ms: int = 0
    """0: off. Else a publish freezes the heap (`gc.freeze`: the tables leave the cyclic
    collector's scans, whose full pass over a 10k-route table pauses every stream ~0.8 s)
    and, this long after the first publish not yet settled, the heap is unfrozen, collected
    once (the old tables' cycles) and frozen again. It changes the whole process's GC, so
    only the process's owner turns it on (`mesh serve`)."""
