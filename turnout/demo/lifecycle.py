"""How the demo's processes start and stop: SIGINT/SIGTERM, or their parent going away.

`mesh demo` terminates its children by pid; if `mesh demo` itself is killed (SIGKILL), the
children it wrote notice that their parent changed and stop too (`mesh serve` and `mesh proxy`
do not: they are ordinary commands). `started_unless_stopped` is the other side: the
parent waiting for its children to come up, unless the user asks to stop first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable

PARENT_POLL_S = 1.0


class DemoError(RuntimeError):
    """A child did not start, did not become ready or exited: the demo package's only
    exception (no tree to draw). `mesh demo` prints it as one line plus the child's log
    tail; the engine's and the proxy's trees never see it."""


def stop_event() -> asyncio.Event:
    """An event set on SIGINT, SIGTERM or when the parent process exits."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()

    async def watch() -> None:
        while not stop.is_set():
            if os.getppid() != parent:
                logging.getLogger(__name__).warning("parent exited; stopping")
                stop.set()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PARENT_POLL_S)

    task = loop.create_task(watch())
    stop.watcher = task  # type: ignore[attr-defined]  # keep a reference
    return stop


def setup_logging(name: str) -> None:
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s"
    )


async def started_unless_stopped(start: Awaitable[None], stop: asyncio.Event) -> bool:
    """Run `start` until it is done (True; its exception, if any, raised) or until `stop`
    is set first (False: `start` is cancelled and awaited, a `DemoError` it raises while
    cancelled is dropped, since the user asked to stop)."""
    task = asyncio.ensure_future(start)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, DemoError):
            await task
        return False
    task.result()
    return True
