"""`H2Connections`: the HTTP/2 client connections of one proxy, drained when it stops.

```
listeners: serve_http(..., http2=connections.take_over) ─► H2ServerConnection, counted
stop_proxy ─► drain(grace): each one GOAWAY(NO_ERROR, its last stream) ─► open streams
   finish, newer ones refused ─► each closes after its last stream; after `grace`, the
   rest are closed (their streams end as client disconnects)
```

Envoy's drain and Linkerd's shutdown grace period do the same for HTTP/2. HTTP/1.1
connections are not drained here (their keep-alive timeout ends them).
"""

from __future__ import annotations

import asyncio
import contextlib

from turnout.proxy.transport.downstream import Listener
from turnout.proxy.transport.h2_server import H2ServerConnection
from turnout.proxy.transport.messages import ConnectionInfo


class H2Connections:
    """The HTTP/2 client connections of one proxy, for a graceful stop: its listeners get
    `http2=connections.take_over`, and `drain` sends each a GOAWAY and waits for their
    streams (as Envoy's and Linkerd's drain do)."""

    def __init__(self) -> None:
        self.open: set[H2ServerConnection] = set()
        self._empty: asyncio.Future[None] | None = None

    def take_over(
        self, transport: asyncio.Transport, conn: ConnectionInfo, listener: Listener, data: bytes
    ) -> H2ServerConnection:
        """`take_over`, the connection counted until it closes."""
        h2conn = H2ServerConnection(transport, conn, listener)
        h2conn.registry = self
        self.open.add(h2conn)
        return h2conn

    def closed(self, conn: H2ServerConnection) -> None:
        self.open.discard(conn)
        if not self.open and self._empty is not None and not self._empty.done():
            self._empty.set_result(None)

    async def drain(self, timeout_s: float) -> None:
        """GOAWAY to every connection; wait up to `timeout_s` for their streams to end,
        then close what is left (its streams reset)."""
        for conn in list(self.open):
            conn.drain()
        if self.open:
            self._empty = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._empty
        for conn in list(self.open):
            conn.abort()
