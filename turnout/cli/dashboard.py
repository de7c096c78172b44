"""`mesh dashboard` and `mesh serve --dashboard`: start the dashboard app, print its URL.

```
mesh dashboard [--control-plane H:P] [--address H] [--port P] [--show url|browser]
    dashboard.app.dashboard_app(control_plane) on H:P (default 127.0.0.1:50750, Linkerd's
    `viz dashboard` port; 0 = a free one) ─> "dashboard listening on http://H:P/" until
    SIGINT/SIGTERM; --show browser also opens it (Python's `webbrowser`)
mesh serve --dashboard [H:P]   the same app on the control plane's loop (`start_in_serve`)
```

A control plane that cannot be reached is one `error:` line before anything is served.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import webbrowser
from collections.abc import Awaitable, Callable
from typing import TextIO

from turnout.cli import served
from turnout.cli.errors import UsageError
from turnout.cli.output import EXIT_OK


def url_of(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
    return f"http://{shown}:{port}/"


async def start(
    control_plane: str, host: str, port: int, out: TextIO
) -> Callable[[], Awaitable[None]]:
    """Bind the dashboard, print its URL; returns its stop."""
    from turnout.dashboard.app import dashboard_app
    from turnout.engine.errors import ControlPlaneError
    from turnout.engine.server.admin import start_admin

    try:
        runner, bound = await start_admin(dashboard_app(control_plane), host, port)
    except ControlPlaneError as exc:
        raise UsageError(f"--dashboard: {exc}") from None
    print(f"dashboard listening on {url_of(host, bound)}", file=out)
    out.flush()
    return runner.cleanup


def run_dashboard(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    served.read_served(args.control_plane)  # unreachable: one error line, exit 2
    asyncio.run(_serve(args, out))
    return EXIT_OK


async def _serve(args: argparse.Namespace, out: TextIO) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    cleanup = await start(args.control_plane, args.address, args.port, out)
    try:
        if args.show == "browser":
            await asyncio.to_thread(webbrowser.open, url_of(args.address, args.port))
        await stop.wait()
    finally:
        await cleanup()
