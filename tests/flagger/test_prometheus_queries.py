"""Flagger's Linkerd PromQL, run by a real Prometheus against our proxies' `/metrics`.

Four inbound proxies (namespace `test` and `slow`, deployments `podinfo-primary` and
`podinfo` in each) sit in front of four local apps; Debian's `prometheus` (installed by
`make tools`) scrapes their admin ports every second. Steady client traffic goes through the
inbound ports, the way a load tester calling `podinfo-canary` reaches the canary pods:

* `test/podinfo` (the canary) answers 500 to every 20th request: exactly 5% failures;
* `slow/podinfo` sleeps 600 ms before each answer (the request-duration check);
* both primaries answer 200 at once.

Then the queries go to `/api/v1/query` as Flagger sends them (fixtures/common/
metric-queries.yaml: the built-in `linkerd` set, and the `linkerd/success-rate` and
`linkerd/latency` MetricTemplates used with the `gatewayapi:*` providers), and their values
are read the way Flagger reads them (last series of a vector; empty or NaN = no values).
Without a `prometheus` binary the test skips and says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.conftest import REFERENCE, require_reference
from tests.proxy.e2e.harness import bounded
from turnout.proxy.process import Address, ProxyConfig, StaticTable
from turnout.proxy.runner import Proxy, start_proxy, stop_proxy
from turnout.proxy.table import RuntimeTable

FIXTURES = REFERENCE / "flagger" / "fixtures" / "common"
QUERIES = FIXTURES / "metric-queries.yaml"
TEMPLATES = FIXTURES / "linkerd-metric-templates.yaml"

TARGET = "podinfo"
"""`{{ target }}`: the Canary's targetRef name; the primary workload is `<target>-primary`."""
FAIL_EVERY = 20
"""The failing canary answers 500 to request 20, 40, 60 ...: 5% of its requests."""
DELAY_MS = 600
"""The slow canary's delay. Latency is recorded in whole ms and buckets are `le`-inclusive,
so 600 ms lands in (500, 1000], with room for a loaded machine's extra milliseconds (a
250 ms sleep read 381 ms at p99 with the other core busy: out of its (200, 300] bucket)."""
SECONDS = 10.0
"""Length of the steady traffic run."""


# -- Flagger's side: templates as Flagger renders and sends them ---------------------------------


def render(template: str, values: Mapping[str, str]) -> str:
    """Flagger's rendering: Go template fields (a missing key is an error), then every run of
    whitespace collapsed to one space (`pkg/metrics/providers/prometheus.go`)."""

    def value(m: re.Match[str]) -> str:
        return values[m.group(1)]

    return re.sub(r"\s+", " ", re.sub(r"\{\{\s*([\w.]+)\s*\}\}", value, template))


@dataclass(frozen=True)
class Queries:
    """The four Linkerd queries Flagger can send, as templates with their default interval."""

    success_rate: str
    duration: str
    template_success_rate: str
    template_latency: str
    success_interval: str
    duration_interval: str

    def wire(self, which: str, namespace: str, target: str) -> str:
        """`which` ("success_rate", "duration", "template_success_rate", "template_latency")
        rendered for `target` in `namespace` with its default interval."""
        template = getattr(self, which)
        rate = which in ("success_rate", "template_success_rate")
        interval = self.success_interval if rate else self.duration_interval
        values = {"namespace": namespace, "target": target, "interval": interval}
        return render(template, {**values, "variables.direction": "inbound"})


def load_queries() -> Queries:
    fixture = yaml.safe_load(require_reference(QUERIES).read_text())
    templates = {
        d["metadata"]["name"]: d["spec"]["query"]
        for d in yaml.safe_load_all(require_reference(TEMPLATES).read_text())
        if d and d.get("kind") == "MetricTemplate"
    }
    linkerd = fixture["builtin"]["linkerd"]
    q = Queries(
        success_rate=linkerd["request-success-rate"]["template"],
        duration=linkerd["request-duration"]["template"],
        template_success_rate=templates["success-rate"],
        template_latency=templates["latency"],
        success_interval=linkerd["request-success-rate"]["interval"],
        duration_interval=linkerd["request-duration"]["interval"],
    )
    # The rendering is Flagger's, byte for byte: the fixture's wire strings (podinfo/test).
    wires = {
        "success_rate": linkerd["request-success-rate"]["wire"],
        "duration": linkerd["request-duration"]["wire"],
        "template_success_rate": fixture["templates"]["success-rate"]["wire"],
        "template_latency": fixture["templates"]["latency"]["wire"],
    }
    for which, wire in wires.items():
        assert q.wire(which, "test", TARGET) == wire, which
    return q


