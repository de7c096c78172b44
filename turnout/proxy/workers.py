"""`mesh proxy --workers N`: N processes serve the same listeners, one admin port for all.

```
parent (worker 0): outbound/inbound listeners (SO_REUSEPORT) + the admin port
  └─ spawns N-1 children: the same listeners (the kernel spreads new connections over the
     processes) + an internal admin port on 127.0.0.1:0
child ──pipe: ("admin", port), then ("ready",) once its first table is in──► parent
parent /metrics = its own + every child's /metrics, summed series by series
parent /ready   = its table is in and every child said ready
parent stops (SIGINT/SIGTERM) ─► SIGTERM to every child, by pid; a child whose parent is
gone (the pipe closes) stops by itself
```

Every worker takes its tables the same way (`SourceSpec`: the serialized tables `-f`
compiled once, or its own ADS stream), so they agree as soon as each has applied the update.
Not shared: balancer state and retry budgets (per process, as in a multi-threaded proxy with
per-thread state) and `/tap`, which shows the parent's requests only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from turnout.proxy.runner import ProxyConfig, TableSource
    from turnout.proxy.xds_client import NodeInfo

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
"""How long a child gets to report its admin port."""
STOP_TIMEOUT_S = 10.0
"""How long a child gets to stop after SIGTERM before it is killed."""
FETCH_TIMEOUT_S = 2.0
"""How long the parent waits for a child's /metrics."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSpec:
    """How a worker gets its tables, in a form that crosses a process boundary."""

    blobs: tuple[bytes, ...] = ()
    """Serialized xDS resources (`RuntimeTable.from_serialized`), for ``-f``."""
    xds: str | None = None
    """ADS target, for ``--xds``."""
    node: NodeInfo | None = None

    def source(self) -> TableSource:
        from turnout.proxy.runner import StaticTable, XdsSource

        if self.xds is not None:
            assert self.node is not None
            return XdsSource(target=self.xds, node=self.node)
        from turnout.proxy.table import RuntimeTable

        return StaticTable(RuntimeTable.from_serialized(list(self.blobs)))


# -- the parent's side ------------------------------------------------------------------------


@dataclass
class _Child:
    process: BaseProcess
    conn: Connection
    admin_port: int = 0
    ready: bool = False


class Workers:
    """The parent's handle on its N-1 child workers."""

    def __init__(self, count: int, config: ProxyConfig, spec: SourceSpec) -> None:
        if count < 2:
            raise ValueError("Workers needs at least 2 workers (the parent is one)")
        self.count = count
        self.config = config
        self.spec = spec
        self.children: list[_Child] = []

    async def start(self) -> None:
        """Spawn the children; returns once each has reported its admin port."""
        ctx = multiprocessing.get_context("spawn")
        from turnout.proxy.runner import Address

        child_config = replace(self.config, admin=Address(host="127.0.0.1", port=0))
        for i in range(1, self.count):
            mine, theirs = ctx.Pipe()
            spec = self.spec
            if spec.node is not None:  # one ADS stream per worker, each its own node id
                spec = replace(spec, node=replace(spec.node, id=f"{spec.node.id}/worker-{i}"))
            process = ctx.Process(
                target=_child_main,
                args=(child_config, spec, theirs),
                name=f"mesh-proxy-worker-{i}",
                daemon=True,  # multiprocessing ends daemonic children if we die
            )
            process.start()
            theirs.close()
            self.children.append(_Child(process, mine))
        loop = asyncio.get_running_loop()
        for child in self.children:
            message = await asyncio.wait_for(
                loop.run_in_executor(None, child.conn.recv), START_TIMEOUT_S
            )
            kind, port = message
            assert kind == "admin", message
            child.admin_port = int(port)
        log.info(
            "workers started count=%d pids=%s",
            self.count,
            ",".join(str(c.process.pid) for c in self.children),
        )

    def ready(self) -> bool:
        """Every child has applied its first table (a non-blocking look at the pipes)."""
        for child in self.children:
            while not child.ready and child.conn.poll():
                with contextlib.suppress(EOFError, OSError):
                    if child.conn.recv() == ("ready",):
                        child.ready = True
        return all(c.ready and c.process.is_alive() for c in self.children)

    async def metrics(self) -> list[str]:
        """Every live child's /metrics text (a child that does not answer is left out)."""

        async def one(child: _Child) -> str:
            try:
                return await asyncio.wait_for(
                    fetch("127.0.0.1", child.admin_port, "/metrics"), FETCH_TIMEOUT_S
                )
            except (OSError, TimeoutError, ValueError) as exc:
                log.warning("worker metrics unavailable pid=%s error=%r", child.process.pid, exc)
                return ""

        return list(await asyncio.gather(*(one(c) for c in self.children)))

    async def stop(self) -> None:
        """SIGTERM each child by pid, wait, then SIGKILL what is left."""
        for child in self.children:
            if child.process.is_alive() and child.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.process.pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        for child in self.children:
            await loop.run_in_executor(None, child.process.join, STOP_TIMEOUT_S)
            if child.process.is_alive():
                log.warning("worker did not stop, killing pid=%s", child.process.pid)
                child.process.kill()
                await loop.run_in_executor(None, child.process.join, STOP_TIMEOUT_S)
            child.conn.close()


async def fetch(host: str, port: int, path: str) -> str:
    """GET `path` over a fresh connection; the body of a 200 as text (ValueError otherwise)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = await reader.read(-1)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ValueError(f"{path}: {head[:40]!r}")
    return body.decode()


# -- the child's side ---------------------------------------------------------------------------


def _child_main(config: ProxyConfig, spec: SourceSpec, conn: Connection) -> None:
    """A child worker process (spawned): serve until SIGTERM or until the parent is gone."""
    import uvloop

    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        runner.run(_serve_child(config, spec, conn))


async def _serve_child(config: ProxyConfig, spec: SourceSpec, conn: Connection) -> None:
    from turnout.proxy.admin import bound_port
    from turnout.proxy.runner import start_proxy, stop_proxy

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(conn.fileno(), _on_parent_pipe, conn, stop)
    proxy, task = await start_proxy(config, spec.source())
    assert proxy.admin is not None
    conn.send(("admin", bound_port(proxy.admin)))
    while not proxy.ready and not stop.is_set() and not task.done():
        await asyncio.sleep(0.02)
    if proxy.ready:
        conn.send(("ready",))
    stopper = loop.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_reader(conn.fileno())
        stopper.cancel()
        await stop_proxy(proxy, task)


def _on_parent_pipe(conn: Connection, stop: asyncio.Event) -> None:
    """The parent never writes to a child: readable means it closed its end (it is gone)."""
    try:
        conn.recv()
    except (EOFError, OSError):
        stop.set()
