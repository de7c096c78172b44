"""vote-bot: steady HTTP traffic to the web front end, through the outbound proxy.

```
python -m turnout.demo.votebot --proxy 127.0.0.1:PORT [--host web.emojivoto] [--rps 20]
```
Each request is one of: ``GET /`` (one in five with ``x-canary: true``: the canary rule),
``GET /api/list``, ``GET /api/vote?choice=<random emoji>`` (doughnut one time in five or more: those fail)
and ``GET /api/leaderboard``; sent at `rps` per second, at most `MAX_IN_FLIGHT` at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Sequence

import aiohttp

from turnout.demo import catalog
from turnout.demo.lifecycle import setup_logging, stop_event

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 64
REQUEST_TIMEOUT_S = 5.0
REPORT_EVERY_S = 10.0


def pick(rng: random.Random) -> tuple[str, dict[str, str]]:
    """One request: (path and query, extra headers)."""
    r = rng.random()
    if r < 0.25:
        return "/", ({"x-canary": "true"} if rng.random() < 0.2 else {})
    if r < 0.45:
        return "/api/list", {}
    if r < 0.9:
        vote = catalog.FAILING_VOTE if rng.random() < 0.2 else rng.choice(catalog.EMOJI).shortcode
        return f"/api/vote?choice={vote}", {}
    return "/api/leaderboard", {}


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    stop = stop_event()
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    seen: Counter[int] = Counter()
    tasks: set[asyncio.Task[None]] = set()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(path: str, headers: dict[str, str]) -> None:
            try:
                async with session.get(
                    f"http://{args.proxy}{path}", headers={"host": args.host, **headers}
                ) as resp:
                    await resp.read()
                    seen[resp.status] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                seen[0] += 1
                log.debug("request failed: %s", exc)
            finally:
                slots.release()

        loop = asyncio.get_running_loop()
        period = 1.0 / args.rps
        next_at = loop.time()
        next_report = next_at + REPORT_EVERY_S
        while not stop.is_set():
            await slots.acquire()
            task = loop.create_task(one(*pick(rng)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_at += period
            now = loop.time()
            if now >= next_report:
                log.info("responses by status: %s", dict(seen))
                next_report = now + REPORT_EVERY_S
            delay = next_at - now
            if delay < -1.0:  # fell behind (slow answers): do not burst to catch up
                next_at = now
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m turnout.demo.votebot")
    p.add_argument("--proxy", required=True, metavar="HOST:PORT", help="the outbound proxy")
    p.add_argument("--host", default=f"web.{catalog.NAMESPACE}", help="Host header")
    p.add_argument("--rps", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args(argv)
    setup_logging("vote-bot")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
