"""How the demo's own child processes stop: SIGINT/SIGTERM, or their parent going away.

`mesh demo` terminates its children by pid; if `mesh demo` itself is killed (SIGKILL), the
children it wrote notice that their parent changed and stop too (`mesh serve` and `mesh proxy`
do not: they are ordinary commands).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

PARENT_POLL_S = 1.0


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
