"""`mesh demo canary`: replay Flagger's published canary steps on the embedded mesh.

This is **not** Flagger: no Canary controller runs. The routing objects Flagger writes for
Canary ``test/podinfo`` (fluxcd/flagger v1.44.0, `pkg/router/smi.go` / `gateway_api.go`, as
copied into ``examples/canary/<provider>/steps/``) are written, one per tick, into the
directory `mesh serve` watches, and Flagger's built-in Linkerd queries
(`pkg/metrics/observers/linkerd.go`) are sent to a real Prometheus that scrapes our proxies.
The tick logic follows `pkg/controller/scheduler.go`: advance while the checks pass, halt and
count a failed check when they do not, roll back (weights 0/100) once ``failedChecks`` reaches
``analysis.threshold``, promote after the last weight.

```
loadgen ──> mesh proxy (outbound) ──TrafficSplit/HTTPRoute podinfo──┬──> mesh proxy (inbound,
                                                                    │    deployment podinfo-primary) ─> app v1
                                                                    └──> mesh proxy (inbound,
                                                                         deployment podinfo) ─> app v2
mesh serve --dir <tmp>/manifests   prometheus (scrapes every proxy's /metrics each second)
```

The app and the load generator it starts are `turnout.demo.podinfo`.
Nothing here prints: `run` reports through the `say` callback the CLI gives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import shlex
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from turnout.demo.lifecycle import DemoError, started_unless_stopped
from turnout.demo.orchestrate import EXAMPLES as SHIPPED
from turnout.demo.orchestrate import (
    HOST,
    Child,
    Demo,
    mesh_command,
    rewrite_endpoints,
    yaml_documents,
)
from turnout.demo.podinfo import APEX_HOST, LOAD_RPS
from turnout.viz.stats import RouteStats, inbound_stats, scrape_all

log = logging.getLogger(__name__)

EXAMPLES = SHIPPED / "canary"
"""The walkthrough's own copy of everything it replays (never the reference fixtures)."""
PROVIDERS = {"linkerd": "linkerd", "gatewayapi": "gatewayapi"}
"""`--provider` -> folder under examples/canary."""
NAMESPACE = "test"
TARGET = "podinfo"
"""The Canary's targetRef: the canary workload; the primary workload is ``podinfo-primary``."""
ROUTE_FILE = "30-route.yaml"
"""Where the current routing object goes in the watched directory."""
OK_EVERY = 4
"""With `--fail`, the canary answers 200 to every 4th request only, 500 to the others: about
25% success, far below 99% from the first check on (a milder rate can pass a check on a
handful of requests by chance)."""
READY_TIMEOUT_S = 30.0

# Flagger's built-in Linkerd queries (pkg/metrics/observers/linkerd.go), byte for byte.
SUCCESS_RATE = """
  sum(
    rate(
      response_total{
        namespace="{{ namespace }}",
        deployment=~"{{ target }}",
        classification!="failure",
        direction="inbound"
      }[{{ interval }}]
    )
  )
  /
  sum(
    rate(
      response_total{
        namespace="{{ namespace }}",
        deployment=~"{{ target }}",
        direction="inbound"
      }[{{ interval }}]
    )
  )
  * 100"""[1:]
DURATION = """
  histogram_quantile(
    0.99,
    sum(
      rate(
        response_latency_ms_bucket{
          namespace="{{ namespace }}",
          deployment=~"{{ target }}",
          direction="inbound"
        }[{{ interval }}]
      )
    ) by (le)
  )"""[1:]


def render(template: str, values: dict[str, str]) -> str:
    """Flagger's rendering: fill ``{{ name }}``, then collapse every run of whitespace."""
    filled = re.sub(r"\{\{\s*([\w.]+)\s*\}\}", lambda m: values[m.group(1)], template)
    return re.sub(r"\s+", " ", filled)


# -- the steps, from examples/canary -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One routing object Flagger writes: the file, its phase and the canary's weight."""

    path: Path
    phase: str
    """``initialized``, ``weight``, ``promoting``, ``finalising`` or ``rollback``."""
    canary: int
    primary: int
    kind: str = "TrafficSplit"


