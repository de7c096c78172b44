"""What the dashboard shows, polled from the control plane and the proxies while someone looks.

```
request ─> Poller.current() ── older than `interval`? ──> poll (one at a time):
             GET /debug/diagnostics  (version, changes)  ── changed? ──> served.read_served:
                                                           table ─> views.route_rows (per version)
             GET /debug/proxies      every proxy: namespace, workload, pod, admin
             Prometheus (if the control plane started one): summary.edge_rows, `mesh edges`
             GET <admin>/metrics     each proxy (viz.stats.scrape_all) ─> deltas against the
                                     previous poll's scrape: inbound (per workload) and
                                     outbound routes (viz.stats.route_deltas)
        <─ Snapshot (frozen; `seq` grows per poll: the pages' render cache key)
```

Nothing polls while no page is open: a poll runs when a request finds the snapshot older
than `interval` seconds, and the table is fetched and its rows rebuilt only when the
control plane's version or change count moved. The numbers are the deltas between two
polls (Linkerd's window is the scrape interval; here the dashboard's refresh); a scrape
older than `MAX_WINDOW_S` starts a new window instead (no numbers until the next poll).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from turnout.cli import served as served_mod
from turnout.cli import views
from turnout.cli.errors import CommandError
from turnout.viz import prom, stats, summary
from turnout.viz.source import PromSource
from turnout.viz.stats import RouteKey, RouteStats, Scrape
from turnout.viz.targets import parse_target

DEFAULT_INTERVAL_S = 2.0
MAX_WINDOW_S = 30.0
FETCH_TIMEOUT_S = 2.0
EDGES_WINDOW_S = 60.0
"""`mesh edges`' default window (Prometheus, `-t 1m`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Proxy:
    namespace: str
    workload: str
    """``deployment/web-v1`` ("" when the proxy did not say)."""
    pod: str
    admin: str
    """``HOST:PORT`` of its admin ("" = none, e.g. a proxyless gRPC client)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tables:
    """The served table, once per (version, changes): rows built once, shared by every view."""

    key: tuple[int | None, int]
    served: served_mod.Served
    rows: tuple[views.RouteRow, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    seq: int
    at: float
    """Wall-clock seconds of the poll."""
    tables: Tables | None
    proxies: tuple[Proxy, ...]
    inbound: Mapping[str, RouteStats]
    """By proxy admin address: what it answered since the previous poll."""
    outbound: Mapping[str, Mapping[RouteKey, RouteStats]]
    """By proxy admin address: its outbound routes since the previous poll."""
    window_s: float | None
    """Seconds between the two scrapes the numbers come from; None = first scrape."""
    errors: tuple[str, ...]
    """What could not be read this time (the control plane, a proxy)."""
    edges: tuple[summary.EdgeRow, ...] = ()
    """`mesh edges deploy -A` over the control plane's Prometheus (none without one)."""
    prometheus: str | None = None

    def routes(self) -> dict[RouteKey, RouteStats]:
        return stats.merge(self.outbound.values())


def _get_json(address: str, path: str) -> dict[str, object]:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=FETCH_TIMEOUT_S) as resp:
        data = json.loads(resp.read())
    if not isinstance(data, dict):
        raise ValueError(f"{address}{path}: not a JSON object")
    return data


def _proxies(data: Mapping[str, object]) -> tuple[Proxy, ...]:
    raw = data.get("proxies")
    out = []
    for p in raw if isinstance(raw, list) else ():
        if isinstance(p, dict):
            out.append(
                Proxy(
                    namespace=str(p.get("namespace") or ""),
                    workload=str(p.get("workload") or ""),
                    pod=str(p.get("pod") or ""),
                    admin=str(p.get("admin") or ""),
                )
            )
    return tuple(sorted(set(out), key=lambda p: (p.namespace, p.workload, p.pod, p.admin)))


