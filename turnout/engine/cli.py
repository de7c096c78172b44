"""`mesh`: the command line. The only module that prints.

```
mesh validate -f PATH... [--crds PATH...] [--strict]
mesh routes   -f PATH... [-o table|wide|yaml|json]
mesh routes explain -f PATH... --via service/NS/NAME:PORT [--from-namespace NS]
                    [--method M] --url URL [-H 'Name: value']... [-o text|json]
mesh test     -f PATH... CONTRACT... [--junit FILE]
mesh serve --dir DIR [--xds HOST:PORT] [--admin HOST:PORT]
mesh bootstrap --xds HOST:PORT --namespace NS --workload KIND/NAME
mesh demo [canary [--fail] [--step-seconds S] [--provider linkerd|gatewayapi]]
```
Diagnostics go to stderr as ``file[doc] path: message (Reason)``; any error means exit 1
(warnings too with `--strict`). Every command takes the output streams as arguments so tests
can capture them (`main(argv, stdout=..., stderr=...)`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from turnout.engine.diagnostics import Diagnostic, Severity, has_errors
from turnout.engine.errors import LoadError, MeshError

if TYPE_CHECKING:
    from aiohttp import web

    from turnout.engine.server import AdsServer
    from turnout.engine.sources import DirectorySource
    from turnout.proxy.runner import Address
    from turnout.proxy.table import RuntimeTable

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNLOADABLE = 2


def _add_files(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        required=required,
        metavar="PATH",
        help="manifest file, directory (recursive) or - for stdin; repeatable",
    )


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(prog="mesh", description="Turnout service mesh tooling")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="validate manifests like the API server would")
    _add_files(p)
    p.add_argument(
        "--crds",
        action="append",
        default=[],
        metavar="PATH",
        help="also validate against these CRDs (openAPIV3Schema + CEL rules)",
    )
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")

    p = sub.add_parser("routes", help="show the compiled route tables")
    _add_files(p, required=False)
    p.add_argument("-o", "--output", choices=("table", "wide", "yaml", "json"), default="table")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument(
        "--live",
        action="store_true",
        help="add SUCCESS RPS LATENCY_P50/P95/P99 from proxies' /metrics (like linkerd viz routes)",
    )
    p.add_argument(
        "--metrics",
        "--admin",
        dest="metrics",
        action="append",
        default=[],
        metavar="URL",
        help="with --live: a proxy's metrics URL or admin HOST:PORT; repeatable",
    )
    p.add_argument(
        "--window",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with --live: seconds between the two scrapes (default 10)",
    )
    rsub = p.add_subparsers(dest="routes_command", metavar="SUBCOMMAND")
    e = rsub.add_parser("explain", help="explain how one request would be routed")
    _add_files(e)
    e.add_argument("--via", required=True, metavar="service/NS/NAME:PORT|gateway/NS/NAME:PORT")
    e.add_argument("--from-namespace", metavar="NS", help="client namespace (consumer routes)")
    e.add_argument("--method", "-X", default="GET")
    e.add_argument("--url", required=True)
    e.add_argument(
        "-H", "--header", dest="headers", action="append", default=[], metavar="'Name: value'"
    )
    e.add_argument("-o", "--output", choices=("text", "json"), default="text")

    p = sub.add_parser("test", help="run route contract tests (for CI)")
    _add_files(p)
    p.add_argument("contracts", nargs="+", metavar="CONTRACT")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")

    p = sub.add_parser("proxy", help="run a proxy: outbound routing, inbound metrics, admin")
    _add_files(p, required=False)
    p.add_argument("--xds", metavar="HOST:PORT", help="ADS server to take tables from")
    p.add_argument("--namespace", default="default", help="namespace of the workload")
    p.add_argument(
        "--workload",
        default="deployment/proxy",
        metavar="KIND/NAME",
        help="the workload this proxy fronts (metrics labels), e.g. deployment/web",
    )
    p.add_argument("--pod", default="", help="pod name for the metrics' pod label")
    p.add_argument("--outbound", metavar="HOST:PORT", help="where the app sends its requests")
    p.add_argument("--inbound", metavar="HOST:PORT", help="where clients reach the app")
    p.add_argument("--app", metavar="HOST:PORT", help="the local app (with --inbound)")
    p.add_argument("--admin", metavar="HOST:PORT", help="/metrics, /ready, /live, /tap")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes serving the listeners (SO_REUSEPORT; one admin port sums them)",
    )
    p.add_argument(
        "--gateway",
        metavar="NS/NAME[:PORT]",
        help="serve that Gateway's listener (default port 80) on --outbound, as its data plane",
    )

    p = sub.add_parser("serve", help="run the control plane: watch manifests, serve ADS")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dir", metavar="DIR", help="manifests directory (watched)")
    src.add_argument("--kubernetes", action="store_true", help="list+watch the API server")
    p.add_argument("--kubeconfig", metavar="FILE", help="with --kubernetes (default: in-cluster)")
    p.add_argument("--context", metavar="NAME", help="with --kubernetes: kubeconfig context")
    p.add_argument("--xds", default="127.0.0.1:18000", metavar="HOST:PORT", help="ADS (gRPC)")
    p.add_argument(
        "--admin", metavar="HOST:PORT", help="/ready /live /debug/table /debug/diagnostics"
    )

    p = sub.add_parser("tap", help="stream a proxy's live requests (Linkerd's tap lines)")
    p.add_argument("--admin", required=True, metavar="HOST:PORT", help="the proxy's admin port")
    p.add_argument("--method", default="", help="only this method")
    p.add_argument("--authority", default="", help="only this authority")
    p.add_argument("--path", default="", help="only paths with this prefix")
    p.add_argument("--max-rps", type=int, default=100, help="requests per second (0 = all)")
    p.add_argument("-n", "--limit", type=int, default=0, help="stop after N events")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")

    p = sub.add_parser("bootstrap", help="print the gRPC xDS bootstrap JSON of a workload")
    p.add_argument("--xds", required=True, metavar="HOST:PORT", help="the ADS server")
    p.add_argument("--namespace", required=True, metavar="NS")
    p.add_argument("--workload", required=True, metavar="KIND/NAME", help="deployment/NAME")
    p.add_argument("--node-id", metavar="ID", help="node id (default grpc~NS~KIND/NAME)")

    p = sub.add_parser("demo", help="run the sample app on the mesh and watch live route stats")
    p.add_argument(
        "--offline", action="store_true", help="only compile, explain and test examples/"
    )
    p.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop after this long (default: Ctrl-C)"
    )
    p.add_argument(
        "--interval", type=float, default=5.0, metavar="SECONDS", help="refresh of the live table"
    )
    p.add_argument("--rps", type=float, default=20.0, help="vote-bot requests per second")
    p.add_argument(
        "scenario", nargs="?", choices=("canary",), help="canary: replay Flagger's canary steps"
    )
    p.add_argument("--fail", action="store_true", help="canary: the canary answers errors")
    p.add_argument("--step-seconds", type=float, default=5.0, metavar="S", help="canary: one tick")
    p.add_argument("--provider", choices=("linkerd", "gatewayapi"), default="linkerd")
    return parser


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=err,
    )
    try:
        if args.command == "validate":
            return run_validate(args, out, err)
        if args.command == "routes":
            if args.routes_command == "explain":
                return run_explain(args, out, err)
            return run_routes(args, out, err)
        if args.command == "test":
            return run_test(args, out, err)
        if args.command == "demo":
            return run_demo(args, out, err)
        if args.command == "proxy":
            return run_proxy_command(args, out, err)
        if args.command == "serve":
            return run_serve(args, out, err)
        if args.command == "bootstrap":
            return run_bootstrap(args, out, err)
        if args.command == "tap":
            return run_tap(args, out, err)
    except LoadError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_UNLOADABLE if args.command == "test" else EXIT_FAILED
    raise AssertionError(args.command)


def print_diagnostics(diags: Sequence[Diagnostic], err: TextIO) -> None:
    for d in diags:
        print(str(d), file=err)
    errors = sum(d.severity is Severity.ERROR for d in diags)
    warnings = sum(d.severity is Severity.WARNING for d in diags)
    if errors or warnings:
        print(f"{errors} error(s), {warnings} warning(s)", file=err)


def run_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from turnout.engine.pipeline import compile_files
    from turnout.engine.render import diagnostic_data, dump_json

    compiled = compile_files(args.files, crds=args.crds)
    diags = compiled.diagnostics
    if args.output == "json":
        from turnout.engine.render import diagnostic_data

        out.write(dump_json([diagnostic_data(d) for d in diags]))
    else:
        print_diagnostics(diags, err)
        if not has_errors(diags, strict=args.strict):
            n = len(compiled.inputs.resources.objects)
            print(f"{n} object(s) valid", file=out)
    return EXIT_FAILED if has_errors(diags, strict=args.strict) else EXIT_OK


def run_routes(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from turnout.engine.pipeline import compile_files
    from turnout.engine.render import dump_json, dump_yaml, result_data
    from turnout.meshctl import views

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
        from turnout.meshctl import live

        urls = [live.metrics_url(u) for u in args.metrics]
        stats, errors = asyncio.run(live.live_stats(urls, window=args.window))
        for e in errors:
            print(f"warning: cannot scrape {e}", file=err)
        rows = views.route_rows(result.table)
        out.write(live.live_table(rows, stats, wide=args.output == "wide"))
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
    from turnout.engine.pipeline import compile_files
    from turnout.engine.render import dump_json
    from turnout.meshctl import explain
    from turnout.meshctl.offline import OfflineMesh, Request, parse_via

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
    from turnout.engine.pipeline import compile_files
    from turnout.meshctl import contracts as contracts_mod
    from turnout.meshctl.offline import OfflineMesh

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
        except (OSError, contracts_mod.ContractError) as exc:
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


def examples_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "examples"


DEMO_MANIFESTS = "emojivoto"
"""The sample app's manifests under examples/."""


