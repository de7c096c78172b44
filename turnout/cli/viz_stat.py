"""`mesh stat TARGET` and `mesh edges TARGET`: linkerd viz's tables from our proxies' metrics.

```
args ─> viz.targets.parse_target ─> cli.viz_source.open_source (Prometheus, else a scrape)
     ─> viz.summary.stat_rows / edge_rows ─> table | wide | json on stdout
```

Columns and formats are `linkerd viz stat`'s and `linkerd viz edges`' (LINKERD-REFERENCE.md
§b): ``[NAMESPACE] NAME MESHED SUCCESS RPS LATENCY_P50 LATENCY_P95 LATENCY_P99 TCP_CONN``
(``-o wide``: ``READ_BYTES/SEC WRITE_BYTES/SEC``), ``%.2f%%``, ``%.1frps``, whole ``Nms``,
``-`` for an empty cell; NAMESPACE only with ``-A``. MESHED is meshed/running pods as the
control plane knows them (`viz_source.running_pods`), ``-`` for Services.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import TextIO

from turnout.cli.errors import CommandError, UsageError
from turnout.cli.output import EXIT_OK
from turnout.cli.views import format_table
from turnout.cli.viz_source import open_source, running_pods
from turnout.viz.prom import QueryError
from turnout.viz.source import ScrapeSource, Source
from turnout.viz.summary import EdgeRow, StatRow, edge_rows, stat_rows
from turnout.viz.targets import Target, TargetError, parse_target

STAT_COLUMNS = ("NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95",
                "LATENCY_P99", "TCP_CONN")  # fmt: skip
WIDE_STAT = ("READ_BYTES/SEC", "WRITE_BYTES/SEC")
EDGE_COLUMNS = ("SRC", "DST", "SRC_NS", "DST_NS", "SECURED")
QUANTILES = (0.5, 0.95, 0.99)


def _target(text: str, args: argparse.Namespace, namespace: str | None = None) -> Target:
    try:
        return parse_target(
            text, namespace=namespace or args.namespace, all_namespaces=args.all_namespaces
        )
    except TargetError as exc:
        raise UsageError(str(exc)) from None


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{int(v)}ms"


def meshed_cell(
    row: StatRow, target: Target, pods: dict[tuple[str, str, str], tuple[int, int]]
) -> str:
    if target.kind == "service":
        return "-"
    if target.kind == "namespace":
        got = [v for (ns, _, _), v in pods.items() if ns == row.name]
    elif target.kind == "pod":
        return "1/1"
    else:
        got = [pods.get((row.namespace, target.kind, row.name), (0, 0))]
    meshed, running = sum(m for m, _ in got), sum(r for _, r in got)
    return f"{meshed}/{running}" if running else "-"


def stat_cells(row: StatRow, *, wide: bool) -> list[str]:
    rate, rps = row.success_rate, row.rps
    cells = [
        "-" if rate is None else f"{rate * 100:.2f}%",
        "-" if rps is None else f"{rps:.1f}rps",
        *(_ms(row.quantile(q)) for q in QUANTILES),
        "-" if row.tcp is None else f"{int(row.tcp)}",
    ]
    if wide:
        for v in (row.read_bytes, row.write_bytes):
            cells.append("-" if row.tcp is None else f"{v / row.window_s:.1f}B/s")
    return cells


def stat_data(row: StatRow, meshed: str) -> dict[str, object]:
    return {
        "namespace": row.namespace,
        "name": row.name,
        "meshed": meshed,
        "success": row.success_rate,
        "rps": row.rps,
        **{f"latency_ms_p{round(q * 100)}": row.quantile(q) for q in QUANTILES},
        "tcp_conn": row.tcp,
        "read_bytes_per_sec": None if row.tcp is None else row.read_bytes / row.window_s,
        "write_bytes_per_sec": None if row.tcp is None else row.write_bytes / row.window_s,
        "window_s": row.window_s,
    }


def _say_scrape(source: Source, err: TextIO) -> None:
    if isinstance(source, ScrapeSource):
        for e in source.errors:
            print(f"warning: cannot scrape {e}", file=err)


def run_stat(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    target = _target(args.target, args)
    from_ = None if args.from_ is None else _target(args.from_, args, args.from_namespace)
    to = None if args.to is None else _target(args.to, args, args.to_namespace)
    if to is not None and (to.kind != "service" or target.kind == "service"):
        raise UsageError("--to: a Service (svc/NAME) after a workload target")
    if from_ is not None and target.kind != "service":
        raise UsageError(
            "--from: only with a Service target (svc/NAME): servers see identities, not workloads"
        )
    source, found = open_source(args, err)
    try:
        rows = asyncio.run(stat_rows(source, target, from_=from_, to=to))
    except QueryError as exc:
        raise CommandError(str(exc)) from None
    _say_scrape(source, err)
    pods = running_pods(found or [])
    if target.kind != "service" and target.kind != "namespace":
        # rows for every known workload of the kind, traffic or not (Linkerd lists them all)
        for (ns, kind, name), _ in pods.items():
            if (
                kind == target.kind
                and (target.name in (None, name))
                and (target.namespace in (None, ns))
            ) and not any(r.namespace == ns and r.name == name for r in rows):
                rows.append(StatRow(ns, name, window_s=source.window_s))
        rows.sort(key=lambda r: (r.namespace, r.name))
    meshed = [meshed_cell(r, target, pods) for r in rows]
    if args.output == "json":
        print(
            json.dumps([stat_data(r, m) for r, m in zip(rows, meshed, strict=True)], indent=2),
            file=out,
        )
        return EXIT_OK
    wide = args.output == "wide"
    all_ns = target.namespace is None and target.kind != "namespace"
    header = (*(("NAMESPACE",) if all_ns else ()), *STAT_COLUMNS, *(WIDE_STAT if wide else ()))
    cells = [
        [*([r.namespace] if all_ns else []), r.name, m, *stat_cells(r, wide=wide)]
        for r, m in zip(rows, meshed, strict=True)
    ]
    if not cells:
        print(f"no resources found for {target}", file=err)
        return EXIT_OK
    out.write(format_table(header, cells))
    return EXIT_OK


def edge_cells(e: EdgeRow, *, wide: bool) -> list[str]:
    ids = [e.client_id or "-", e.server_id or "-"] if wide else []
    return [e.src, e.dst, e.src_namespace, e.dst_namespace, *ids, e.secured]


def run_edges(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    target = _target(args.target, args)
    source, _ = open_source(args, err)
    try:
        rows = asyncio.run(edge_rows(source, target))
    except QueryError as exc:
        raise CommandError(str(exc)) from None
    _say_scrape(source, err)
    if args.output == "json":
        data = [
            {
                "src": e.src, "dst": e.dst, "src_namespace": e.src_namespace,
                "dst_namespace": e.dst_namespace, "client_id": e.client_id,
                "server_id": e.server_id, "secured": e.secured == "√",
                "no_tls_reason": "" if e.secured == "√" else e.secured,
            }
            for e in rows
        ]  # fmt: skip
        print(json.dumps(data, indent=2, ensure_ascii=False), file=out)
        return EXIT_OK
    wide = args.output == "wide"
    header = (*EDGE_COLUMNS[:4], *(("CLIENT_ID", "SERVER_ID") if wide else ()), "SECURED")
    if not rows:
        print(f"no edges found for {target}", file=err)
        return EXIT_OK
    out.write(format_table(header, [edge_cells(e, wide=wide) for e in rows]))
    return EXIT_OK