def weights_of(doc: dict[str, Any]) -> tuple[int, int]:
    """(canary, primary) weights of a TrafficSplit or a single-rule HTTPRoute."""
    if doc.get("kind") == "TrafficSplit":
        backends = doc["spec"]["backends"]
    elif doc.get("kind") == "HTTPRoute":
        backends = [
            {"service": b["name"], "weight": b.get("weight", 1)}
            for b in doc["spec"]["rules"][0]["backendRefs"]
        ]
    else:
        raise ValueError(f"not a routing object: kind {doc.get('kind')!r}")
    w = {b["service"]: int(str(b["weight"])) for b in backends}
    return w[f"{TARGET}-canary"], w[f"{TARGET}-primary"]


def phase_of(name: str) -> str:
    for phase in ("initialized", "weight", "promoting", "finalising", "rollback"):
        if phase in name:
            return phase
    raise ValueError(f"step file {name}: unknown phase")


def load_steps(folder: Path) -> tuple[list[Step], Step]:
    """The numbered steps of `folder`/steps in order, and its rollback object."""
    steps: list[Step] = []
    for path in sorted((folder / "steps").glob("*.yaml")):
        doc = yaml_documents(path)[0]
        canary, primary = weights_of(doc)
        steps.append(Step(path, phase_of(path.stem), canary, primary, str(doc["kind"])))
    rollback = [s for s in steps if s.phase == "rollback"]
    ordered = [s for s in steps if s.phase != "rollback"]
    if len(rollback) != 1 or not ordered or ordered[0].phase != "initialized":
        raise ValueError(f"{folder}/steps: need 00-initialized..., and one rollback.yaml")
    return ordered, rollback[0]


@dataclass(frozen=True, slots=True)
class Analysis:
    """What the walkthrough takes from the Canary's ``spec.analysis``."""

    threshold: int
    min_success: float
    max_duration_ms: float
    success_interval: str
    duration_interval: str


def load_analysis(canary_file: Path) -> Analysis:
    doc = yaml_documents(canary_file)[0]
    analysis = doc["spec"]["analysis"]
    rate = next(m for m in analysis["metrics"] if "success" in m["name"])
    dur = next(m for m in analysis["metrics"] if m is not rate)
    return Analysis(
        threshold=int(analysis["threshold"]),
        min_success=float(rate["thresholdRange"]["min"]),
        max_duration_ms=float(dur["thresholdRange"]["max"]),
        success_interval=str(rate.get("interval", "1m")),
        duration_interval=str(dur.get("interval", "1m")),
    )


# -- the run -------------------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True, slots=True)
class Check:
    """Both metric checks of one tick, as Flagger reads them (None = "no values found")."""

    success_rate: float | None
    duration_ms: float | None
    failure: str
    """Flagger's halt reason, empty when both checks passed."""


