"""The canary walkthrough's processes: a podinfo-like app and Flagger's load tester.

```
python -m turnout.demo.podinfo app --port N --version v2 [--ok-every K]
    GET / -> {"version": ...} (with --ok-every K, only every K-th answers 200, others 500)
python -m turnout.demo.podinfo load --proxy HOST:PORT [--host podinfo.test:9898] [--rps R]
    GET / at R requests/s through the outbound proxy, at most 64 in flight
```

Started by `mesh demo canary` (`turnout.demo.canary`) as its children, not meant to be run
by hand; each runs until SIGTERM or SIGINT (`lifecycle.stop_event`). Nothing here prints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import aiohttp
from aiohttp import web

from turnout.demo.lifecycle import setup_logging, stop_event
from turnout.demo.orchestrate import HOST

log = logging.getLogger(__name__)

APEX_HOST = "podinfo.test:9898"
"""The Host the load tester sends (the apex Service podinfo in namespace test)."""
LOAD_RPS = 40.0
"""The load tester's default rate."""


async def serve_app(*, port: int, version: str, ok_every: int) -> None:
    """A podinfo-like app: ``GET /`` answers its version as JSON. With `ok_every` > 0 only
    every `ok_every`-th request answers 200, the others 500 (``/ready`` always 200)."""
    served = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal served
        if request.path == "/ready":
            return web.json_response({"status": "OK"})
        served += 1
        if ok_every and served % ok_every != 0:
            return web.json_response({"error": "canary failure", "version": version}, status=500)
        return web.json_response({"hostname": f"podinfo-{version}", "version": version})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    log.info("podinfo %s on %s:%d (ok every %d)", version, HOST, port, ok_every)
    try:
        await stop_event().wait()
    finally:
        await runner.cleanup()


async def load(*, proxy: str, host: str, rps: float) -> None:
    """``GET /`` at `rps` through the outbound proxy with Host `host`, like Flagger's load tester."""
    stop = stop_event()
    sent = 0
    in_flight: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def one() -> None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"http://{proxy}/", headers={"host": host}) as resp:
                    await resp.read()

        t0 = time.monotonic()
        while not stop.is_set():
            if len(in_flight) < 64:
                task = asyncio.create_task(one())
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            sent += 1
            delay = t0 + sent / rps - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        for task in in_flight:
            task.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m turnout.demo.podinfo")
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("app")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--version", default="v1")
    a.add_argument("--ok-every", type=int, default=0, help="fail all other requests")
    lg = sub.add_parser("load")
    lg.add_argument("--proxy", required=True)
    lg.add_argument("--host", default=APEX_HOST)
    lg.add_argument("--rps", type=float, default=LOAD_RPS)
    args = p.parse_args(argv)
    if args.what == "app":
        setup_logging(f"podinfo-{args.version}")
        asyncio.run(serve_app(port=args.port, version=args.version, ok_every=args.ok_every))
    else:
        setup_logging("loadtester")
        asyncio.run(load(proxy=args.proxy, host=args.host, rps=args.rps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
