"""`mesh top`: live top paths, aggregated from tap events (``linkerd viz top``).

```
tap events (turnout.viz.tap's dicts) ──Top.add──> req: remember (source, destination, method,
                                                          path | route) by (proxy, id)
                                                  rsp: the latency (request init → headers)
                                                  end: count, success, best/worst/last
Top.rows() ──> sorted by count ──> render(rows) ──> "Source  Destination  Method  Path  Count …"
```

A request counts once its ``end`` arrives; it succeeds when the HTTP status is below 500,
the gRPC status (if any) is OK and the stream was not reset, as Linkerd's classification.
Requests whose ``req`` was never seen (tap started mid-request) are ignored. Pure: no I/O, no
clock; the CLI feeds it and redraws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from turnout.viz.tap import Event

MAX_PENDING: Final = 10_000
"""Requests remembered between their ``req`` and ``end``; the oldest are forgotten."""


@dataclass(slots=True, kw_only=True)
class Row:
    """One merged top row; latencies in microseconds."""

    source: str
    destination: str
    method: str
    path: str
    count: int = 0
    successes: int = 0
    best_us: int = 0
    worst_us: int = 0
    last_us: int = 0

    @property
    def success_rate(self) -> float:
        return self.successes / self.count if self.count else 0.0


@dataclass(slots=True)
class _Pending:
    key: tuple[str, str, str, str]
    latency_us: int = 0


def _host(addr: object) -> str:
    return str(addr).rpartition(":")[0] or str(addr)


def endpoints(event: Event) -> tuple[str, str]:
    """(source, destination) of a request: the tapped proxy's pod on its own side, the
    backend Service (outbound) or the client's IP (inbound) on the other."""
    proxy = event.get("proxy")
    pod = str(proxy.get("pod") or proxy.get("workload") or "") if isinstance(proxy, Mapping) else ""
    if event.get("direction") == "outbound":
        dst = str(event.get("dst_service") or _host(event.get("dst", "")))
        return pod or _host(event.get("src", "")), dst
    return _host(event.get("src", "")), pod or _host(event.get("dst", ""))


def succeeded(event: Event) -> bool:
    status = event.get("status")
    grpc = event.get("grpc_status")
    return (
        not event.get("reset_error")
        and isinstance(status, int)
        and status < 500
        and grpc in (None, 0)
    )


@dataclass(slots=True)
class Top:
    """The aggregation; `routes` keys rows by route instead of method and path,
    `hide_sources` merges rows across sources."""

    routes: bool = False
    hide_sources: bool = False
    _rows: dict[tuple[str, str, str, str], Row] = field(default_factory=dict)
    _pending: dict[tuple[str, str], _Pending] = field(default_factory=dict)

    def add(self, event: Event) -> None:
        proxy = event.get("proxy")
        rid = (
            str(proxy.get("admin", "")) if isinstance(proxy, Mapping) else "",
            str(event.get("id")),
        )
        kind = event.get("type")
        if kind == "req":
            src, dst = endpoints(event)
            if self.hide_sources:
                src = ""
            if self.routes:
                key = (src, dst, "", str(event.get("route") or "[DEFAULT]"))
            else:
                key = (src, dst, str(event.get("method", "")), str(event.get("path", "")))
            self._pending[rid] = _Pending(key)
            if len(self._pending) > MAX_PENDING:
                del self._pending[next(iter(self._pending))]
        elif (pending := self._pending.get(rid)) is not None:
            if kind == "rsp":
                latency = event.get("latency_us")
                pending.latency_us = latency if isinstance(latency, int) else 0
            elif kind == "end":
                del self._pending[rid]
                self._count(pending, succeeded(event))

    def _count(self, pending: _Pending, ok: bool) -> None:
        src, dst, method, path = pending.key
        row = self._rows.get(pending.key)
        if row is None:
            row = self._rows[pending.key] = Row(
                source=src, destination=dst, method=method, path=path
            )
        us = pending.latency_us
        row.best_us = us if not row.count else min(row.best_us, us)
        row.worst_us = max(row.worst_us, us)
        row.last_us = us
        row.count += 1
        row.successes += ok

    def __len__(self) -> int:
        """Distinct rows so far."""
        return len(self._rows)

    def rows(self) -> list[Row]:
        """Most requested first; ties by source, destination, path."""
        return sorted(
            self._rows.values(), key=lambda r: (-r.count, r.source, r.destination, r.path)
        )


def latency(us: int) -> str:
    """``812µs``, ``3.4ms``, ``27ms``, ``1.2s``."""
    if us < 1000:
        return f"{us}µs"
    if us < 10_000:
        return f"{us / 1000:.1f}ms"
    if us < 1_000_000:
        return f"{us // 1000}ms"
    return f"{us / 1_000_000:.1f}s"


def render(rows: Sequence[Row], *, routes: bool = False, hide_sources: bool = False) -> list[str]:
    """The table as Linkerd prints it (column spacing 2), header first."""
    head = ["Source", "Destination", "Method", "Path"]
    if routes:
        head[2:4] = ["Route"]
    if hide_sources:
        head.remove("Source")
    head += ["Count", "Best", "Worst", "Last", "Success Rate"]
    table = [head]
    for r in rows:
        cells = [r.source, r.destination, r.method, r.path]
        if routes:
            cells[2:4] = [r.path]
        if hide_sources:
            cells.pop(0)
        cells += [str(r.count), latency(r.best_us), latency(r.worst_us), latency(r.last_us)]
        cells.append(f"{r.success_rate * 100:.2f}%")
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]
