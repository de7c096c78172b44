"""`mesh validate`, `mesh routes [explain]`, `mesh test`: manifests in, findings out.

```
-f PATH... ─> pipeline.compile_files ─┬─> validate: diagnostics (stderr), "N object(s) valid"
--control-plane HOST:PORT (no -f) ─┐  │
   served.read_served ─> IR ───────┴──┼─> routes: views.route_rows ─> table | -o yaml|json
                       (load_tables)  │           --live: viz.stats.live_stats ─> live columns
                                      ├─> routes explain: OfflineMesh.send(via, request)
                                      └─> test: contracts.run_case per case ─> PASS/FAIL, JUnit
```

Every command here runs the path live traffic takes (compile -> xDS -> runtime table), in
process. `routes` and `routes explain` read the table a running control plane serves when
no `-f` is given (its version and rejected inputs go to stderr); nothing else is fetched
but the proxies' `/metrics` that `--live` scrapes.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from turnout.cli import contracts as contracts_mod
from turnout.cli import explain, live, served, views
from turnout.cli.errors import CommandError, ContractError, UsageError
from turnout.cli.offline import OfflineMesh, Request, parse_via
from turnout.cli.output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNLOADABLE,
    print_diagnostics,
)
from turnout.engine import ir
from turnout.engine.config import DEFAULT_ADMIN_ADDRESS
from turnout.engine.diagnostics import Diagnostic, Severity, has_errors, sorted_diagnostics
from turnout.engine.pipeline import compile_files
from turnout.engine.render import diagnostic_data, dump_json, dump_yaml, result_data
from turnout.viz import stats


def run_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    compiled = compile_files(args.files, crds=args.crds)
    diags = compiled.diagnostics
    if args.output == "json":
        out.write(dump_json([diagnostic_data(d) for d in diags]))
    else:
        print_diagnostics(diags, err)
        if not has_errors(diags, strict=args.strict):
            n = len(compiled.inputs.resources.objects)
            print(f"{n} object(s) valid", file=out)
    return EXIT_FAILED if has_errors(diags, strict=args.strict) else EXIT_OK


@dataclass(frozen=True, slots=True, kw_only=True)
class Tables:
    """The table a command shows, with the findings to print and how it got them."""

    table: ir.RouteTable
    statuses: tuple[ir.RouteStatus, ...]
    diagnostics: tuple[Diagnostic, ...]
    """Findings to print (a control plane's rejected inputs included)."""
    summary: str | None = None
    """From a control plane: which one, the version it serves, what it rejected."""


def load_tables(args: argparse.Namespace, err: TextIO) -> Tables:
    """`-f PATH...` compiled here, or else the table a running control plane serves
    (`--control-plane`, default the local `mesh serve`); `CommandError` when unreachable
    or when it serves no table yet (its findings printed to `err` first)."""
    if args.files:
        if args.control_plane:
            raise UsageError("-f and --control-plane exclude each other")
        compiled = compile_files(args.files)
        result = compiled.result
        return Tables(
            table=result.table, statuses=result.statuses, diagnostics=compiled.diagnostics
        )
    got = served.read_served(args.control_plane or DEFAULT_ADMIN_ADDRESS)
    diags = [*got.diagnostics, *(d for r in got.rejected for d in r.diagnostics)]
    if got.table is None:
        print_diagnostics(diags, err)
        raise CommandError(f"{got.summary()}: nothing to show")
    return Tables(
        table=got.table,
        statuses=got.statuses,
        diagnostics=tuple(sorted_diagnostics(diags)),
        summary=got.summary(),
    )


def print_tables_findings(tables: Tables, err: TextIO, *, infos: bool = True) -> None:
    if tables.summary is not None:
        print(tables.summary, file=err)
    diags = tables.diagnostics
    print_diagnostics(
        diags if infos else [d for d in diags if d.severity is not Severity.INFO], err
    )


def run_routes(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.live:
        if args.output not in ("table", "wide", "json"):
            print("error: --live shows -o table, -o wide or -o json", file=err)
            return EXIT_FAILED
        if not args.metrics:
            print("error: --live needs --metrics URL (a proxy's /metrics), repeatable", file=err)
            return EXIT_FAILED
        if args.window <= 0:
            print("error: --window must be > 0", file=err)
            return EXIT_FAILED
    result = load_tables(args, err)
    diags = result.diagnostics
    print_tables_findings(result, err)
    if args.live:
        urls = [stats.metrics_url(u) for u in args.metrics]
        got, errors = asyncio.run(stats.live_stats(urls, window=args.window))
        for e in errors:
            print(f"warning: cannot scrape {e}", file=err)
        rows = views.route_rows(result.table)
        if args.output == "json":
            out.write(dump_json(live.live_data(rows, got)))
        else:
            out.write(live.live_table(rows, got, wide=args.output == "wide"))
        if len(errors) == len(urls):
            return EXIT_FAILED
    elif args.output == "yaml":
        out.write(dump_yaml(result_data(result.table, result.statuses, ())))
    elif args.output == "json":
        out.write(dump_json(result_data(result.table, result.statuses, ())))
    else:
        wide = args.output == "wide"
        rows = views.route_rows(result.table)
        header = views.WIDE_COLUMNS if wide else views.TABLE_COLUMNS
        out.write(views.format_table(header, [views.row_cells(r, wide=wide) for r in rows]))
    return EXIT_FAILED if has_errors(diags, strict=args.strict) else EXIT_OK


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"-H must be 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def run_explain(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        via = parse_via(args.via, from_namespace=args.from_namespace)
        request = Request(
            method=args.method, url=args.url, headers=tuple(parse_header(h) for h in args.headers)
        )
        request.info()
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    tables = load_tables(args, err)
    diags = tables.diagnostics
    print_tables_findings(tables, err, infos=False)
    table = tables.table
    if table.parent(via.parent) is None:
        known = ", ".join(p.name for p in table.parents) or "none"
        print(f"error: no parent {via.parent} in the manifests (parents: {known})", file=err)
        return EXIT_FAILED
    outcome = OfflineMesh(table).send(via, request)
    if args.output == "json":
        out.write(dump_json(explain.outcome_data(outcome)))
    else:
        out.write(explain.outcome_text(outcome))
    return EXIT_FAILED if has_errors(diags) else EXIT_OK


def run_test(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    compiled = compile_files(args.files)
    diags = compiled.diagnostics
    if has_errors(diags):
        print_diagnostics(diags, err)
        print("error: the manifests do not load cleanly", file=err)
        return EXIT_UNLOADABLE
    contracts = []
    for path in args.contracts:
        try:
            text = Path(path).read_text(encoding="utf-8")
            contracts.append((path, contracts_mod.load_contract(path, text)))
        except (OSError, ContractError) as exc:
            print(f"error: {exc}", file=err)
            return EXIT_UNLOADABLE
    mesh = OfflineMesh(compiled.result.table)
    results = [
        contracts_mod.run_case(mesh, case, file=path)
        for path, contract in contracts
        for case in contract.cases
    ]
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.file}: {r.name}", file=out)
        if r.error is not None:
            print(f"      error: {r.error}", file=out)
        for d in r.diffs:
            print(f"      {d}", file=out)
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed", file=out)
    if args.junit:
        Path(args.junit).write_text(contracts_mod.junit_xml(results), encoding="utf-8")
    return EXIT_FAILED if failed else EXIT_OK
