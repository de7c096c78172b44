"""The proxy's admin server (Linkerd's admin port): ``/metrics``, ``/live``, ``/ready``, ``/tap``.

::

    start_admin(host, port, metrics=, tap=, ready=) -> AdminServer   (stop: await cleanup())
      GET /metrics  ProxyMetrics.render()               text/plain; version=0.0.4
      GET /live     200 "live"                          the loop answers, so we are alive
      GET /ready    200 "ready" | 503 "not ready"       from ready()
      GET /tap      newline-delimited events from TapHub, until `limit` events, the client
                    leaving or shutdown
      GET /app-health/<container>/<livez|readyz|startupz>
                    the app's status for that original probe (`app_probes.py`), 503 when
                    the app is unreachable or late; an unknown one 404

It runs on the proxy's own HTTP transport (`transport.server.serve_http`), so the proxy
process does not load a second HTTP stack for four endpoints. ``/tap`` query: ``method``,
``authority``, ``path`` (prefix), ``direction``, ``max_rps`` (requests per second, 0 =
unlimited), ``limit`` (events, 0 = until the client leaves) and ``format`` (``json``, the
default: one `tap_json` object per line; ``text``: `format_tap_line` lines). A stream
subscribes before it sends its headers, so an event published after the client got the
response headers is in it. Each stream holds one bounded subscription; a client that reads
too slowly loses events (counted in ``TapHub.dropped``) and one that stops reading for
`TAP_WRITE_TIMEOUT_S` is disconnected; a client that goes away cancels its stream (the
transport cancels the handler).

Nothing here blocks the loop except ``render()`` itself, which is plain CPU work over the
series. What it deliberately does not do: no ``/shutdown``, no authentication (bind it to the
pod IP or loopback), no TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, Literal
from urllib.parse import parse_qsl

from turnout.proxy.app_probes import APP_HEALTH_PREFIX, AppProbe, run_probe
from turnout.proxy.metrics import ProxyMetrics
from turnout.proxy.registry import merge_metrics
from turnout.proxy.tap import (
    DEFAULT_TAP_QUEUE,
    Subscription,
    TapEvent,
    TapFilter,
    TapHub,
    format_tap_json,
    format_tap_line,
)
from turnout.proxy.transport.messages import IncomingRequest, ResponseWriter
from turnout.proxy.transport.server import serve_http

log = logging.getLogger(__name__)

METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
TAP_CONTENT_TYPE: Final = "application/x-ndjson"
MAX_TAP_STREAMS: Final = 8
"""Concurrent ``/tap`` streams; more are answered 503."""
TAP_WRITE_TIMEOUT_S: Final = 5.0
"""Seconds a tap write may wait for the client to read before the stream is ended."""
ADMIN_SHUTDOWN_TIMEOUT_S: Final = 5.0
"""Seconds `AdminServer.cleanup()` waits for in-flight admin requests."""

_TEXT = [("content-type", "text/plain; charset=utf-8")]


class AdminServer:
    """The running admin endpoints; `cleanup()` stops listening and ends tap streams."""

    def __init__(
        self,
        *,
        metrics: ProxyMetrics,
        tap: TapHub,
        ready: Callable[[], bool],
        peers: Callable[[], Awaitable[list[str]]] | None = None,
        app_probes: Mapping[str, AppProbe] | None = None,
    ) -> None:
        self.metrics = metrics
        self.app_probes = dict(app_probes or {})
        """``container/kind`` -> the original probe ``/app-health/container/kind`` makes."""
        self.peers = peers
        """Other workers' /metrics texts, merged into ours (`mesh proxy --workers`)."""
        self.tap = tap
        self.ready = ready
        self.streams: set[Subscription] = set()
        self.server: asyncio.Server | None = None

    @property
    def addresses(self) -> list[tuple[str, int]]:
        assert self.server is not None
        return [s.getsockname()[:2] for s in self.server.sockets]

    async def cleanup(self) -> None:
        for sub in list(self.streams):
            sub.close()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ADMIN_SHUTDOWN_TIMEOUT_S):
                    await self.server.wait_closed()

    async def __call__(self, req: IncomingRequest, writer: ResponseWriter) -> None:
        if req.method not in ("GET", "HEAD"):
            await writer.respond(405, _TEXT, b"method not allowed\n")
        elif req.path == "/metrics":
            text = self.metrics.render()
            if self.peers is not None:
                text = merge_metrics([text, *await self.peers()])
            body = text.encode()
            await writer.respond(200, [("content-type", METRICS_CONTENT_TYPE)], body)
        elif req.path == "/live":
            await writer.respond(200, _TEXT, b"live\n")
        elif req.path == "/ready":
            try:
                ok = self.ready()
            except Exception:
                log.exception("ready check failed")
                ok = False
            if ok:
                await writer.respond(200, _TEXT, b"ready\n")
            else:
                await writer.respond(503, _TEXT, b"not ready\n")
        elif req.path == "/tap":
            await self._tap(req, writer)
        elif req.path.startswith(APP_HEALTH_PREFIX) and (
            probe := self.app_probes.get(req.path.removeprefix(APP_HEALTH_PREFIX))
        ):
            status, why = await run_probe(probe)
            await writer.respond(status, _TEXT, f"{why}\n".encode())
        else:
            await writer.respond(404, _TEXT, b"not found\n")

    async def _tap(self, req: IncomingRequest, writer: ResponseWriter) -> None:
        try:
            flt, limit, text = tap_request_from_query(dict(parse_qsl(req.query)))
        except ValueError as exc:
            await writer.respond(400, _TEXT, f"{exc}\n".encode())
            return
        if len(self.streams) >= MAX_TAP_STREAMS:
            await writer.respond(503, _TEXT, b"too many tap streams\n")
            return
        encode: Callable[[TapEvent], str] = format_tap_line if text else format_tap_json
        with self.tap.subscribe(flt, max_queue=DEFAULT_TAP_QUEUE) as sub:
            self.streams.add(sub)
            try:
                await writer.start(200, [("content-type", TAP_CONTENT_TYPE)])
                sent = await _stream(writer, sub, encode, limit)
                log.debug("tap stream ended events=%d dropped=%d", sent, sub.dropped)
                await writer.end()
            except (ConnectionError, TimeoutError) as exc:
                log.debug("tap client gone error=%r", exc)
            finally:
                self.streams.discard(sub)


