"""`H2Connections`: the client connections of one proxy, HTTP/2 and HTTP/1.1, drained when
it stops.

```
listeners: serve_http(..., http2=connections.take_over) ─► H2ServerConnection, counted;
   the listener keeps its HTTP/1.1 connections in `take_over.http1` (`Listener.conns`)
stop_proxy ─► drain(grace):
   HTTP/2: each one GOAWAY(NO_ERROR, its last stream) ─► open streams finish, newer ones
     refused ─► each closes after its last stream
   HTTP/1.1: idle keep-alive ones close now; busy ones answer their last request with
     `Connection: close` (unless its head is out already) and close after it
   after `grace`, the rest are closed (their requests end as client disconnects)
```

Envoy's drain and Linkerd's shutdown grace period do the same: GOAWAY for HTTP/2,
`Connection: close` for HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import contextlib

from turnout.proxy.transport.downstream import DownstreamConnection, Listener
from turnout.proxy.transport.h2_server import H2ServerConnection
from turnout.proxy.transport.messages import ConnectionInfo

DRAIN_POLL_S = 0.02
"""How often a drain looks whether the connections it waits for have closed."""


class Takeover:
    """The `downstream.Http2Takeover` of a proxy's listeners: its HTTP/2 connections are
    counted by `H2Connections`; `http1` keeps the listeners' HTTP/1.1 connections."""

    __slots__ = ("http1", "owner")

    def __init__(self, owner: H2Connections) -> None:
        self.owner = owner
        self.http1: set[DownstreamConnection] = set()

    def __call__(
        self, transport: asyncio.Transport, conn: ConnectionInfo, listener: Listener, data: bytes
    ) -> H2ServerConnection:
        h2conn = H2ServerConnection(transport, conn, listener)
        h2conn.registry = self.owner
        self.owner.open.add(h2conn)
        return h2conn


class H2Connections:
    """The client connections of one proxy, for a graceful stop: its listeners get
    `http2=connections.take_over`, and `drain` sends each HTTP/2 one a GOAWAY, asks each
    HTTP/1.1 one to close after its response, and waits for them (as Envoy's and Linkerd's
    drain do)."""

    def __init__(self) -> None:
        self.open: set[H2ServerConnection] = set()
        self.take_over = Takeover(self)

    @property
    def http1(self) -> set[DownstreamConnection]:
        return self.take_over.http1

    def closed(self, conn: H2ServerConnection) -> None:
        self.open.discard(conn)

    async def drain(self, timeout_s: float) -> None:
        """GOAWAY to every HTTP/2 connection, `drain()` to every HTTP/1.1 one; wait up to
        `timeout_s` for what runs to end, then close what is left."""
        for conn in list(self.open):
            conn.drain()
        for http1 in list(self.http1):
            http1.drain()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.open or self.http1:  # (only while stopping: a poll is enough)
                    await asyncio.sleep(DRAIN_POLL_S)
        for conn in list(self.open):
            conn.abort()
        for http1 in list(self.http1):
            http1.abort()
