"""`mesh proxy`: serve until a signal, as one process or as N (``--workers N``), one admin port.

```
run_proxy(config, source, spec=, on_listening=)
  start_proxy: the parent's listeners (SO_REUSEPORT when N > 1) + the admin port, bound
  first, so a port given as 0 is known ── ListenError if one cannot be bound
  └─ N > 1: spawns N-1 children on the ports the parent bound (the kernel spreads new
     connections over the processes), each with an internal admin port on 127.0.0.1:0
  on_listening(Listening): the addresses bound (`mesh proxy` prints its start-up line)
  SIGINT/SIGTERM ─► stop_proxy, then SIGTERM to every child, by pid
child ──pipe: ("admin", port) | ("error", ListenError args); then ("ready",)──► parent
parent /metrics = its own + every child's /metrics, summed series by series
parent /ready   = its table is in and every child said ready
a child whose parent is gone (the pipe closes) stops by itself
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
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from turnout.proxy.errors import ListenError, WorkerError
from turnout.proxy.process import Address, ProxyConfig, SourceSpec, TableSource
from turnout.proxy.runner import Listening, Proxy, start_proxy, stop_proxy

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
"""How long a child gets to report its admin port."""
STOP_TIMEOUT_S = 10.0
"""How long a child gets to stop after SIGTERM before it is killed."""
FETCH_TIMEOUT_S = 2.0
"""How long the parent waits for a child's /metrics."""


async def run_proxy(
    config: ProxyConfig,
    source: TableSource,
    *,
    spec: SourceSpec | None = None,
    on_listening: Callable[[Listening], None] | None = None,
) -> None:
    """Serve until cancelled, SIGINT or SIGTERM (`mesh proxy`); then shut down cleanly.
    With `config.workers` > 1, `spec` tells the child workers where their tables come from.
    `on_listening` is called once every process listens, with the addresses bound."""
    if config.workers > 1 and spec is None:
        raise ValueError("several workers need a SourceSpec")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    workers = Workers(config.workers, spec) if spec is not None and config.workers > 1 else None
    try:
        proxy, task = await start_proxy(
            config,
            source,
            peers=workers.metrics if workers is not None else None,
            peers_ready=workers.ready if workers is not None else None,
        )
        try:
            listening = proxy.listening()
            if workers is not None:
                await workers.start(_child_config(config, listening), admin=listening.admin)
            if on_listening is not None:
                on_listening(listening)
            started = loop.time()
            await _serve(task, stop)
            log.info("proxy stopping after %.0fs", loop.time() - started)
        finally:
            await stop_proxy(proxy, task)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        if workers is not None:
            await workers.stop()


def _child_config(config: ProxyConfig, listening: Listening) -> ProxyConfig:
    """The parent's config on the ports the parent bound, with an internal admin port."""
    return replace(
        config,
        outbound=listening.outbound,
        inbound=listening.inbound,
        admin=Address(host="127.0.0.1", port=0),
    )


async def _serve(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """Until the table source ends (it should not) or `stop` is set."""
    stopper = asyncio.get_running_loop().create_task(stop.wait(), name="stop signal")
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()


# -- the parent's side ------------------------------------------------------------------------


@dataclass
class _Child:
    process: BaseProcess
    conn: Connection
    admin_port: int = 0
    ready: bool = False


class Workers:
    """The parent's handle on its N-1 child workers."""

    def __init__(self, count: int, spec: SourceSpec) -> None:
        if count < 2:
            raise ValueError("Workers needs at least 2 workers (the parent is one)")
        self.count = count
        self.spec = spec
        self.children: list[_Child] = []
        self.started = False
        """Every child reported its admin port (before that, `ready` is False)."""

    async def start(self, config: ProxyConfig, *, admin: Address | None = None) -> None:
        """Spawn the children with `config`; returns once each has reported its admin port.
        `admin`: the parent's admin port, which each child's xDS node reports as its own
        (`metadata.admin`: the parent's /metrics includes the children's). A child that
        cannot bind raises its `ListenError`, one that dies or says nothing in time
        `WorkerError` (`stop` then ends the others)."""
        ctx = multiprocessing.get_context("spawn")
        for i in range(1, self.count):
            mine, theirs = ctx.Pipe()
            spec = self.spec
            if spec.node is not None:  # one ADS stream per worker, each its own node id
                node = replace(spec.node, id=f"{spec.node.id}/worker-{i}")
                if admin is not None:
                    node = replace(node, admin=str(admin))
                spec = replace(spec, node=node)
            process = ctx.Process(
                target=_child_main,
                args=(config, spec, theirs),
                name=f"mesh-proxy-worker-{i}",
                daemon=True,  # multiprocessing ends daemonic children if we die
            )
            process.start()
            theirs.close()
            self.children.append(_Child(process, mine))
        for i, child in enumerate(self.children, start=1):
            child.admin_port = await _admin_port(i, child)
        self.started = True
        log.info(
            "workers started count=%d pids=%s",
            self.count,
            ",".join(str(c.process.pid) for c in self.children),
        )

    def ready(self) -> bool:
        """Every child has applied its first table (a non-blocking look at the pipes)."""
        if not self.started:
            return False
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

        return list(await asyncio.gather(*(one(c) for c in self.children if c.admin_port)))

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


async def _admin_port(i: int, child: _Child) -> int:
    """The first message of child `i`: its admin port, or why it could not start."""
    loop = asyncio.get_running_loop()
    try:
        message = await asyncio.wait_for(
            loop.run_in_executor(None, child.conn.recv), START_TIMEOUT_S
        )
    except TimeoutError:
        raise WorkerError(f"worker {i} did not start within {START_TIMEOUT_S:.0f}s") from None
    except (EOFError, OSError):
        await loop.run_in_executor(None, child.process.join, STOP_TIMEOUT_S)
        code = child.process.exitcode
        raise WorkerError(f"worker {i} exited during start-up (exit code {code})") from None
    match message:
        case ("admin", int(port)):
            return port
        case ("error", str(listener), str(host), int(port), str(reason)):
            raise ListenError(listener, host, port, reason)
    raise WorkerError(f"worker {i} sent {message!r} instead of its admin port")


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
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(conn.fileno(), _on_parent_pipe, conn, stop)
    try:
        try:
            proxy, task = await start_proxy(config, spec.source())
        except ListenError as exc:
            conn.send(("error", exc.listener, exc.host, exc.port, exc.reason))
            return
        try:
            await _report(proxy, task, conn, stop)
            await _serve(task, stop)
        finally:
            await stop_proxy(proxy, task)
    finally:
        loop.remove_reader(conn.fileno())


async def _report(
    proxy: Proxy, task: asyncio.Task[None], conn: Connection, stop: asyncio.Event
) -> None:
    """Tell the parent the admin port, then (polling) that the first table is in."""
    admin = proxy.listening().admin
    assert admin is not None
    conn.send(("admin", admin.port))
    while not proxy.ready and not stop.is_set() and not task.done():
        await asyncio.sleep(0.02)
    if proxy.ready:
        conn.send(("ready",))


def _on_parent_pipe(conn: Connection, stop: asyncio.Event) -> None:
    """The parent never writes to a child: readable means it closed its end (it is gone)."""
    try:
        conn.recv()
    except (EOFError, OSError):
        stop.set()