def offline_runtime(
    files: Sequence[str], *, namespace: str
) -> tuple[RuntimeTable, list[Diagnostic]]:
    """Compile manifests and build the runtime table a proxy in `namespace` would get."""
    from turnout.engine.pipeline import compile_files
    from turnout.meshctl.offline import runtime_table

    compiled = compile_files(files)
    table = runtime_table(compiled.result.table, client_namespace=namespace)
    return table, list(compiled.diagnostics)


def compile_for_proxy(files: Sequence[str], namespace: str) -> tuple[list[bytes], list[str], bool]:
    """Run in a child process by `mesh proxy -f`: compile and translate the manifests and
    return the serialized xDS resources (listeners, route configs, clusters, assignments, in
    that order, as `type_url\0bytes`), the diagnostics as text, and whether any is an error.

    The proxy process thus never imports the engine (pydantic, jsonschema, CEL...), which
    keeps its resident memory to the proxy's own share."""
    from turnout.engine.pipeline import compile_files
    from turnout.engine.xds import translate

    compiled = compile_files(files)
    diags = [d for d in compiled.diagnostics if d.severity is not Severity.INFO]
    res = translate(compiled.result.table, client_namespace=namespace)
    blobs = [
        f"{kind}\0".encode() + msg.SerializeToString()
        for kind, group in enumerate(
            (res.listeners, res.route_configs, res.clusters, res.load_assignments)
        )
        for msg in group
    ]
    return blobs, [str(d) for d in diags], has_errors(diags)


