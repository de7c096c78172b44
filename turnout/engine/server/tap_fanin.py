"""Tap by workload: the control plane fans in the tap streams of a workload's proxies.

```
mesh tap deploy/web -n emojivoto
   │ GET /tap?namespace=emojivoto&target=deploy/web&method=&path=&authority=&to=&max_rps=
   ▼
control plane admin ──server.status().streams (node metadata admin/namespace/workload/pod)
   │                    └─ select(target) ─> one pump per distinct admin address
   │   pump: GET http://<proxy admin>/tap?format=json&… ─> + "proxy": {namespace, workload,
   │         pod, admin} ─> bounded queue (full = drop, counted)
   ▼
NDJSON to the client; every REFRESH_S the selection is recomputed from the ADS streams:
a proxy that joined gets a pump, one whose stream ended has its pump cancelled.
```

The client leaving (a write fails, or the transport closes while idle) cancels every pump,
which closes the upstream ``/tap`` requests, so the proxies' hubs go inactive again and the
request path stops building events. ``max_rps`` is per proxy (each proxy's hub limits its own
stream), ``limit`` counts the fanned-in events. Targets: `turnout.engine.workloads`.
Nothing here runs per proxied request: the proxies filter, this only relabels what passed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Final

import aiohttp
from aiohttp import web

from turnout.engine.server.ads import AdsServer
from turnout.engine.server.ads_status import StreamStatus
from turnout.engine.workloads import Selection, parse_selection, workload_name

log = logging.getLogger(__name__)

FANIN_QUEUE: Final = 2000
"""Events waiting for the client before further ones are dropped."""
REFRESH_S: Final = 1.0
"""How often the selection is recomputed (proxies joining or leaving mid-tap)."""
CONNECT_TIMEOUT_S: Final = 5.0


def select(streams: Iterable[StreamStatus], sel: Selection) -> dict[str, StreamStatus]:
    """Admin address → one stream naming it (``--workers`` children share the parent's)."""
    return {
        s.admin: s
        for s in streams
        if s.admin and sel.matches_labels(s.namespace or "", s.workload, s.pod)
    }


def to_matches(to: Selection | None, event: Mapping[str, object]) -> bool:
    """``--to``: outbound events whose backend Service (or authority's first label) is it."""
    if to is None:
        return True
    if event.get("direction") != "outbound":
        return False
    if to.namespace and event.get("dst_namespace", to.namespace) != to.namespace:
        return False
    service = event.get("dst_service") or str(event.get("authority", "")).split(".")[0]
    return service == to.name or str(event.get("authority", "")).split(":")[0] == to.name


def proxy_labels(stream: StreamStatus) -> dict[str, str]:
    return {
        "namespace": stream.namespace or "",
        "workload": workload_name(stream.workload),
        "pod": stream.pod,
        "admin": stream.admin,
    }


class FanIn:
    """One client's fan-in: pumps per proxy into one bounded queue."""

    def __init__(self, session: aiohttp.ClientSession, query: str, to: Selection | None) -> None:
        self.session, self.query, self.to = session, query, to
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=FANIN_QUEUE)
        self.pumps: dict[str, asyncio.Task[None]] = {}
        self.dropped = 0

    def refresh(self, wanted: Mapping[str, StreamStatus]) -> None:
        for admin in [a for a in self.pumps if a not in wanted]:
            log.info("tap: proxy left admin=%s", admin)
            self.pumps.pop(admin).cancel()
        for admin, stream in wanted.items():
            # a pump whose stream ended (the proxy restarted on the same address before a
            # refresh saw it leave, or refused) is opened again while the proxy is listed
            if (task := self.pumps.get(admin)) is None or task.done():
                log.info("tap: proxy joined admin=%s pod=%s", admin, stream.pod)
                self.pumps[admin] = asyncio.create_task(self.pump(stream))

    async def pump(self, stream: StreamStatus) -> None:
        labels = proxy_labels(stream)
        url = f"http://{stream.admin}/tap?{self.query}"
        try:
            async with self.session.get(url) as resp:
                if resp.status != 200:
                    log.info("tap: proxy refused admin=%s status=%d", stream.admin, resp.status)
                    return
                async for line in resp.content:
                    event = json.loads(line)
                    if not isinstance(event, dict) or not to_matches(self.to, event):
                        continue
                    event["proxy"] = labels
                    try:
                        self.queue.put_nowait(json.dumps(event, separators=(",", ":")).encode())
                    except asyncio.QueueFull:
                        self.dropped += 1
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.info("tap: proxy stream ended admin=%s error=%r", stream.admin, exc)

    async def close(self) -> None:
        for task in self.pumps.values():
            task.cancel()
        await asyncio.gather(*self.pumps.values(), return_exceptions=True)
        self.pumps.clear()


def upstream_query(query: Mapping[str, str]) -> str:
    """What each proxy's ``/tap`` is asked: the filters it applies itself, JSON."""
    keep = {k: query[k] for k in ("method", "authority", "path", "max_rps") if query.get(k)}
    if query.get("to"):
        keep["direction"] = "outbound"
    return urllib.parse.urlencode({**keep, "format": "json"})


async def tap_handler(request: web.Request, server: AdsServer) -> web.StreamResponse:
    """``GET /tap``: see the module docstring."""
    q = request.query
    try:
        sel = parse_selection(q.get("target", ""), q.get("namespace", ""))
        to = parse_selection(q["to"], q.get("to_namespace", "")) if q.get("to") else None
        limit = int(q.get("limit", "0") or 0)
        if limit < 0 or not str(q.get("max_rps", "0") or 0).isdigit():
            raise ValueError("limit and max_rps must be non-negative integers")
    except ValueError as exc:
        return web.Response(status=400, text=f"{exc}\n")
    wanted = select(server.status().streams, sel)
    if not wanted:
        where = f" in namespace {sel.namespace}" if sel.namespace else ""
        return web.Response(status=404, text=f"no proxies for {q['target']}{where}\n")
    resp = web.StreamResponse()
    resp.content_type = "application/x-ndjson"
    await resp.prepare(request)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        fan = FanIn(session, upstream_query(q), to)
        sent = 0
        try:
            fan.refresh(wanted)
            clock = asyncio.get_running_loop().time
            due = clock() + REFRESH_S
            while not limit or sent < limit:
                if clock() >= due:
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        break  # the client left while nothing was flowing
                    fan.refresh(select(server.status().streams, sel))
                    due = clock() + REFRESH_S
                try:
                    line = await asyncio.wait_for(fan.queue.get(), max(0.0, due - clock()))
                except TimeoutError:
                    continue
                await resp.write(line + b"\n")
                sent += 1
        except (ConnectionError, RuntimeError) as exc:
            log.debug("tap client gone error=%r", exc)
        finally:
            await fan.close()
            log.info("tap ended target=%s events=%d dropped=%d", q["target"], sent, fan.dropped)
    return resp