@dataclass(slots=True)
class CanaryRun:
    """The processes of one walkthrough: `start`, then `apply` steps and `check`, `stop`."""

    provider: str
    fail: bool
    prometheus: str
    """Path of the `prometheus` binary."""
    demo: Demo = field(init=False)
    ports: dict[str, int] = field(init=False)
    session: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        self.demo = Demo(examples=EXAMPLES / "mesh")
        names = ("xds", "serve_admin", "app_primary", "app_canary", "in_primary", "in_canary",
                 "admin_primary", "admin_canary", "outbound", "outbound_admin", "prometheus")  # fmt: skip
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))

    @property
    def folder(self) -> Path:
        return EXAMPLES / PROVIDERS[self.provider]

    @property
    def inbound_urls(self) -> dict[str, str]:
        """deployment -> the metrics URL of its inbound proxy."""
        p = self.ports
        return {
            f"{TARGET}-primary": f"http://{HOST}:{p['admin_primary']}/metrics",
            TARGET: f"http://{HOST}:{p['admin_canary']}/metrics",
        }

    def apply(self, step: Step) -> None:
        """Write `step`'s object where `mesh serve` looks (a rename: never half a file)."""
        target = self.demo.manifests / ROUTE_FILE
        tmp = target.with_suffix(".tmp")
        tmp.write_text(step.path.read_text(encoding="utf-8"), encoding="utf-8")
        tmp.replace(target)

    def prepare(self) -> None:
        p = self.ports
        shutil.copytree(EXAMPLES / "mesh", self.demo.manifests)
        rewrite_endpoints(
            self.demo.manifests / "20-endpoints.yaml",
            {"podinfo-primary": p["in_primary"], "podinfo-canary": p["in_canary"],
             "podinfo": p["in_primary"]},
        )  # fmt: skip
        (self.demo.workdir / "logs").mkdir()
        (self.demo.workdir / "prometheus").mkdir()
        targets = [f"{HOST}:{p[k]}" for k in ("admin_primary", "admin_canary", "outbound_admin")]
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "turnout-proxy", "scrape_interval": "1s", "scrape_timeout": "1s",
                 "static_configs": [{"targets": targets}]}
            ],
        }  # fmt: skip
        (self.demo.workdir / "prometheus" / "prometheus.yml").write_text(json.dumps(config))

    async def start(self, first: Step) -> None:
        """Everything up and ready, with `first` (the initialized split) applied."""
        self.prepare()
        self.apply(first)
        p, d = self.ports, self.demo
        mesh = mesh_command()
        me = [sys.executable, "-m", "turnout.demo.podinfo"]
        xds = f"{HOST}:{p['xds']}"
        serve = await d.spawn(
            "serve", [*mesh, "serve", "--dir", str(d.manifests), "--xds", xds,
                      "--admin", f"{HOST}:{p['serve_admin']}"],
        )  # fmt: skip
        prom_dir = d.workdir / "prometheus"
        prom = await d.spawn(
            "prometheus",
            [self.prometheus, f"--config.file={prom_dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={prom_dir / 'tsdb'}",
             f"--web.listen-address={HOST}:{p['prometheus']}", "--log.level=warn"],
        )  # fmt: skip
        pods: list[tuple[Child, Child, str, str]] = []
        for deploy, key, version in ((f"{TARGET}-primary", "primary", "v1"), (TARGET, "canary", "v2")):  # fmt: skip
            fail = ["--ok-every", str(OK_EVERY)] if self.fail and key == "canary" else []
            app = await d.spawn(
                f"app-{deploy}",
                [*me, "app", "--port", str(p[f"app_{key}"]), "--version", version, *fail],
            )
            inbound = await d.spawn(
                f"proxy-{deploy}",
                [*mesh, "proxy", "--xds", xds, "--namespace", NAMESPACE,
                 "--workload", f"deployment/{deploy}", "--pod", f"{deploy}-7d9f8b6c5-x1y2z",
                 "--inbound", f"{HOST}:{p[f'in_{key}']}", "--app", f"{HOST}:{p[f'app_{key}']}",
                 "--admin", f"{HOST}:{p[f'admin_{key}']}"],
            )  # fmt: skip
            pods.append((app, inbound, key, deploy))
        outbound = await d.spawn(
            "proxy-loadtester",
            [*mesh, "proxy", "--xds", xds, "--namespace", NAMESPACE,
             "--workload", "deployment/flagger-loadtester", "--pod", "flagger-loadtester",
             "--outbound", f"{HOST}:{p['outbound']}", "--admin", f"{HOST}:{p['outbound_admin']}"],
        )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT_S
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))
        s = self.session
        await d.wait_http(s, serve, f"http://{HOST}:{p['serve_admin']}/ready", deadline)
        await d.wait_http(s, prom, f"http://{HOST}:{p['prometheus']}/-/ready", deadline)
        for app, inbound, key, _ in pods:
            await d.wait_http(s, app, f"http://{HOST}:{p[f'app_{key}']}/ready", deadline)
            await d.wait_http(s, inbound, f"http://{HOST}:{p[f'admin_{key}']}/ready", deadline)
        await d.wait_http(s, outbound, f"http://{HOST}:{p['outbound_admin']}/ready", deadline)
        await d.wait_http(s, outbound, f"http://{HOST}:{p['outbound']}/ready", deadline,
                          host=APEX_HOST)  # fmt: skip
        await d.spawn(
            "loadtester",
            [*me, "load", "--proxy", f"{HOST}:{p['outbound']}", "--host", APEX_HOST,
             "--rps", str(LOAD_RPS)],
        )  # fmt: skip

    async def query(self, promql: str) -> float | None:
        """One instant query, read as Flagger reads it: last series; empty or NaN = None."""
        assert self.session is not None
        url = f"http://{HOST}:{self.ports['prometheus']}/api/v1/query"
        async with self.session.get(url, params={"query": promql}) as resp:
            body: dict[str, Any] = await resp.json()
        result = body.get("data", {}).get("result", [])
        if body.get("status") != "success" or not result:
            return None
        value = float(result[-1]["value"][1])
        return None if math.isnan(value) else value

    async def check(self, analysis: Analysis) -> Check:
        """Flagger's two built-in Linkerd checks against the canary workload."""
        values = {"namespace": NAMESPACE, "target": TARGET}
        rate = await self.query(
            render(SUCCESS_RATE, {**values, "interval": analysis.success_interval})
        )
        dur = await self.query(render(DURATION, {**values, "interval": analysis.duration_interval}))
        name = f"{TARGET}.{NAMESPACE}"
        if rate is None:
            why = (f"no values found for linkerd metric request-success-rate probably {name} "
                   "is not receiving traffic")  # fmt: skip
        elif rate < analysis.min_success:
            why = f"success rate {rate:.2f}% < {analysis.min_success:g}%"
        elif dur is None:
            why = f"no values found for linkerd metric request-duration probably {name} is not receiving traffic"  # fmt: skip
        elif dur > analysis.max_duration_ms:
            why = f"request duration {dur:.0f}ms > {analysis.max_duration_ms:g}ms"
        else:
            why = ""
        return Check(rate, dur, why)

    async def stop(self) -> list[tuple[str, int, int | None]]:
        if self.session is not None:
            await self.session.close()
        return await self.demo.stop()