def run_proxy_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import uvloop

    from turnout.proxy.runner import (
        Address,
        ProxyConfig,
        TableSource,
        parse_gateway,
        run_proxy,
    )
    from turnout.proxy.workers import SourceSpec

    if bool(args.files) == bool(args.xds):
        print("error: give exactly one of -f MANIFESTS and --xds HOST:PORT", file=err)
        return EXIT_FAILED
    kind, _, name = args.workload.partition("/")
    try:
        config = ProxyConfig(
            namespace=args.namespace,
            workload_kind=kind,
            workload_name=name or kind,
            pod=args.pod,
            outbound=Address.parse(args.outbound) if args.outbound else None,
            inbound=Address.parse(args.inbound) if args.inbound else None,
            app=Address.parse(args.app) if args.app else None,
            admin=Address.parse(args.admin) if args.admin else None,
            gateway=parse_gateway(args.gateway) if args.gateway else None,
            workers=args.workers,
        )
        if args.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {args.workers}")
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    source: TableSource
    if args.files:
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            blobs, diag_lines, failed = pool.submit(
                compile_for_proxy, args.files, args.namespace
            ).result()
        for line in diag_lines:
            print(line, file=err)
        if failed:
            return EXIT_FAILED
        spec = SourceSpec(blobs=tuple(blobs))
    else:
        from turnout.proxy.xds_client import NodeInfo

        node = NodeInfo(
            id=f"{args.namespace}/{args.workload}/{args.pod or 'proxy'}",
            cluster=args.namespace,
            namespace=args.namespace,
            workload=args.workload,
        )
        spec = SourceSpec(xds=args.xds, node=node)
    source = spec.source()
    print(
        f"proxy {args.namespace}/{args.workload}: outbound {args.outbound or '-'}"
        f"{f' (gateway {config.gateway})' if config.gateway else ''}, "
        f"inbound {args.inbound or '-'} -> {args.app or '-'}, admin {args.admin or '-'}",
        file=out,
    )
    out.flush()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run_proxy(config, source, spec=spec))
    except KeyboardInterrupt:
        pass
    return EXIT_OK


