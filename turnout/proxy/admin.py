"""The proxy's admin server (Linkerd's admin port): ``/metrics``, ``/live``, ``/ready``, ``/tap``.

::

    start_admin(host, port, metrics=, tap=, ready=) -> web.AppRunner   (stop: runner.cleanup())
      GET /metrics  ProxyMetrics.render()               text/plain; version=0.0.4
      GET /live     200 "live"                          the loop answers, so we are alive
      GET /ready    200 "ready" | 503 "not ready"       from ready()
      GET /tap      newline-delimited events from TapHub, until `limit` events, the client
                    leaving or shutdown

``/tap`` query: ``method``, ``authority``, ``path`` (prefix), ``direction``, ``max_rps``
(requests per second, 0 = unlimited), ``limit`` (events, 0 = until the client leaves) and
``format`` (``json``, the default: one `tap_json` object per line; ``text``: `format_tap_line`
lines). A stream subscribes before it sends its headers, so an event published after the
client got the response headers is in it. Each stream holds one bounded subscription; a
client that reads too slowly loses events (counted in ``TapHub.dropped``) and one that stops
reading for `TAP_WRITE_TIMEOUT_S` is disconnected. Every `TAP_IDLE_CHECK_S` without events the
stream checks whether the client is still there, since aiohttp does not cancel handlers
when a client goes away.

Nothing here blocks the loop except ``render()`` itself, which is plain CPU work over the
series. What it deliberately does not do: no ``/shutdown``, no authentication (bind it to the
pod IP or loopback), no TLS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Final, Literal

from aiohttp import web

from turnout.proxy.metrics import ProxyMetrics
from turnout.proxy.tap import (
    DEFAULT_TAP_QUEUE,
    Subscription,
    TapEvent,
    TapFilter,
    TapHub,
    format_tap_json,
    format_tap_line,
)

log = logging.getLogger(__name__)

METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
TAP_CONTENT_TYPE: Final = "application/x-ndjson"
MAX_TAP_STREAMS: Final = 8
"""Concurrent ``/tap`` streams; more are answered 503."""
TAP_IDLE_CHECK_S: Final = 1.0
"""Seconds without events after which a tap stream checks that its client is still there."""
TAP_WRITE_TIMEOUT_S: Final = 5.0
"""Seconds a tap write may wait for the client to read before the stream is ended."""
ADMIN_SHUTDOWN_TIMEOUT_S: Final = 5.0
"""Seconds `runner.cleanup()` waits for in-flight admin requests."""

_METRICS = web.AppKey("metrics", ProxyMetrics)
_TAP = web.AppKey("tap", TapHub)
_READY: web.AppKey[Callable[[], bool]] = web.AppKey("ready")


class _TapStreams:
    """The subscriptions of the open ``/tap`` streams, closed at shutdown."""

    __slots__ = ("subs",)

    def __init__(self) -> None:
        self.subs: set[Subscription] = set()


_STREAMS = web.AppKey("tap_streams", _TapStreams)


async def start_admin(
    host: str,
    port: int,
    *,
    metrics: ProxyMetrics,
    tap: TapHub,
    ready: Callable[[], bool],
) -> web.AppRunner:
    """Serve the admin endpoints on `host`:`port` (0 = any free port, see `bound_port`).
    Stop with ``await runner.cleanup()``; open tap streams end at once."""
    app = web.Application()
    app[_METRICS], app[_TAP], app[_READY] = metrics, tap, ready
    app[_STREAMS] = _TapStreams()
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/live", _live)
    app.router.add_get("/ready", _ready)
    app.router.add_get("/tap", _tap)
    app.on_shutdown.append(_close_tap_streams)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=ADMIN_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except Exception:
        await runner.cleanup()
        raise
    log.info("admin listening addr=%s:%d", host, bound_port(runner))
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port the first site listens on (what port 0 became)."""
    addr = runner.addresses[0]
    return int(addr[1])


async def _close_tap_streams(app: web.Application) -> None:
    for sub in list(app[_STREAMS].subs):
        sub.close()


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[_METRICS].render().encode()
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def _live(request: web.Request) -> web.Response:
    return web.Response(text="live\n")


async def _ready(request: web.Request) -> web.Response:
    try:
        ok = request.app[_READY]()
    except Exception:
        log.exception("ready check failed")
        ok = False
    return web.Response(text="ready\n") if ok else web.Response(status=503, text="not ready\n")


def tap_request_from_query(query: Mapping[str, str]) -> tuple[TapFilter, int, bool]:
    """(filter, event limit, text format) from ``/tap``'s query; ValueError when invalid."""
    direction: Literal["", "inbound", "outbound"]
    match query.get("direction", ""):
        case "":
            direction = ""
        case "inbound":
            direction = "inbound"
        case "outbound":
            direction = "outbound"
        case other:
            raise ValueError(f"direction must be inbound or outbound, got {other!r}")
    fmt = query.get("format", "json")
    if fmt not in ("json", "text"):
        raise ValueError(f"format must be json or text, got {fmt!r}")
    numbers = {}
    for name in ("max_rps", "limit"):
        raw = query.get(name, "0")
        if not raw.isdigit():
            raise ValueError(f"{name} must be a non-negative integer, got {raw!r}")
        numbers[name] = int(raw)
    flt = TapFilter(
        method=query.get("method", ""),
        authority=query.get("authority", ""),
        path_prefix=query.get("path", ""),
        direction=direction,
        max_rps=numbers["max_rps"],
    )
    return flt, numbers["limit"], fmt == "text"


async def _tap(request: web.Request) -> web.StreamResponse:
    try:
        flt, limit, text = tap_request_from_query(request.query)
    except ValueError as exc:
        return web.Response(status=400, text=f"{exc}\n")
    streams = request.app[_STREAMS].subs
    if len(streams) >= MAX_TAP_STREAMS:
        return web.Response(status=503, text="too many tap streams\n")
    encode: Callable[[TapEvent], str] = format_tap_line if text else format_tap_json
    with request.app[_TAP].subscribe(flt, max_queue=DEFAULT_TAP_QUEUE) as sub:
        streams.add(sub)
        resp = web.StreamResponse(headers={"Content-Type": TAP_CONTENT_TYPE})
        try:
            await resp.prepare(request)
            sent = await _stream(request, resp, sub, encode, limit)
            log.debug("tap stream ended events=%d dropped=%d", sent, sub.dropped)
            if request.transport is not None and not request.transport.is_closing():
                await resp.write_eof()
        except (ConnectionError, TimeoutError) as exc:
            log.debug("tap client gone error=%r", exc)
        finally:
            streams.discard(sub)
    return resp


async def _stream(
    request: web.Request,
    resp: web.StreamResponse,
    sub: Subscription,
    encode: Callable[[TapEvent], str],
    limit: int,
) -> int:
    """Copy events to the client until `limit`, the subscription closing or the client
    leaving; returns how many were sent."""
    sent = 0
    while not limit or sent < limit:
        try:
            async with asyncio.timeout(TAP_IDLE_CHECK_S):
                event = await sub.get()
        except TimeoutError:
            if request.transport is None or request.transport.is_closing():
                break
            continue
        if event is None:
            break
        async with asyncio.timeout(TAP_WRITE_TIMEOUT_S):
            await resp.write(f"{encode(event)}\n".encode())
        sent += 1
    return sent