@dataclass(slots=True)
class Poller:
    """One per dashboard: the latest `Snapshot`, refreshed on demand."""

    control_plane: str
    interval: float = DEFAULT_INTERVAL_S
    clock: Callable[[], float] = time.monotonic
    _snapshot: Snapshot | None = None
    _polled_at: float = -1e9
    _scrapes: dict[str, Scrape] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    polls: int = 0
    table_reads: int = 0
    prometheus: str | None = None
    """The Prometheus the control plane started (`/debug/diagnostics` "prometheus")."""
    _edges_wanted_at: float = -1e9

    def want_edges(self) -> None:
        """A view shows edges: query them on the polls of the next `MAX_WINDOW_S` seconds
        (the other views cost no Prometheus query)."""
        self._edges_wanted_at = self.clock()

    async def current(self) -> Snapshot:
        if self._snapshot is not None and self.clock() - self._polled_at < self.interval:
            return self._snapshot
        async with self._lock:
            if self._snapshot is None or self.clock() - self._polled_at >= self.interval:
                self._snapshot = await self._poll()
                self._polled_at = self.clock()
        return self._snapshot

    async def _tables(self, errors: list[str]) -> Tables | None:
        old = self._snapshot.tables if self._snapshot is not None else None
        try:
            diags = await asyncio.to_thread(_get_json, self.control_plane, "/debug/diagnostics")
        except (OSError, ValueError) as exc:
            errors.append(f"control plane {self.control_plane}: {exc}")
            return old
        url = diags.get("prometheus")
        self.prometheus = url if isinstance(url, str) and url else None
        version, changes = diags.get("version"), diags.get("changes")
        key = (
            version if isinstance(version, int) else None,
            changes if isinstance(changes, int) else 0,
        )
        if old is not None and old.key == key:
            return old
        try:
            got = await asyncio.to_thread(served_mod.read_served, self.control_plane)
        except CommandError as exc:
            errors.append(str(exc))
            return old
        self.table_reads += 1
        rows = tuple(views.route_rows(got.table)) if got.table is not None else ()
        return Tables(key=key, served=got, rows=rows)

    async def _poll(self) -> Snapshot:
        self.polls += 1
        errors: list[str] = []
        tables = await self._tables(errors)
        try:
            data = await asyncio.to_thread(_get_json, self.control_plane, "/debug/proxies")
            proxies = _proxies(data)
        except (OSError, ValueError) as exc:
            errors.append(f"control plane {self.control_plane}: {exc}")
            proxies = self._snapshot.proxies if self._snapshot is not None else ()
        admins = sorted({p.admin for p in proxies if p.admin})
        now = await stats.scrape_all([stats.metrics_url(a) for a in admins])
        inbound: dict[str, RouteStats] = {}
        outbound: dict[str, dict[RouteKey, RouteStats]] = {}
        windows = []
        for admin, after in zip(admins, now, strict=True):
            before = self._scrapes.get(admin)
            if after.error:
                errors.append(f"proxy {admin}: {after.error}")
                continue
            self._scrapes[admin] = after
            if before is None or before.error or after.at - before.at > MAX_WINDOW_S:
                continue
            seconds = after.at - before.at
            try:
                inbound[admin] = stats.inbound_deltas(before.text, after.text, seconds=seconds)
                outbound[admin] = stats.route_deltas(before.text, after.text, seconds=seconds)
            except stats.ParseError as exc:
                errors.append(f"proxy {admin}: {exc}")
                continue
            windows.append(seconds)
        for gone in set(self._scrapes) - set(admins):
            del self._scrapes[gone]
        edges: tuple[summary.EdgeRow, ...] = ()
        if self.prometheus is not None and self.clock() - self._edges_wanted_at < MAX_WINDOW_S:
            target = parse_target("deploy", namespace="default", all_namespaces=True)
            try:
                got = await summary.edge_rows(PromSource(self.prometheus, EDGES_WINDOW_S), target)
                edges = tuple(got)
            except prom.QueryError as exc:
                errors.append(str(exc))
        seq = self._snapshot.seq + 1 if self._snapshot is not None else 1
        return Snapshot(
            seq=seq,
            at=time.time(),
            tables=tables,
            proxies=proxies,
            inbound=inbound,
            outbound=outbound,
            window_s=max(windows) if windows else None,
            errors=tuple(errors),
            edges=edges,
            prometheus=self.prometheus,
        )
