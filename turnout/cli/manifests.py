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
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from turnout.cli import authz, explain, live, served, views
from turnout.cli import contracts as contracts_mod
from turnout.cli.errors import CommandError, UsageError
from turnout.cli.offline import (
    OfflineMesh,
    Request,
    RequestOutcome,
    Via,
    parse_via_ref,
    resolve_via,
)
from turnout.cli.output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNLOADABLE,
    compile_manifests,
    print_diagnostics,
)
from turnout.engine import ir
from turnout.engine.config import DEFAULT_ADMIN_ADDRESS
from turnout.engine.diagnostics import Diagnostic, Severity, has_errors, sorted_diagnostics
from turnout.engine.model import Resources
from turnout.engine.render import diagnostic_data, dump_json, dump_yaml, result_data
from turnout.viz import stats
from turnout.viz.prom import QueryError

if TYPE_CHECKING:
    from turnout.engine.pipeline import CompiledInputs


def run_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    compiled = compile_manifests(
        args.files, verb="validate", crds=args.crds, max_file_bytes=args.max_file_size
    )
    diags = sorted_diagnostics([*compiled.diagnostics, *policy_diagnostics(compiled)])
    if args.output == "json":
        out.write(dump_json([diagnostic_data(d) for d in diags]))
    else:
        print_diagnostics(diags, err)
        if not has_errors(diags, strict=args.strict):
            n = len(compiled.inputs.resources.objects)
            print(f"{n} object(s) valid", file=out)
    return EXIT_FAILED if has_errors(diags, strict=args.strict) else EXIT_OK


def policy_diagnostics(compiled: CompiledInputs) -> tuple[Diagnostic, ...]:
    """What compiling the authorization policy found (a missing authentication failing
    closed, a policy that reaches no Server); none when there is no policy."""
    from turnout.adapters.policy import compile_policy

    return compile_policy(compiled.inputs.resources).diagnostics


@dataclass(frozen=True, slots=True, kw_only=True)
class Tables:
    """The table a command shows, with the findings to print and how it got them."""

    table: ir.RouteTable
    statuses: tuple[ir.RouteStatus, ...]
    diagnostics: tuple[Diagnostic, ...]
    """Findings to print (a control plane's rejected inputs included)."""
    summary: str | None = None
    """From a control plane: which one, the version it serves, what it rejected."""
    resources: Resources | None = None
    """The compiled objects (from `-f` only): a `--via` without a port looks at them."""
    gateway_statuses: tuple[ir.GatewayStatus, ...] = ()


def load_tables(args: argparse.Namespace, err: TextIO, *, verb: str) -> Tables:
    """`-f PATH...` compiled here, or else the table a running control plane serves
    (`--control-plane`, default the local `mesh serve`); `CommandError` when unreachable
    or when it serves no table yet (its findings printed to `err` first)."""
    if args.files:
        if args.control_plane:
            raise UsageError("-f and --control-plane exclude each other")
        compiled = compile_manifests(args.files, verb=verb, max_file_bytes=args.max_file_size)
        result = compiled.result
        return Tables(
            table=result.table,
            statuses=result.statuses,
            diagnostics=compiled.diagnostics,
            resources=compiled.inputs.resources,
            gateway_statuses=result.gateway_statuses,
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
        gateway_statuses=got.gateway_statuses,
    )


def print_tables_findings(tables: Tables, err: TextIO, *, infos: bool = True) -> None:
    if tables.summary is not None:
        print(tables.summary, file=err)
    diags = tables.diagnostics
    print_diagnostics(
        diags if infos else [d for d in diags if d.severity is not Severity.INFO], err
    )


def live_routes(args: argparse.Namespace, result: Tables, out: TextIO, err: TextIO) -> int:
    """`--live`: the proxies of --metrics scraped a window apart; without --metrics (the
    table from a control plane) its Prometheus, else its proxies scraped directly."""
    from turnout.cli import viz_source  # only --live needs the viz sources

    urls = [stats.metrics_url(u) for u in args.metrics]
    rows = views.route_rows(result.table)
    scrapes = None
    errors: list[str] = []
    if not urls:
        found = viz_source.live_prometheus(args, args.control_plane or DEFAULT_ADMIN_ADDRESS)
        if not isinstance(found, list):
            try:
                got = asyncio.run(viz_source.prometheus_route_stats(found))
            except QueryError as exc:
                raise CommandError(str(exc)) from None
        else:
            urls = found
            print(f"no Prometheus: scraping {len(urls)} proxies directly over"
                  f" {args.window:g}s", file=err)  # fmt: skip
    if urls:
        scrapes = asyncio.run(stats.live_scrapes(urls, window=args.window))
        got, errors = stats.route_stats(*scrapes)
        for e in errors:
            print(f"warning: cannot scrape {e}", file=err)
    if args.output == "json":
        out.write(dump_json(live.live_data(rows, got)))
    else:
        out.write(live.live_table(rows, got, wide=args.output == "wide"))
        if scrapes is not None:
            out.write(live.plaintext_lines(*scrapes))
    if urls and len(errors) == len(urls):
        return EXIT_FAILED
    return EXIT_FAILED if has_errors(result.diagnostics, strict=args.strict) else EXIT_OK