def fmt_split(stats: dict[str, RouteStats | None]) -> str:
    """``podinfo-primary 108 req, podinfo 12 req (10% canary)``."""
    counts = {k: (v.total if v is not None else 0.0) for k, v in stats.items()}
    total = sum(counts.values())
    parts = ", ".join(f"{k} {n:.0f} req" for k, n in counts.items())
    share = f"{100 * counts.get(TARGET, 0.0) / total:.0f}% canary" if total else "no requests"
    return f"{parts} ({share})"


def fmt_check(c: Check, a: Analysis) -> str:
    rate = "no values" if c.success_rate is None else f"{c.success_rate:.2f}%"
    dur = "no values" if c.duration_ms is None else f"{c.duration_ms:.0f} ms"
    return (
        f"request-success-rate {rate} (min {a.min_success:g}), "
        f"request-duration p99 {dur} (max {a.max_duration_ms:g})"
    )


def watch_hints(r: CanaryRun) -> str:
    """Commands that show the walkthrough from another terminal, runnable as printed: this
    venv's `mesh` by its full path, absolute paths, shell-quoted."""
    mesh, p = mesh_command(), r.ports
    live = [*mesh, "routes", "-f", str(r.demo.manifests), "--live", "--window", "5",
            "--metrics", f"http://{HOST}:{p['outbound_admin']}/metrics"]  # fmt: skip
    tap = [*mesh, "tap", "--admin", f"{HOST}:{p['admin_canary']}", "--limit", "9"]
    query = f"http://{HOST}:{p['prometheus']}/api/v1/query?query=sum(rate(response_total[30s]))"
    return (
        f"watch it (in another terminal; {shlex.join(mesh)} is this venv's mesh):\n"
        f"  - run: {shlex.join(live)}\n"
        f"  - run: {shlex.join(tap)}\n"
        f"  - prometheus: {query}\n"
        f"  - the routing object now served: {shlex.quote(str(r.demo.manifests / ROUTE_FILE))}"
    )


