"""`mesh proxy --service-listeners`: one listening socket per Service address in the table.

```
apply(table) ─► ServiceListeners.update(state) ─ handlers of kept addresses swap the state
                 └─ sync task (one at a time): bind each new ClusterIP:port (a Handler whose
                    `address` is it: that Service is every request's destination), close
                    the ones the table dropped; /ready waits for it
```

This is the explicit form of "the destination is the address the client connected to"
(`destinations.py`): without transparent capture, each Service address the table knows is
a socket of its own, so the socket a request arrived on names its Service. An address that
cannot be bound (not an address of this host, already in use) is said once as a warning and
skipped; the other addresses serve. Connections on a closed address's socket finish on
their own, as on any server close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from turnout.proxy.context import ProxyState
from turnout.proxy.handler import Handler
from turnout.proxy.transport.downstream import Http2Takeover
from turnout.proxy.transport.h2_server import take_over
from turnout.proxy.transport.server import serve_http

log = logging.getLogger(__name__)

Address = tuple[str, int]


@dataclass(slots=True)
class ServiceListeners:
    """The sockets of one proxy process (see the module docstring)."""

    make_handler: Callable[[Address], Handler]
    reuse_port: bool = False
    http2: Http2Takeover = take_over
    """Who serves a connection opening with the HTTP/2 preface (the proxy's, drained on stop)."""
    servers: dict[Address, tuple[asyncio.Server, Handler]] = field(default_factory=dict)
    failed: set[Address] = field(default_factory=set)
    """Addresses that could not be bound (tried again once the table drops and re-adds them)."""
    wanted: frozenset[Address] = frozenset()
    state: ProxyState | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def synced(self) -> bool:
        return self.wanted == (self.servers.keys() | self.failed)

    def update(self, state: ProxyState) -> None:
        """Follow a table: swap it into every handler, bind and close in the background."""
        self.state = state
        self.wanted = frozenset(state.table.destinations.services)
        self.failed &= self.wanted
        for _, handler in self.servers.values():
            handler.swap(state)
        if not self.synced and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(
                self._sync(), name="service listeners"
            )

    async def _sync(self) -> None:
        while not self.synced:
            state = self.state
            assert state is not None
            for address in sorted(self.servers.keys() - self.wanted):
                server, handler = self.servers.pop(address)
                server.close()
                await handler.aclose()
                log.info("service listener closed address=%s:%d", *address)
            for address in sorted(self.wanted - self.servers.keys() - self.failed):
                handler = self.make_handler(address)
                handler.swap(state)
                try:
                    server = await serve_http(
                        handler,
                        host=address[0],
                        port=address[1],
                        reuse_port=self.reuse_port,
                        http2=self.http2,
                    )
                except OSError as exc:
                    self.failed.add(address)
                    log.warning(
                        "service listener not bound address=%s:%d: %s",
                        *address,
                        exc.strerror or exc,
                    )
                    continue
                self.servers[address] = (server, handler)
        # a newer table may have arrived while binding: every handler gets the latest
        latest = self.state
        assert latest is not None
        for _, handler in self.servers.values():
            if handler.state is not latest:
                handler.swap(latest)

    def bound(self) -> list[Address]:
        """The addresses served now, with the ports actually bound."""
        out = []
        for server, _ in self.servers.values():
            host, port = server.sockets[0].getsockname()[:2]
            out.append((str(host), int(port)))
        return sorted(out)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for server, _ in self.servers.values():
            server.close()
        for server, handler in self.servers.values():
            await server.wait_closed()
            await handler.aclose()
        self.servers.clear()
