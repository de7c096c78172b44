"""The workload view's live tap table and top: one bounded tap subscription per open view.

```
GET /tap/NS/KIND/NAME (htmx, every TAP_REFRESH_S) ──> Taps.get(ns, target) ── none yet? ──┐
                                                                                            ▼
Subscription: GET <control plane>/tap?target=deploy/NAME&namespace=NS&max_rps=…   (the fan-in
   │          `mesh tap` reads; NDJSON, one line per req/rsp/end of each proxy's requests)
   ├─ requests: the latest TAP_ROWS, req merged with its rsp/end by (proxy admin, id)
   └─ top:      viz.top.Top over the same events (`mesh top`), reset past MAX_TOP_ROWS rows
no fragment asked for IDLE_S ──> the subscription ends: the control plane's fan-in sees the
connection close and cancels its pumps, the proxies' tap hubs go inactive again
```

No page open, no subscription: nothing taps. Memory is bounded per open workload view:
TAP_ROWS requests, MAX_PENDING (viz.top) in flight, MAX_TOP_ROWS aggregated rows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import aiohttp

from turnout.viz.tap import Event
from turnout.viz.top import Top

log = logging.getLogger(__name__)

TAP_ROWS: Final = 25
"""Requests the tap table keeps (newest first)."""
MAX_TOP_ROWS: Final = 500
"""Distinct top rows before the aggregation starts over (bounded memory)."""
IDLE_S: Final = 6.0
"""A subscription no fragment asked for this long ends."""
RETRY_S: Final = 2.0
"""After a failed or ended subscription, how long before a fragment starts another."""
MAX_RPS: Final = 100
"""Per proxy, as `mesh tap`'s default --max-rps."""
CONNECT_TIMEOUT_S: Final = 5.0


def tap_query(ns: str, target: str) -> str:
    return urllib.parse.urlencode({"target": target, "namespace": ns, "max_rps": str(MAX_RPS)})


@dataclass(slots=True)
class Subscription:
    """One workload's tap stream, read while its view is open."""

    namespace: str
    target: str
    clock: Callable[[], float] = time.monotonic
    requests: OrderedDict[tuple[str, str], dict[str, object]] = field(default_factory=OrderedDict)
    top: Top = field(default_factory=Top)
    events: int = 0
    error: str = ""
    seen_at: float = 0.0
    ended_at: float | None = None
    task: asyncio.Task[None] | None = None

    def add(self, event: Event) -> None:
        """One tap event into both views."""
        self.events += 1
        self.top.add(event)
        if len(self.top) > MAX_TOP_ROWS:
            self.top = Top()
        proxy = event.get("proxy")
        admin = str(proxy.get("admin", "")) if isinstance(proxy, dict) else ""
        key = (admin, str(event.get("id")))
        kind = event.get("type")
        if kind == "req":
            self.requests[key] = dict(event)
            while len(self.requests) > TAP_ROWS:
                self.requests.popitem(last=False)
        elif (row := self.requests.get(key)) is not None:
            if kind == "rsp":
                row["status"] = event.get("status")
                row["latency_us"] = event.get("latency_us")
            elif kind == "end":
                row["ended"] = True
                for k in ("grpc_status", "reset_error"):
                    if event.get(k) is not None:
                        row[k] = event.get(k)

    def newest(self) -> list[dict[str, object]]:
        return list(reversed(self.requests.values()))

    async def run(self, control_plane: str) -> None:
        url = f"http://{control_plane}/tap?{tap_query(self.namespace, self.target)}"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url) as resp,
            ):
                if resp.status != 200:
                    text = (await resp.text()).strip().splitlines()
                    self.error = text[0] if text else f"HTTP {resp.status}"
                    return
                self.error = ""
                while self.clock() - self.seen_at < IDLE_S:
                    try:
                        line = await asyncio.wait_for(resp.content.readline(), 1.0)
                    except TimeoutError:
                        continue
                    if not line:
                        self.error = "the control plane ended the tap"
                        return
                    if line.strip():
                        event = json.loads(line)
                        if isinstance(event, dict):
                            self.add(event)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            self.error = f"control plane {control_plane}: {exc}"
        finally:
            self.ended_at = self.clock()
            log.info("dashboard tap ended target=%s events=%d", self.target, self.events)


@dataclass(slots=True)
class Taps:
    """The dashboard's subscriptions, by (namespace, target)."""

    control_plane: str
    clock: Callable[[], float] = time.monotonic
    subs: dict[tuple[str, str], Subscription] = field(default_factory=dict)
    started: int = 0

    def get(self, ns: str, target: str) -> Subscription:
        """The subscription a fragment reads: started (again) when none runs."""
        now = self.clock()
        for key, sub in list(self.subs.items()):
            if sub.ended_at is not None and now - sub.seen_at >= IDLE_S:
                del self.subs[key]  # nobody looks any more
        sub = self.subs.setdefault((ns, target), Subscription(ns, target, clock=self.clock))
        sub.seen_at = now
        idle = sub.task is None or (
            sub.task.done() and sub.ended_at is not None and now - sub.ended_at >= RETRY_S
        )
        if idle:
            self.started += 1
            sub.ended_at = None
            sub.task = asyncio.create_task(sub.run(self.control_plane))
        return sub

    def running(self) -> int:
        return sum(1 for s in self.subs.values() if s.task is not None and not s.task.done())

    async def close(self) -> None:
        tasks = [s.task for s in self.subs.values() if s.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.subs.clear()
