"""`mesh demo`: the sample app on the embedded mesh with live route stats, the canary
walkthrough (`mesh demo canary`) and the offline tour (`mesh demo --offline`).

```
mesh demo            demo.orchestrate.Demo: serve + apps + proxies + vote-bot (subprocesses)
                     every --interval: the table `mesh serve` serves (its admin port) +
                     viz.stats deltas ─> live.live_table, rejected files ─> stdout
mesh demo canary     demo.canary.run: Flagger's steps replayed against the live mesh
mesh demo --offline  validate, routes, explain and test on the shipped examples, in process
```

The printing is here; what runs is in `turnout.demo`. Ctrl-C (SIGINT) or SIGTERM stops every
child by pid and says which. The "try next" commands run as printed in a new terminal:
absolute paths, this venv's `mesh` by its full path, shell-quoted. The offline tour runs
from the package's demo folder, so its commands and what they print say ``examples/...``
as a clone's root has it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import time
from collections.abc import Callable, Mapping
from typing import TextIO

import aiohttp

from turnout.cli import live, served, views
from turnout.cli.errors import CommandError
from turnout.cli.output import EXIT_FAILED, EXIT_OK
from turnout.demo import canary
from turnout.demo.lifecycle import DemoError, started_unless_stopped
from turnout.demo.orchestrate import (
    EXAMPLES,
    HOST,
    VOTE_BOT_SA,
    WEB_HOST,
    Demo,
    identity_of,
    mesh_command,
)
from turnout.viz import stats

DEMO_MANIFESTS = "emojivoto"
"""The sample app's manifests under the shipped examples."""

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
        return run_offline_demo(args, out, err)
    if args.scenario == "canary":
        return run_canary_demo(args, out, err)
    try:
        return asyncio.run(_live_demo(args, out, err))
    except KeyboardInterrupt:
        return EXIT_OK


def run_canary_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`mesh demo canary`: replay Flagger's canary steps (turnout/demo/canary.py)."""

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


def _served_or_error(address: str) -> served.Served | str:
    try:
        return served.read_served(address)
    except CommandError as exc:
        return str(exc)


def say_served(
    say: Callable[[str], None],
    got: served.Served | str,
    route_stats: Mapping[stats.RouteKey, stats.RouteStats],
) -> None:
    """The live table of what the control plane serves (mesh routes, producer views), and
    what it rejected: the table is what traffic follows, a bad edit included."""
    if isinstance(got, str):
        say(f"warning: {got}")
        return
    if got.table is not None:
        rows = [r for r in views.route_rows(got.table) if r.view == ""]
        say(live.live_table(rows, route_stats).rstrip("\n"))
    say(got.summary())
    for d in (d for r in got.rejected for d in r.diagnostics):
        say(f"  {d}")


async def _live_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    def say(text: str = "") -> None:
        print(text, file=out)
        out.flush()

    via = bool(getattr(args, "grpc_via_proxy", False))
    demo = Demo(examples=EXAMPLES / DEMO_MANIFESTS, rps=args.rps, grpc_via_proxy=via)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    urls = demo.metrics_urls
    plane = f"{HOST}:{demo.ports.serve_admin}"
    live_args = [
        "routes",
        "--control-plane",
        plane,
        "--live",
        *(a for u in urls for a in ("--metrics", u)),
    ]
    shown = shlex.join(["mesh", *live_args])
    code = EXIT_OK
    started = time.monotonic()
    try:
        say(
            f"mesh demo: emojivoto on the embedded mesh, all on 127.0.0.1 (work dir {demo.workdir})"
        )
        if not await started_unless_stopped(demo.start(), stop):
            return EXIT_OK
        for name, pid in demo.pids.items():
            say(f"started {name} pid={pid}")
        say(
            f"ready in {time.monotonic() - started:.1f}s: vote-bot sends {args.rps:g} rps to "
            f"web through its outbound proxy; "
            + (
                "web v1 calls emoji and voting proxyless (xds:///), web v2 through its proxy"
                if via
                else "web calls emoji and voting proxyless (xds:///)"
            )
        )
        say(await _security_line(demo))
        if demo.prometheus_url is not None:
            say(
                f"prometheus: {demo.prometheus_url} (mesh serve --prometheus: every proxy, every 2 s)"
            )
        else:
            say("prometheus: none (no `prometheus` on PATH; `make tools` installs Debian's)")
        say(f"dashboard: http://{HOST}:{demo.ports.dashboard}/ (mesh serve --dashboard)")
        deadline = None if args.duration is None else time.monotonic() + args.duration
        prev = await stats.scrape_all([*urls, *demo.inbound_urls.values()])
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
            cur = await stats.scrape_all([*urls, *demo.inbound_urls.values()])
            got, errors = stats.route_stats(
                [s for s in prev if s.url in urls], [s for s in cur if s.url in urls]
            )
            inbound = stats.inbound_stats(prev, cur)
            window = cur[0].at - prev[0].at
            prev = cur
            say(f"\n$ {shown} --window {window:.0f}    # {time.strftime('%H:%M:%S')}")
            for e in errors:
                say(f"warning: cannot scrape {e}")
            say_served(say, await asyncio.to_thread(_served_or_error, plane), got)
            served = []
            for name, url in demo.inbound_urls.items():
                st = inbound.get(url)
                cells = live.stats_cells(st)
                served.append(f"{name} {cells[1]} ({cells[0]} success)")
            say("answered by (inbound proxies): " + ", ".join(served))
            if first:
                first = False
                say(try_next(demo, live_args))
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