DEMO_EXPLAINS = (
    ("service/emojivoto/web:80", "http://web.emojivoto/api/vote", ("x-canary: true",)),
    ("service/emojivoto/web:80", "http://web.emojivoto/", ("x-canary: true",)),
    (
        "service/emojivoto/voting:8080",
        "http://voting.emojivoto:8080/emojivoto.v1.VotingService/VoteDoughnut",
        (),
    ),
    ("gateway/emojivoto/public:80", "http://www.emojivoto.example/old-api/list?page=2", ()),
    ("gateway/emojivoto/public:443", "https://www.emojivoto.example/old-api/list?page=2", ()),
)


def run_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`mesh demo`: the sample app on the embedded mesh with live route stats (see
    turnout/demo); `--offline`: compile, explain and test examples/ only."""
    if args.offline:
        return run_offline_demo(out, err)
    if args.scenario == "canary":
        return run_canary_demo(args, out, err)
    if args.interval <= 0 or (args.duration is not None and args.duration <= 0):
        print("error: --interval and --duration must be > 0", file=err)
        return EXIT_FAILED
    try:
        return asyncio.run(_live_demo(args, out, err))
    except KeyboardInterrupt:
        return EXIT_OK


def run_canary_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`mesh demo canary`: replay Flagger's canary steps (turnout/demo/canary.py)."""
    from turnout.demo import canary

    if args.step_seconds <= 0:
        print("error: --step-seconds must be > 0", file=err)
        return EXIT_FAILED

    def say(text: str) -> None:
        print(text, file=out)
        out.flush()

    try:
        return asyncio.run(
            canary.run(
                provider=args.provider, fail=args.fail, step_seconds=args.step_seconds, say=say
            )
        )
    except KeyboardInterrupt:
        return EXIT_OK


