"""`mesh authz TARGET`: a workload's inbound authorizations, live, like `linkerd viz authz`,
and with ``--tls`` who still arrives in plaintext on each server port (the mTLS migration
view).

```
--admin HOST:PORT[,HOST:PORT]... ─ stats.scrape_all, --window s, scrape_all ─┐
viz.authz.view_of_scrapes(before, after, Target("deploy/web", -n)) ──────────┴─► table | json
```

Columns (LINKERD-REFERENCE.md §b): ``ROUTE SERVER AUTHORIZATION UNAUTHORIZED SUCCESS RPS
LATENCY_P50 LATENCY_P95 LATENCY_P99``; rates ``%.1frps``, success ``%.2f%%``, latencies whole
ms, ``-`` for what the window cannot say; idle default-server and denied rows are left out.
``--tls``: ``SERVER PORT CLIENT TLS RPS``, a plaintext row's TLS cell is ``PLAINTEXT
(<reason>)``. Standard library and `turnout.viz` only (no engine): it starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from typing import TextIO

from turnout.cli.errors import UsageError
from turnout.cli.output import EXIT_FAILED, EXIT_OK
from turnout.viz import stats
from turnout.viz.authz import AuthzRow, InboundView, Target, TlsRow, rows_where, view_of_scrapes

AUTHZ_COLUMNS = (
    "ROUTE",
    "SERVER",
    "AUTHORIZATION",
    "UNAUTHORIZED",
    "SUCCESS",
    "RPS",
    "LATENCY_P50",
    "LATENCY_P95",
    "LATENCY_P99",
)
TLS_COLUMNS = ("SERVER", "PORT", "CLIENT", "TLS", "RPS")
QUANTILES = (0.5, 0.95, 0.99)


def format_table(header: tuple[str, ...], rows: list[list[str]]) -> str:
    """Left-aligned columns three spaces apart (`views.format_table`, without the engine)."""
    widths = [len(h) for h in header]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]
    lines = [header, *rows]
    return "".join(
        "   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n"
        for line in lines
    )


def _rps(value: float) -> str:
    return f"{value:.1f}rps"


def _shown(row: AuthzRow) -> bool:
    """Idle rows of a default server and idle denied rows are not shown (Linkerd's)."""
    idle = row.rps == 0 and row.unauthorized_rps == 0
    return not idle or (bool(row.key.authorization) and not row.key.server.startswith("default:"))


def authz_cells(row: AuthzRow) -> list[str]:
    k, st = row.key, row.stats
    rate = st.success_rate
    head = [k.route or "-", k.server or "-", k.authorization or "-"]
    if not k.authorization:  # denied requests: no response of the app to measure
        return [*head, _rps(row.unauthorized_rps), "-", "-", "-", "-", "-"]
    lat = [st.quantile(q) for q in QUANTILES]
    return [
        *head,
        _rps(row.unauthorized_rps),
        "-" if rate is None else f"{rate * 100:.2f}%",
        _rps(row.rps) if row.rps > 0 or rate is not None else "-",
        *("-" if v is None else f"{int(v)}ms" for v in lat),
    ]


def tls_cells(row: TlsRow) -> list[str]:
    k = row.key
    tls = f"PLAINTEXT ({k.tls})" if k.plaintext else "mTLS"
    return [k.server or "-", str(k.port), k.client or "-", tls, _rps(row.rps)]


def tls_rows(view: InboundView) -> list[TlsRow]:
    return sorted(view.tls.values(), key=lambda r: r.key)


def authz_table(view: InboundView) -> str:
    return format_table(AUTHZ_COLUMNS, [authz_cells(r) for r in rows_where(view, _shown)])


def tls_table(view: InboundView) -> str:
    return format_table(TLS_COLUMNS, [tls_cells(r) for r in tls_rows(view)])


def view_data(view: InboundView) -> dict[str, object]:
    """``-o json``: both views, numbers unformatted (None where the window cannot say)."""
    authz = []
    for r in rows_where(view, _shown):
        st = r.stats
        item: dict[str, object] = {
            "route": r.key.route,
            "server": r.key.server,
            "authorization": r.key.authorization,
            "unauthorized_rps": r.unauthorized_rps,
            "success_rate": st.success_rate,
            "rps": r.rps,
        }
        for q in QUANTILES:
            item[f"latency_ms_p{round(q * 100)}"] = st.quantile(q)
        authz.append(item)
    tls = [
        {
            "server": r.key.server,
            "port": r.key.port,
            "client_id": r.key.client,
            "tls": r.key.tls,
            "plaintext": r.key.plaintext,
            "rps": r.rps,
        }
        for r in tls_rows(view)
    ]
    return {"authorizations": authz, "tls": tls}


def admin_urls(values: list[str]) -> list[str]:
    """``--admin`` values (repeatable, comma-separated) -> metrics URLs."""
    urls = [stats.metrics_url(v.strip()) for value in values for v in value.split(",") if v.strip()]
    if not urls:
        raise UsageError("mesh authz needs --admin HOST:PORT (a proxy's admin), repeatable")
    return urls


async def live_view(urls: list[str], target: Target, *, window: float) -> InboundView:
    before = await stats.scrape_all(urls)
    await asyncio.sleep(window)
    after = await stats.scrape_all(urls)
    return view_of_scrapes(before, after, target)


def run_authz(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        target = Target.parse(args.target, namespace=args.namespace)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not (math.isfinite(args.window) and args.window > 0):
        raise UsageError(f"--window must be > 0, got {args.window:g}")
    urls = admin_urls(args.admin)
    view = asyncio.run(live_view(urls, target, window=args.window))
    for e in view.errors:
        print(f"warning: cannot scrape {e}", file=err)
    if len(view.errors) == len(urls):
        return EXIT_FAILED
    if not view.seen:
        print(f"warning: no inbound series of {target} at {', '.join(urls)}", file=err)
    if args.output == "json":
        out.write(json.dumps(view_data(view), indent=2) + "\n")
    else:
        out.write(tls_table(view) if args.tls else authz_table(view))
    return EXIT_OK if view.seen else EXIT_FAILED