async def _security_line(demo: Demo) -> str:
    """What mesh TLS and the authorization policy do, shown with one plaintext request."""
    port = demo.ports.slices["web-v1"]
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session,
        session.get(f"http://{HOST}:{port}/", headers={"host": WEB_HOST}) as resp,
    ):
        why = resp.headers.get("l5d-proxy-error", "")
        status = resp.status
    return (
        f"security: vote-bot ({identity_of(VOTE_BOT_SA)}) reaches web over mTLS, the only"
        f" caller examples/emojivoto/mesh/50-authorization.yaml allows; a plaintext GET /"
        f" to web-v1's inbound port just got {status} {why}".rstrip()
        + "; web calls emoji and"
        " voting with mTLS too (proxyless: STRICT xDS servers, A41 RBAC lets only web vote)"
    )


def try_next(demo: Demo, live_args: list[str]) -> str:
    """The hints after the first table; every "run:" line runs as printed in a new terminal."""
    mesh = mesh_command()
    live_cmd = shlex.join([*mesh, *live_args, "--window", "5"])
    tap_cmd = shlex.join([*mesh, "tap", "--admin", f"{HOST}:{demo.ports.outbound_admin}"])
    voting = demo.manifests / "mesh" / "40-voting-route.yaml"
    return (
        f"\ntry next (in another terminal; {shlex.join(mesh)} is this venv's mesh):\n"
        f"  - edit {shlex.quote(str(demo.route_file))}: change the 90/10 weights and watch the "
        "split move (the inbound line above)\n"
        f"  - edit {shlex.quote(str(voting))}: change the fault's delay and watch "
        "VoteDoughnut's latency\n"
        f"  - run: {live_cmd}\n"
        f"  - run: {tap_cmd} --limit 9\n"
        f"  - logs: {shlex.quote(str(demo.workdir / 'logs'))}\n"
        "  - Ctrl-C stops everything"
    )


def run_offline_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`mesh demo --offline`: the tables of examples/, a few explanations and the example
    contracts, all in-process."""

    here = EXAMPLES.parent
    rel = f"examples/{DEMO_MANIFESTS}/"
    steps: list[list[str]] = [["validate", "-f", rel], ["routes", "-f", rel]]
    for via, url, headers in DEMO_EXPLAINS:
        argv = ["routes", "explain", "-f", rel, "--via", via, "--url", url]
        for h in headers:
            argv += ["-H", h]
        steps.append(argv)
    contracts = sorted(
        p.relative_to(here).as_posix() for p in (EXAMPLES / "contracts").glob("*.yaml")
    )
    steps.append(["test", "-f", rel, *contracts])
    print(
        f"mesh demo --offline: the shipped examples, from {here} (to run these yourself: "
        f"cd {shlex.quote(str(here))}; mesh is {shlex.join(mesh_command())})",
        file=out,
    )
    worst = EXIT_OK
    with contextlib.chdir(here):
        for argv in steps:
            print(f"\n$ {shlex.join(['mesh', *argv])}", file=out)
            out.flush()
            worst = max(worst, args.mesh(argv))
    return worst