def flagger_value(body: dict[str, Any]) -> float:
    """What Flagger makes of a `/api/v1/query` answer: a vector, the last series wins, and an
    empty result or NaN is "no values found" (a failed check)."""
    assert body["status"] == "success", body
    data = body["data"]
    assert data["resultType"] == "vector", data
    if not data["result"]:
        raise LookupError("no values found")
    value = float(data["result"][-1]["value"][1])
    if math.isnan(value):
        raise LookupError("no values found (NaN)")
    return value


# -- Prometheus ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Prometheus:
    """A `prometheus` process on 127.0.0.1 with its config and TSDB in a temp dir."""

    binary: str
    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    async def start(self, targets: list[str]) -> None:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "turnout-proxy",
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": targets}],
                }
            ],
        }
        (self.workdir / "prometheus.yml").write_text(json.dumps(config))
        self.port = free_port()
        with (self.workdir / "prometheus.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited ({self.proc.returncode}):\n{self.log}")
            with contextlib.suppress(aiohttp.ClientError):
                async with self.session.get(f"{self.url}/-/ready") as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus not ready after 15 s:\n{self.log}")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    async def query(self, promql: str, *, at: float | None = None) -> dict[str, Any]:
        """GET /api/v1/query?query=... as Flagger sends it; `at` adds `time` (evaluation
        instant), which Flagger leaves out (= now)."""
        assert self.session is not None
        params = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
        async with self.session.get(f"{self.url}/api/v1/query", params=params) as resp:
            body: dict[str, Any] = await resp.json()
            assert resp.status == 200, body
            return body

    async def value(self, promql: str, *, at: float | None = None) -> float:
        return flagger_value(await self.query(promql, at=at))

    async def wait_for(self, promql: str, ok: Any, what: str, timeout: float = 10) -> float:
        """Poll `promql` until `ok(value)`; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last: float | str = "no values"
        while time.monotonic() < deadline:
            with contextlib.suppress(LookupError):
                last = await self.value(promql)
                if ok(last):
                    return last
            await asyncio.sleep(0.2)
        raise AssertionError(f"{what}: still {last} after {timeout} s\n{self.log}")

    async def scraped_after(self, t: float, what: str) -> None:
        """Return once every target has been scraped at least once after unix time `t`."""
        await self.wait_for(
            'min(timestamp(up{job="turnout-proxy"}))', lambda v: v > t, f"scrape after {what}"
        )


@pytest.fixture
def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(
            "prometheus is not installed: `make tools` installs Debian's `prometheus` package "
            "(needs root and apt); these checks run Flagger's PromQL against a real Prometheus"
        )
    return binary


@pytest.fixture
async def prometheus(prometheus_binary: str, tmp_path: Path) -> AsyncIterator[Prometheus]:
    prom = Prometheus(prometheus_binary, tmp_path)
    try:
        yield prom
    finally:
        await prom.stop()


# -- the workloads -------------------------------------------------------------------------------


@dataclass
class App:
    """The pod's app: 200s, or a 500 for every `fail_every`-th request, after `delay_ms`."""

    fail_every: int = 0
    delay_ms: int = 0
    port: int = 0
    served: Counter[int] = field(default_factory=Counter)
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        n = self.served.total() + 1
        status = 500 if self.fail_every and n % self.fail_every == 0 else 200
        self.served[status] += 1
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        return web.Response(status=status, text="podinfo\n")

    async def start(self) -> App:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@dataclass
