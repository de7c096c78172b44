"""`mesh validate`, `mesh routes [explain]`, `mesh test`: manifests in, findings out.

```
-f PATH... ─> pipeline.compile_files ─┬─> validate: diagnostics (stderr), "N object(s) valid"
                                      ├─> routes: views.route_rows ─> table | -o yaml|json
                                      │           --live: viz.stats.live_stats ─> live columns
                                      ├─> routes explain: OfflineMesh.send(via, request)
                                      └─> test: contracts.run_case per case ─> PASS/FAIL, JUnit
```

Every command here runs the path live traffic takes (compile -> xDS -> runtime table), in
process; nothing is sent anywhere but the proxies' `/metrics` that `--live` scrapes.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TextIO

from turnout.cli import contracts as contracts_mod
from turnout.cli import explain, live, views
from turnout.cli.errors import ContractError
from turnout.cli.offline import OfflineMesh, Request, parse_via
from turnout.cli.output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNLOADABLE,
    print_diagnostics,
)
from turnout.engine.diagnostics import Severity, has_errors
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


def run_routes(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not args.files:
        print("error: mesh routes needs -f PATH (a live control plane comes later)", file=err)
        return EXIT_FAILED
    if args.live:
        if args.output not in ("table", "wide"):
            print("error: --live shows -o table or -o wide", file=err)
            return EXIT_FAILED
        if not args.metrics:
            print("error: --live needs --metrics URL (a proxy's /metrics), repeatable", file=err)
            return EXIT_FAILED
        if args.window <= 0:
            print("error: --window must be > 0", file=err)
            return EXIT_FAILED
    compiled = compile_files(args.files)
    diags = compiled.diagnostics
    print_diagnostics(diags, err)
    result = compiled.result
    if args.live:
        urls = [stats.metrics_url(u) for u in args.metrics]
        got, errors = asyncio.run(stats.live_stats(urls, window=args.window))
        for e in errors:
            print(f"warning: cannot scrape {e}", file=err)
        rows = views.route_rows(result.table)
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
    compiled = compile_files(args.files)
    diags = compiled.diagnostics
    print_diagnostics([d for d in diags if d.severity is not Severity.INFO], err)
    table = compiled.result.table
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
