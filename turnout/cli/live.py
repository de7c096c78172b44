"""`mesh routes --live`: the route table with Linkerd's live columns.

```
viz.stats.live_stats(urls) ─> {RouteKey: RouteStats} ─┐
views.route_rows(table) ─> [RouteRow] ────────────────┴─> live_table ─> text
                                                          live_data  ─> -o json rows
```

Columns as `linkerd viz routes` prints them (LINKERD-REFERENCE.md §b): SUCCESS as
``%.2f%%``, RPS as ``%.1frps``, LATENCY_Pnn as whole milliseconds (truncated, as Linkerd's
``uint64`` conversion does); a route without traffic in the window shows ``-`` in every
column (``null`` in `live_data`, whose numbers are unformatted). The numbers themselves
come from `turnout.viz.stats`. Under the table, one line per inbound port of the scraped
proxies with traffic: how much of it still arrives in plaintext (the mTLS migration count,
`mesh authz --tls` has the clients).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from turnout.cli.views import TABLE_COLUMNS, WIDE_COLUMNS, RouteRow, format_table, row_cells
from turnout.viz.authz import plaintext_by_port, view_of_scrapes
from turnout.viz.stats import RouteKey, RouteStats, Scrape, lookup

LIVE_COLUMNS = ("SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99")
WIDE_LIVE_COLUMNS = ("EFFECTIVE_SUCCESS", "EFFECTIVE_RPS", "ACTUAL_SUCCESS", "ACTUAL_RPS",
                     "LATENCY_P50", "LATENCY_P95", "LATENCY_P99")  # fmt: skip
"""`linkerd viz routes -o wide`: effective = requests as the client sent them, actual =
every attempt (retries included, ``route_actual_response_total``)."""
DEFAULT_ROUTE = "[DEFAULT]"
"""Linkerd's row for traffic that matched no route (``rt_route=""``)."""
QUANTILES = (0.5, 0.95, 0.99)


def fmt_latency(ms: float | None) -> str:
    return "-" if ms is None else f"{int(ms)}ms"


def stats_cells(st: RouteStats | None) -> list[str]:
    """SUCCESS RPS LATENCY_P50 LATENCY_P95 LATENCY_P99 as `viz routes` prints them."""
    rate = None if st is None else st.success_rate
    if st is None or rate is None:
        return ["-"] * len(LIVE_COLUMNS)
    return [
        f"{rate * 100:.2f}%",
        f"{st.rps:.1f}rps",
        *(fmt_latency(st.quantile(q)) for q in QUANTILES),
    ]


def wide_stats_cells(st: RouteStats | None) -> list[str]:
    """EFFECTIVE_SUCCESS EFFECTIVE_RPS ACTUAL_SUCCESS ACTUAL_RPS LATENCY_P50/P95/P99."""
    cells = stats_cells(st)
    actual = None if st is None else st.actual_success_rate
    if st is None or actual is None:
        return [*cells[:2], "-", "-", *cells[2:]]
    return [*cells[:2], f"{actual * 100:.2f}%", f"{st.actual_rps:.1f}rps", *cells[2:]]


def default_keys(stats: Mapping[RouteKey, RouteStats]) -> list[RouteKey]:
    """The keys of traffic that matched no rule, with responses in the window."""
    return sorted(
        (k for k, st in stats.items() if k.rule == "" and st.total > 0),
        key=lambda k: k.parent or "",
    )


def live_table(
    rows: Sequence[RouteRow], stats: Mapping[RouteKey, RouteStats], *, wide: bool = False
) -> str:
    """The `mesh routes` table with the live columns appended to every row, then a
    ``[DEFAULT]`` row per parent whose traffic matched no rule."""
    columns = WIDE_COLUMNS if wide else TABLE_COLUMNS
    header = (*columns, *(WIDE_LIVE_COLUMNS if wide else LIVE_COLUMNS))
    numbers = wide_stats_cells if wide else stats_cells
    cells = [
        [*row_cells(r, wide=wide), *numbers(lookup(stats, parent=r.parent, rule=r.rule))]
        for r in rows
    ]
    for key in default_keys(stats):
        blank = ["-"] * (len(columns) - 2)
        cells.append([key.parent or "-", DEFAULT_ROUTE, *blank, *numbers(stats[key])])
    return format_table(header, cells)


def live_data(
    rows: Sequence[RouteRow], stats: Mapping[RouteKey, RouteStats]
) -> list[dict[str, object]]:
    """`--live -o json`: each row's fields with its numbers (None without traffic):
    ``success_rate`` in [0, 1], ``rps``, ``latency_ms_p50/p95/p99``."""
    out: list[dict[str, object]] = []
    for r in rows:
        st = lookup(stats, parent=r.parent, rule=r.rule)
        rate = None if st is None else st.success_rate
        item: dict[str, object] = {f: getattr(r, f) for f in RouteRow.__dataclass_fields__}
        item["success_rate"] = rate
        item["rps"] = None if st is None or rate is None else st.rps
        actual = None if st is None else st.actual_success_rate
        item["actual_success_rate"] = actual
        item["actual_rps"] = None if st is None or actual is None else st.actual_rps
        for q in QUANTILES:
            item[f"latency_ms_p{round(q * 100)}"] = None if st is None else st.quantile(q)
        out.append(item)
    return out


def plaintext_lines(before: Sequence[Scrape], after: Sequence[Scrape]) -> str:
    """``inbound port 8080: 1.0rps plaintext of 3.0rps`` per inbound port with traffic
    (every scraped proxy's inbound ``request_total`` TLS labels); "" when none."""
    view = view_of_scrapes(before, after, None)
    lines = [
        f"inbound port {port}: {plain:.1f}rps plaintext of {total:.1f}rps\n"
        for port, (plain, total) in sorted(plaintext_by_port(view.tls.values()).items())
        if total > 0
    ]
    return "".join(lines)