class Pod:
    """An app behind our inbound proxy, with the workload labels Flagger filters on."""

    namespace: str
    deployment: str
    app: App
    proxy: Proxy
    task: asyncio.Task[None]

    @property
    def inbound(self) -> int:
        return self.proxy.port_of(self.proxy.servers[0])

    @property
    def admin(self) -> int:
        assert self.proxy.admin is not None
        return int(self.proxy.admin.addresses[0][1])


async def start_pod(namespace: str, deployment: str, app: App, pod: str) -> Pod:
    """`mesh proxy --namespace NS --workload deployment/NAME --pod POD --inbound ... --app ...
    --admin ...`; `pod` is the ReplicaSet hash and pod suffix."""
    await app.start()
    config = ProxyConfig(
        namespace=namespace,
        workload_kind="deployment",
        workload_name=deployment,
        pod=f"{deployment}-{pod}",
        inbound=Address(host="127.0.0.1", port=0),
        app=Address(host="127.0.0.1", port=app.port),
        admin=Address(host="127.0.0.1", port=0),
    )
    proxy, task = await start_proxy(config, StaticTable(RuntimeTable.from_xds((), ())))
    while not proxy.ready:
        await asyncio.sleep(0.01)
    return Pod(namespace, deployment, app, proxy, task)


@pytest.fixture
async def pods() -> AsyncIterator[dict[tuple[str, str], Pod]]:
    """test/podinfo fails 5%; slow/podinfo is 600 ms late; both primaries are healthy."""
    specs = {
        ("test", f"{TARGET}-primary"): App(),
        ("test", TARGET): App(fail_every=FAIL_EVERY),
        ("slow", f"{TARGET}-primary"): App(),
        ("slow", TARGET): App(delay_ms=DELAY_MS),
    }
    out: dict[tuple[str, str], Pod] = {}
    try:
        for i, ((ns, deployment), app) in enumerate(specs.items()):
            pod = f"5d8c{i}b7f9-q{i}x2z"
            out[(ns, deployment)] = await start_pod(ns, deployment, app, pod)
        yield out
    finally:
        for p in out.values():
            await stop_proxy(p.proxy, p.task)
        for app in specs.values():
            await app.stop()


async def steady(
    session: aiohttp.ClientSession, pod: Pod, *, rate: float, seconds: float, workers: int
) -> Counter[int]:
    """`rate` requests a second for `seconds`, each sent at its slot (or as soon as a worker is
    free), through the pod's inbound proxy; counts of status codes."""
    n = round(rate * seconds)
    url = f"http://127.0.0.1:{pod.inbound}/api/info"
    host = f"{pod.deployment}.{pod.namespace}"
    loop = asyncio.get_running_loop()
    start = loop.time()
    seen: Counter[int] = Counter()

    async def worker(first: int) -> None:
        for i in range(first, n, workers):
            if (wait := start + i / rate - loop.time()) > 0:
                await asyncio.sleep(wait)
            async with session.get(url, headers={"Host": host}) as resp:
                await resp.read()
                seen[resp.status] += 1

    async with asyncio.TaskGroup() as tg:
        for w in range(workers):
            tg.create_task(worker(w))
    return seen


# -- the test ------------------------------------------------------------------------------------


