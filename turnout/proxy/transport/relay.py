"""Forwarded TCP over mesh TLS: a byte relay between two asyncio transports, one of them
TLS (`detect.py`: outbound to a meshed endpoint, inbound to the app after termination).

```
Relay ─ client (_End) ◄─► upstream (_End)
   data_received(a) ─► b.send: written to b's transport (held until b is connected: a
                       server-first greeting arrives before the other end exists)
   a's writes over the high-water mark ─► the other end's reading paused (resumed below it)
   eof on a plain end ─► write_eof on the other (half-close) when it can (TLS cannot: it closes
                       after flushing what is written, as an end of stream over TLS does)
   either end lost ─► the other closed (after flushing); both lost ─► `done`
```

Plaintext forwarding stays on raw sockets (`detect._pump`); this runs only when a TLS end is
needed, per connection, nothing per chunk but the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import cast


class _End(asyncio.Protocol):
    """One side of a `Relay`."""

    __slots__ = ("_held", "count", "eof", "lost", "peer", "relay", "transport")

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.peer: _End = self
        self.transport: asyncio.Transport | None = None
        self._held: list[bytes] = []
        self.count = 0
        """Bytes received from this end."""
        self.eof = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t = cast(asyncio.Transport, transport)
        if self._held:
            t.write(b"".join(self._held))
            self._held.clear()
        if self.peer.lost:
            t.close()
        elif self.peer.eof:
            self._half_close()

    def send(self, data: bytes) -> None:
        if self.transport is None:
            self._held.append(data)
        elif not self.lost:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.count += len(data)
        self.peer.send(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.peer.transport is not None:
            self.peer._half_close()
        if self.peer.eof and self.transport is not None:
            self.transport.close()
        return True

    def _half_close(self) -> None:
        t = self.transport
        if t is None or self.lost:
            return
        if t.can_write_eof():
            t.write_eof()
        else:
            t.close()

    def pause_writing(self) -> None:
        if self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer.transport is not None and not self.peer.lost:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.peer.transport is not None and not self.peer.lost:
            self.peer.transport.close()
        self.relay.ended(exc)


class Relay:
    """A relay's two ends (`client`: the accepted connection; `upstream`: the one the proxy
    opened) and `done`: set once both are lost (with the first error, None: clean)."""

    __slots__ = ("_error", "client", "done", "upstream")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.client, self.upstream = _End(self), _End(self)
        self.client.peer, self.upstream.peer = self.upstream, self.client
        self.done: asyncio.Future[Exception | None] = loop.create_future()
        self._error: Exception | None = None

    def ended(self, exc: Exception | None) -> None:
        if exc is not None and self._error is None:
            self._error = exc
        if self.client.lost and self.upstream.lost and not self.done.done():
            self.done.set_result(self._error)

    def abandon(self) -> None:
        """The upstream end never connected: the client end closes, `done` is set."""
        self.upstream.lost = True
        client = self.client.transport
        if client is not None and not self.client.lost:
            reset(client)
        else:
            self.client.lost = True
            self.ended(None)


def reset(transport: asyncio.Transport) -> None:
    """Abort `transport` with a RST (SO_LINGER 0), as Linkerd refuses a connection."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