def run_routes(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.live:
        if args.output not in ("table", "wide", "json"):
            raise UsageError("--live shows -o table, -o wide or -o json")
        if not args.metrics and args.files:
            raise UsageError("--live needs --metrics URL (a proxy's /metrics), repeatable")
        if not (math.isfinite(args.window) and args.window > 0):
            raise UsageError(f"--window must be > 0, got {args.window:g}")
    result = load_tables(args, err, verb="routes")
    diags = result.diagnostics
    print_tables_findings(result, err)
    if args.live:
        return live_routes(args, result, out, err)
    if args.output in ("yaml", "json"):
        data = result_data(
            result.table, result.statuses, (), camel=True, gateways=result.gateway_statuses
        )
        out.write(dump_yaml(data) if args.output == "yaml" else dump_json(data))
    else:
        wide = args.output == "wide"
        rows = views.route_rows(result.table)
        header = views.WIDE_COLUMNS if wide else views.TABLE_COLUMNS
        out.write(views.format_table(header, [views.row_cells(r, wide=wide) for r in rows]))
    return EXIT_FAILED if has_errors(diags, strict=args.strict) else EXIT_OK


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
"""An HTTP method is a token (RFC 9110, section 9.1)."""


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise UsageError(f"-H must be 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def parse_request(method: str, url: str, headers: Sequence[str]) -> Request:
    """`-X`, `--url` and `-H` as a `Request`; `UsageError` naming the flag that is wrong."""
    if not _TOKEN.fullmatch(method):
        raise UsageError(f"-X/--method must be an HTTP method (a token), got {method!r}")
    request = Request(method=method, url=url, headers=tuple(parse_header(h) for h in headers))
    try:
        request.info()
    except ValueError as exc:
        raise UsageError(f"--url: {exc}") from exc
    return request


def explain_request(
    table: ir.RouteTable,
    *,
    via: str,
    request: Request,
    namespace: str | None = None,
    from_namespace: str | None = None,
    resources: Resources | None = None,
) -> tuple[Via, RequestOutcome]:
    """What `mesh routes explain` computes (and the dashboard's explain form): the parent
    `via` names in `table`, and the request sent through it in process (`OfflineMesh`)."""
    ref = parse_via_ref(via, namespace=namespace)
    resolved = resolve_via(ref, table, resources=resources, from_namespace=from_namespace)
    return resolved, OfflineMesh(table).send(resolved, request)


def run_explain(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    parse_via_ref(args.via, namespace=args.namespace)  # a bad --via before any fetch
    request = parse_request(args.method, args.url, args.headers)
    tables = load_tables(args, err, verb="explain")
    diags = tables.diagnostics
    print_tables_findings(tables, err, infos=False)
    via, outcome = explain_request(
        tables.table,
        via=args.via,
        request=request,
        namespace=args.namespace,
        from_namespace=args.from_namespace,
        resources=tables.resources,
    )
    decision: dict[str, object] | None = None
    if args.from_identity is not None or args.from_ip is not None:
        if tables.resources is None:
            raise UsageError(
                "--from-identity/--from-ip need the manifests (-f), not a control plane"
            )
        decision = authz.authorization_data(
            via,
            request,
            tables.resources,
            identity=args.from_identity,
            ip=args.from_ip or "10.0.0.1",
        )
    if args.output == "json":
        data = explain.outcome_data(outcome)
        if decision is not None:
            data["authorization"] = decision
        out.write(dump_json(data))
    else:
        out.write(explain.outcome_text(outcome))
        if decision is not None:
            out.write(authz.authorization_text(decision))
    return EXIT_FAILED if has_errors(diags) else EXIT_OK


def run_test(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    compiled = compile_manifests(args.files, verb="test", max_file_bytes=args.max_file_size)
    diags = compiled.diagnostics
    if has_errors(diags):
        print_diagnostics(diags, err)
        print("error: the manifests do not load cleanly", file=err)
        return EXIT_UNLOADABLE
    cases, problems = contracts_mod.load_cases(
        args.contracts,
        compiled.result.table,
        compiled.inputs.resources,
        max_file_bytes=args.max_file_size,
    )
    for problem in problems:
        print(f"error: {problem}", file=err)
    if problems:
        return EXIT_UNLOADABLE
    mesh = OfflineMesh(compiled.result.table)
    results = [contracts_mod.run_case(mesh, c) for c in cases]
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.file}: {r.name}", file=out)
        if r.error is not None:
            print(f"      error: {r.error}", file=out)
        for d in r.diffs:
            print(f"      {d}", file=out)
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed", file=out)
    if args.junit:
        try:
            Path(args.junit).write_text(contracts_mod.junit_xml(results), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--junit {args.junit}: cannot write: {_reason(exc)}") from exc
    return EXIT_FAILED if failed else EXIT_OK


def _reason(exc: Exception) -> str:
    """``[Errno 2] No such file or directory: 'x'`` -> ``No such file or directory``."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
