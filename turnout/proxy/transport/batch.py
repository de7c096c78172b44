"""Writes held to the end of the event loop's round, then sent in one go.

```
downstream.write(data) / upstream start(bodiless head) ─► WriteBatch.write(transport, data)
   first write of the round ─► loop.call_soon(_round_end)
   ... every other callback of this round of ready sockets runs ...
_round_end ─► flush(): transport.write(data) for each, in order (closing ones skipped)
close / writelines ─► flush() first, so nothing held is lost or overtaken
```

A proxy that writes each answer the moment it has it wakes the peer (the client, the upstream)
once per write; holding the writes of one round of ready sockets until every callback of that
round has run sends them back to back, so a peer still busy with the first one needs no
second wake-up. One batch per listener (`downstream.Listener`) and one per pool
(`client.UpstreamPool.batch`).

Not here: flow control (a held write is not counted by `WriteFlow` until it reaches the
transport: `downstream`'s send timeout covers that), and merging writes into one buffer
(each stays its own `transport.write`).
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
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        for transport, data in pending:
            if not transport.is_closing():
                transport.write(data)