async def run(*, provider: str, fail: bool, step_seconds: float, say: Callable[[str], None]) -> int:
    """The whole walkthrough; returns the exit code (0 promoted or rolled back as expected)."""
    binary = shutil.which("prometheus")
    if binary is None:
        say("error: prometheus is not installed: the walkthrough evaluates Flagger's queries "
            "against a real Prometheus (Debian/Ubuntu: apt-get install prometheus; in a clone: "
            "make tools)")  # fmt: skip
        return 1
    folder = EXAMPLES / PROVIDERS[provider]
    steps, rollback = load_steps(folder)
    analysis = load_analysis(folder / "canary.yaml")
    say(
        "mesh demo canary: replays Flagger's published behaviour (fluxcd/flagger v1.44.0, "
        f"provider {provider}) on the embedded mesh. This is NOT Flagger: no controller runs; "
        f"the routing objects of {folder / 'steps'}/ are written in Flagger's order and Flagger's "
        "built-in Linkerd queries are sent to a real Prometheus."
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    r = CanaryRun(provider=provider, fail=fail, prometheus=binary)
    code = 0
    started = time.monotonic()
    name = f"{TARGET}.{NAMESPACE}"
    try:
        say(f"work dir {r.demo.workdir}; canary app {f'FAILS all but 1 request in {OK_EVERY}' if fail else 'healthy'}")  # fmt: skip
        if not await started_unless_stopped(r.start(steps[0]), stop):
            return 0
        for child, pid in r.demo.pids.items():
            say(f"started {child} pid={pid}")
        say(
            f"ready in {time.monotonic() - started:.1f}s: the load tester sends {LOAD_RPS:g} rps "
            f"to http://{APEX_HOST}/ through its outbound proxy; one tick = {step_seconds:g}s "
            f"(Flagger: analysis.interval, >= 10s); threshold {analysis.threshold}"
        )
        say(watch_hints(r))
        urls = r.inbound_urls
        tick = 0

        async def wait_tick(what: str) -> bool:
            """Sleep one tick, then print what each inbound proxy answered; False on Ctrl-C."""
            before = await scrape_all(list(urls.values()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), step_seconds)
            if stop.is_set():
                return False
            crashed = r.demo.exited()
            if crashed:
                raise DemoError(f"{crashed[0].name} exited:\n{crashed[0].log_tail()}")
            after = await scrape_all(list(urls.values()))
            got = inbound_stats(before, after)
            say(f"  {what}: seen by inbound proxies: {fmt_split({d: got.get(u) for d, u in urls.items()})}")  # fmt: skip
            return True

        def show(step: Step, event: str) -> None:
            nonlocal tick
            tick += 1
            say(
                f"[tick {tick}] {event}: {step.kind} podinfo canary {step.canary} / "
                f"primary {step.primary} (steps/{step.path.name})"
            )

        show(steps[0], f"Initialized: Initialization done! {name}")
        if not await wait_tick("split"):
            return 0
        weights = [s for s in steps if s.phase == "weight"]
        rest = [s for s in steps if s.phase in ("promoting", "finalising")]
        r.apply(weights[0])
        show(weights[0], f"Progressing: Starting canary analysis for {name}; Advance {name} canary weight {weights[0].canary}")  # fmt: skip
        if not await wait_tick("split"):
            return 0
        current, failed = 0, 0
        while True:
            if failed >= analysis.threshold:
                r.apply(rollback)
                show(rollback, f"Failed: Rolling back {name} failed checks threshold reached {failed}")  # fmt: skip
                if not await wait_tick("after rollback"):
                    return 0
                say(f"result: ROLLED BACK - Canary failed! Scaling down {name} (weights back to canary 0 / primary 100)")  # fmt: skip
                break
            c = await r.check(analysis)
            say(f"  checks: {fmt_check(c, analysis)}")
            if c.failure:
                failed += 1
                tick += 1
                say(f"[tick {tick}] Progressing: Halt {name} advancement {c.failure} (failedChecks {failed}/{analysis.threshold})")  # fmt: skip
                if not await wait_tick("split"):
                    return 0
                continue
            if current + 1 < len(weights):
                current += 1
                r.apply(weights[current])
                show(weights[current], f"Progressing: Advance {name} canary weight {weights[current].canary}")  # fmt: skip
                if not await wait_tick("split"):
                    return 0
                continue
            for step in rest:
                r.apply(step)
                if step.phase == "promoting":
                    show(step, f"Promoting: Copying {name} template spec to {TARGET}-primary.{NAMESPACE} (not replayed: the primary process keeps v1)")  # fmt: skip
                else:
                    show(step, "Finalising: Routing all traffic to primary")
                if not await wait_tick("split"):
                    return 0
            say(f"result: PROMOTED - Promotion completed! Scaling down {name}")
            break
    except DemoError as exc:
        say(f"error: {exc}")
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if stop.is_set():
            say("interrupted: stopping every child")
        results = await r.stop()
        pids = " ".join(f"{n}={pid}" for n, pid, _ in results)
        say(f"stopped {len(results)} process(es): {pids}")
    return code