async def start_admin(
    host: str,
    port: int,
    *,
    metrics: ProxyMetrics,
    tap: TapHub,
    ready: Callable[[], bool],
    peers: Callable[[], Awaitable[list[str]]] | None = None,
    app_probes: Mapping[str, AppProbe] | None = None,
) -> AdminServer:
    """Serve the admin endpoints on `host`:`port` (0 = any free port, see `bound_port`).
    Stop with ``await admin.cleanup()``; open tap streams end at once."""
    admin = AdminServer(metrics=metrics, tap=tap, ready=ready, peers=peers, app_probes=app_probes)
    admin.server = await serve_http(admin, host=host, port=port)
    log.info("admin listening addr=%s:%d", host, bound_port(admin))
    return admin


def bound_port(admin: AdminServer) -> int:
    """The port the server listens on (what port 0 became)."""
    return int(admin.addresses[0][1])


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


async def _stream(
    writer: ResponseWriter,
    sub: Subscription,
    encode: Callable[[TapEvent], str],
    limit: int,
) -> int:
    """Copy events to the client until `limit` or the subscription closing; a client that
    leaves cancels this task. Returns how many events were sent."""
    sent = 0
    while not limit or sent < limit:
        event = await sub.get()
        if event is None:
            break
        async with asyncio.timeout(TAP_WRITE_TIMEOUT_S):
            await writer.write(f"{encode(event)}\n".encode())
        sent += 1
    return sent
