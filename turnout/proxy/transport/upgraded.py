"""What an upstream connection becomes after `101 Switching Protocols`: an
`UpgradedConnection`, the upstream end of a tunnel that `ResponseWriter.tunnel` splices to
the client.

```
UpstreamPool.upgrade ─ 101 ─► UpgradedConnection(conn, response) ─► writer.tunnel(it)
   attach(peer): bytes the upstream sent after its 101 first, then every read ─► peer.send
   send(data) ─► the upstream socket        pause/resume_reading, close, wait_closed
```

The connection itself keeps reading (`upstream.UpstreamConnection.data_received` hands the
bytes of an upgraded connection to its `tunnel_peer`, or buffers them until `attach`);
this is the handle the tunnel holds. Never pooled again, no timeouts (the tunnel's ends
close it). Not here: the 101 exchange itself (`client.UpstreamPool.upgrade`).
"""

from __future__ import annotations

import asyncio
import logging

from turnout.proxy.transport.messages import TunnelEnd, UpstreamResponse
from turnout.proxy.transport.upstream import UpstreamConnection

log = logging.getLogger(__name__)


class UpgradedConnection:
    """An upstream connection after `101 Switching Protocols`, for `ResponseWriter.tunnel`.

    `response` is the 101 (its headers carry e.g. `Sec-WebSocket-Accept`); `protocol` is the
    upstream's `Upgrade` value. Bytes the upstream sent right after its 101 are kept until
    `attach()`.
    """

    __slots__ = ("_conn", "protocol", "response")

    def __init__(self, conn: UpstreamConnection, response: UpstreamResponse) -> None:
        self._conn = conn
        self.response = response
        """The upstream's 101 response."""
        self.protocol = next((v for k, v in response.headers if k.lower() == "upgrade"), "")
        """The `Upgrade` value the upstream agreed to ("websocket")."""

    def attach(self, peer: TunnelEnd) -> None:
        """Send everything the upstream sends (buffered bytes first) to `peer`."""
        conn = self._conn
        conn.tunnel_peer = peer
        buffered, conn.tunnel_buffer = conn.tunnel_buffer, []
        for data in buffered:
            peer.send(data)
        if conn.closed:
            peer.close()

    def send(self, data: bytes) -> None:
        conn = self._conn
        if conn.transport is not None and not conn.closed:
            conn.transport.write(data)
            assert conn.info is not None
            conn.info.bytes_written += len(data)

    def pause_reading(self) -> None:
        self._conn.pause_reading()

    def resume_reading(self) -> None:
        self._conn.resume_reading()

    def close(self) -> None:
        """Close after flushing what was written."""
        self._conn.close()

    @property
    def closed(self) -> bool:
        return self._conn.closed

    async def wait_closed(self) -> None:
        await asyncio.shield(self._conn.closed_waiter)