async def _live_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import time

    from turnout.demo.orchestrate import Demo, DemoError
    from turnout.engine.pipeline import compile_files
    from turnout.meshctl import live, views

    def say(text: str = "") -> None:
        print(text, file=out)
        out.flush()

    demo = Demo(examples=examples_dir() / DEMO_MANIFESTS, rps=args.rps)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    mesh_dir = demo.manifests / "mesh"
    urls = demo.metrics_urls
    shown = f"mesh routes -f {mesh_dir} --live " + " ".join(f"--metrics {u}" for u in urls)
    code = EXIT_OK
    started = time.monotonic()
    try:
        say(
            f"mesh demo: emojivoto on the embedded mesh, all on 127.0.0.1 (work dir {demo.workdir})"
        )
        start = loop.create_task(demo.start())
        stopping = loop.create_task(stop.wait())
        await asyncio.wait({start, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not start.done():
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError, DemoError):
                await start
            return EXIT_OK
        stopping.cancel()
        start.result()
        for name, pid in demo.pids.items():
            say(f"started {name} pid={pid}")
        say(
            f"ready in {time.monotonic() - started:.1f}s: vote-bot sends {args.rps:g} rps to "
            f"web through its outbound proxy; web calls emoji and voting proxyless (xds:///)"
        )
        deadline = None if args.duration is None else time.monotonic() + args.duration
        prev = await live.scrape_all([*urls, *demo.inbound_urls.values()])
        first = True
        while not stop.is_set():
            wait = args.interval
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
            crashed = demo.exited()
            if crashed:
                for c in crashed:
                    say(f"error: {c.name} exited ({c.proc.returncode if c.proc else '?'}):")
                    say(c.log_tail())
                code = EXIT_FAILED
                break
            cur = await live.scrape_all([*urls, *demo.inbound_urls.values()])
            stats, errors = live.route_stats(
                [s for s in prev if s.url in urls], [s for s in cur if s.url in urls]
            )
            inbound = live.inbound_stats(prev, cur)
            window = cur[0].at - prev[0].at
            prev = cur
            say(f"\n$ {shown} --window {window:.0f}    # {time.strftime('%H:%M:%S')}")
            for e in errors:
                say(f"warning: cannot scrape {e}")
            compiled = compile_files([str(mesh_dir)])
            rows = [r for r in views.route_rows(compiled.result.table) if r.view == ""]
            out.write(live.live_table(rows, stats))
            served = []
            for name, url in demo.inbound_urls.items():
                st = inbound.get(url)
                cells = live.stats_cells(st)
                served.append(f"{name} {cells[1]} ({cells[0]} success)")
            say("answered by (inbound proxies): " + ", ".join(served))
            if first:
                first = False
                say(
                    "\ntry next:\n"
                    f"  - edit {demo.route_file}: change the 90/10 weights and watch the split "
                    "move (the inbound line above)\n"
                    f"  - edit {mesh_dir / '40-voting-route.yaml'}: change the fault's delay "
                    "and watch VoteDoughnut's latency\n"
                    f"  - run: {shown} --window 5\n"
                    f"  - logs: {demo.workdir / 'logs'}\n"
                    "  - Ctrl-C stops everything"
                )
            if deadline is not None and time.monotonic() >= deadline:
                break
    except DemoError as exc:
        print(f"error: {exc}", file=err)
        code = EXIT_FAILED
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        results = await demo.stop()
        pids = " ".join(f"{name}={pid}" for name, pid, _ in results)
        say(f"stopped {len(results)} process(es): {pids}")
    return code


def run_offline_demo(out: TextIO, err: TextIO) -> int:
    """`mesh demo --offline`: the tables of examples/, a few explanations and the example
    contracts, all in-process."""

    ex = examples_dir()
    manifests = ex / DEMO_MANIFESTS
    rel = f"examples/{DEMO_MANIFESTS}/"
    steps: list[tuple[str, list[str]]] = [
        (f"mesh validate -f {rel}", ["validate", "-f", str(manifests)]),
        (f"mesh routes -f {rel}", ["routes", "-f", str(manifests)]),
    ]
    for via, url, headers in DEMO_EXPLAINS:
        argv = ["routes", "explain", "-f", str(manifests), "--via", via, "--url", url]
        shown = f"mesh routes explain -f {rel} --via {via} --url {url}"
        for h in headers:
            argv += ["-H", h]
            shown += f" -H '{h}'"
        steps.append((shown, argv))
    contracts = sorted(str(p) for p in (ex / "contracts").glob("*.yaml"))
    steps.append(
        (
            f"mesh test -f {rel} examples/contracts/*.yaml",
            ["test", "-f", str(manifests), *contracts],
        )
    )
    worst = EXIT_OK
    for shown, argv in steps:
        print(f"\n$ {shown}", file=out)
        out.flush()
        worst = max(worst, main(argv, stdout=out, stderr=err))
    return worst


# --------------------------------------------------------------------------- serve, bootstrap


def run_bootstrap(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from turnout.engine.render import dump_json
    from turnout.engine.server import bootstrap_config

    config = bootstrap_config(
        xds=args.xds, namespace=args.namespace, workload=args.workload, node_id=args.node_id
    )
    out.write(dump_json(config))
    return EXIT_OK


def run_serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`mesh serve`: directory source + ADS server (+ admin) until SIGINT/SIGTERM."""
    from turnout.proxy.runner import Address

    try:
        xds = Address.parse(args.xds)
        admin = Address.parse(args.admin) if args.admin else None
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    try:
        if args.kubernetes:
            asyncio.run(
                _serve_kubernetes(
                    xds=xds, kubeconfig=args.kubeconfig, context=args.context, out=out
                )
            )
            return EXIT_OK
        asyncio.run(_serve(Path(args.dir), xds=xds, admin=admin, out=out))
    except MeshError as exc:  # cannot listen, not a directory
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        pass
    return EXIT_OK


async def _serve_kubernetes(
    *, xds: Address, kubeconfig: str | None, context: str | None, out: TextIO
) -> None:
    """`mesh serve --kubernetes`: list+watch, compile, serve ADS, write route status."""
    from turnout.engine.cluster import start_cluster_control_plane
    from turnout.engine.server import AdsServer

    server = AdsServer()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    plane = None
    try:
        port = await server.start(xds.host, xds.port)
        print(f"xds listening on {xds.host}:{port}", file=out)
        plane = await start_cluster_control_plane(server, kubeconfig=kubeconfig, context=context)
        print("watching the Kubernetes API", file=out)
        out.flush()
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if plane is not None and plane.source is not None:
            await plane.source.stop()
        await server.stop()


async def _serve(directory: Path, *, xds: Address, admin: Address | None, out: TextIO) -> None:
    from aiohttp import web

    from turnout.engine.server import AdsServer
    from turnout.engine.sources import DirectorySource

    server = AdsServer()
    source = DirectorySource(directory, publish=server.publish)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner: web.AppRunner | None = None
    try:
        port = await server.start(xds.host, xds.port)
        print(f"xds listening on {xds.host}:{port}", file=out)
        await source.start()
        if admin is not None:
            runner = web.AppRunner(_serve_admin_app(server, source), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, admin.host, admin.port).start()
            print(f"admin listening on {admin.host}:{runner.addresses[0][1]}", file=out)
        print(f"serving {directory} version={server.version}", file=out)
        out.flush()
        await stop.wait()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if runner is not None:
            await runner.cleanup()
        await source.stop()
        await server.stop()


def _serve_admin_app(server: AdsServer, source: DirectorySource) -> web.Application:
    """/live, /ready (a valid table is served), /debug/table (YAML), /debug/diagnostics."""
    from aiohttp import web

    from turnout.engine.render import diagnostic_data, dump_json, dump_yaml, result_data

    async def live(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def ready(request: web.Request) -> web.Response:
        if source.table is None:
            return web.Response(status=503, text="no valid table loaded yet\n")
        return web.Response(text=f"ok version={server.version}\n")

    async def table(request: web.Request) -> web.Response:
        result = source.status.result
        if result is None:
            return web.Response(status=404, text="no valid table loaded yet\n")
        text = dump_yaml(result_data(result.table, result.statuses, ()))
        return web.Response(text=text, content_type="application/yaml")

    async def diagnostics(request: web.Request) -> web.Response:
        st = source.status
        data = {
            "good_version": st.good_version,
            "applied": st.applied,
            "error": st.error,
            "loads": st.loads,
            "diagnostics": [diagnostic_data(d) for d in st.diagnostics],
        }
        return web.Response(text=dump_json(data), content_type="application/json")

    app = web.Application()
    app.router.add_get("/live", live)
    app.router.add_get("/ready", ready)
    app.router.add_get("/debug/table", table)
    app.router.add_get("/debug/diagnostics", diagnostics)
    return app


def run_tap(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`mesh tap`: print a proxy's tap stream (its admin `/tap`), one event per line."""
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode(
        {
            "format": args.output,
            "method": args.method,
            "authority": args.authority,
            "path": args.path,
            "max_rps": args.max_rps,
            "limit": args.limit,
        }
    )
    url = f"http://{args.admin}/tap?{query}"
    try:
        with urllib.request.urlopen(url, timeout=300) as resp:  # until limit, idle or Ctrl-C
            for line in resp:
                out.write(line.decode("utf-8", errors="replace"))
                out.flush()
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"error: cannot tap {args.admin}: {exc}", file=err)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