@pytest.mark.slow
@bounded(60)
async def test_flagger_linkerd_queries_read_our_proxies_through_prometheus(
    prometheus: Prometheus, pods: dict[tuple[str, str], Pod]
) -> None:
    queries = load_queries()
    began = time.monotonic()
    await prometheus.start([f"127.0.0.1:{p.admin}" for p in pods.values()])
    started = time.monotonic() - began
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=10), connector=aiohttp.TCPConnector(limit=0)
    )
    try:
        # Warm-up: one failure cycle each, so every series (the canary's failure series too)
        # exists before the run and rate() sees the whole run as increase.
        for p in pods.values():
            for _ in range(FAIL_EVERY):
                async with session.get(f"http://127.0.0.1:{p.inbound}/") as resp:
                    await resp.read()
        await prometheus.wait_for(
            'count(response_total{direction="inbound"})', lambda v: v == 5, "series scraped"
        )
        warm = time.time()
        await prometheus.scraped_after(warm, "warm-up")

        t0 = time.monotonic()
        first_scrape = t0 - began - started
        rates = {  # (requests/s, workers): the slow canary needs rate × 0.6 s in flight
            ("test", TARGET): (200, 8),
            ("test", f"{TARGET}-primary"): (100, 4),
            ("slow", TARGET): (40, 32),
            ("slow", f"{TARGET}-primary"): (40, 4),
        }
        runs = await asyncio.gather(
            *(
                steady(session, pods[k], rate=r, seconds=SECONDS, workers=w)
                for k, (r, w) in rates.items()
            )
        )
        traffic = time.monotonic() - t0
        done = time.time()
        sent = dict(zip(rates, runs, strict=True))
        await prometheus.scraped_after(done + 1.0, "the run")  # >= 2 scrapes after the run
        settled = time.monotonic() - t0
    finally:
        await session.close()

    canary = pods[("test", TARGET)].app.served
    assert sent[("test", TARGET)] == Counter({200: 1900, 500: 100}), sent
    assert canary == Counter({200: 1900 + 19, 500: 100 + 1}), canary
    assert set(sent[("slow", TARGET)]) == {200}

    # Flagger's calls, exactly: GET /api/v1/query?query=<wire> (no evaluation time).
    results: dict[str, float] = {}
    for ns in ("test", "slow"):
        for target in (TARGET, f"{TARGET}-primary"):
            for which in ("success_rate", "duration"):
                wire = queries.wire(which, ns, target)
                results[f"{which} {ns}/{target}"] = await prometheus.value(wire)
    print(
        f"\nprometheus up {started:.1f}s, first scrapes +{first_scrape:.1f}s, "
        f"traffic {traffic:.1f}s, scraped +{settled - traffic:.1f}s"
    )
    for k, v in results.items():
        print(f"  {k}: {v:.2f}")

    # request-success-rate (percent): the canary's 5% of 500s, the primary's none.
    assert results[f"success_rate test/{TARGET}"] == pytest.approx(95, abs=1.5)
    assert results[f"success_rate test/{TARGET}-primary"] == pytest.approx(100, abs=1e-9)
    assert results[f"success_rate slow/{TARGET}"] == pytest.approx(100, abs=1e-9)
    # request-duration (ms, p99): the 600 ms canary reads in its (500, 1000] bucket; the
    # others answer at once, buckets below it.
    assert 500 < results[f"duration slow/{TARGET}"] <= 1000
    for fast in (f"slow/{TARGET}-primary", f"test/{TARGET}", f"test/{TARGET}-primary"):
        assert results[f"duration {fast}"] <= 300, fast

    # The MetricTemplates (linkerd/success-rate, linkerd/latency with direction: inbound, as
    # used with gatewayapi:*) give the same numbers as the built-ins at the same instant.
    at = time.time()
    for ns in ("test", "slow"):
        for target in (TARGET, f"{TARGET}-primary"):
            pairs = (("success_rate", "template_success_rate"), ("duration", "template_latency"))
            for builtin, template in pairs:
                a = await prometheus.value(queries.wire(builtin, ns, target), at=at)
                b = await prometheus.value(queries.wire(template, ns, target), at=at)
                assert b == pytest.approx(a, rel=1e-12), (ns, target, builtin)
                # ... and (one scrape later at most) what Flagger's own call read.
                assert a == pytest.approx(results[f"{builtin} {ns}/{target}"], rel=0.02)

    # `=~` is anchored: the canary's query never counts podinfo-primary, and a target with no
    # traffic is "no values found", which Flagger counts as a failed check.
    with pytest.raises(LookupError):
        await prometheus.value(queries.wire("success_rate", "test", "podinfo-canary"))
    # The built-in gatewayapi/kubernetes set reads the app's own http_request_duration_seconds,
    # which no Linkerd proxy exports: without the MetricTemplates Flagger would find nothing.
    fixture = yaml.safe_load(QUERIES.read_text())["builtin"]["gatewayapi_and_kubernetes"]
    with pytest.raises(LookupError):
        await prometheus.value(fixture["request-success-rate"]["wire"])
