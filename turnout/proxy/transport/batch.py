"""Writes held to the end of the event loop's round, then sent in one go.

A proxy that writes each answer the moment it has it wakes the peer (the client, the upstream)
once per write; holding the writes of one round of ready sockets until every callback of that
round has run sends them back to back, so a peer still busy with the first one needs no
second wake-up. `flush()` first is how to close a connection without losing what is held.
"""

from __future__ import annotations

import asyncio


class WriteBatch:
    """Writes held until the end of the loop's current round (a listener's, a pool's)."""

    __slots__ = ("_loop", "_pending", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[tuple[asyncio.WriteTransport, bytes]] = []
        self._scheduled = False

    def write(self, transport: asyncio.WriteTransport, data: bytes) -> None:
        self._pending.append((transport, data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._round_end)

    def _round_end(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Send what is held now (before a close, and at the end of each round)."""
        pending, self._pending = self._pending, []
        for transport, data in pending:
            if not transport.is_closing():
                transport.write(data)
