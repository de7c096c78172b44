"""Every Grafana panel's and template variable's PromQL against a REAL Prometheus scraping the
demo's REAL mesh with traffic (mTLS, the vote-bot, web's AuthorizationPolicy).

Twice: on the shared lab (tests/viz/lab.py: `mesh serve --prometheus`'s own Prometheus, read
only), and on a demo mesh of this test's own, changed to produce what the demo alone does not
(`NEEDS_CHANGES` names those): a route with a retry policy
over a backend failing every other request (and always, on one path: retries exhausted), a
client web's policy denies, and two rejected changes (a file with errors, edited once more),
so the retry, denial, rejection and compile-time panels hold real numbers too.

Each dashboard's variables are evaluated as Grafana does (`grafana_kit.combinations`:
``label_values`` and the variable's regex, chained), every query runs with each combination of
real values, and each must parse and give a number (not NaN) for at least one of them.
`EXEMPT` lists the few that cannot, with the reason; `POSITIVE` the ones that must be > 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import bounded
from tests.viz.grafana_kit import combinations, substitute, targets
from tests.viz.lab import Lab as VizLab
from tests.viz.test_prom import free_port
from turnout.demo.orchestrate import EXAMPLES, HOST, Demo
from turnout.engine.server.prometheus import (
    PrometheusProcess,
    PrometheusSettings,
    start_prometheus,
)
from turnout.viz.grafana import DASHBOARDS, dashboard
from turnout.viz.prom import VectorSample, instant_query

EXEMPT: dict[tuple[str, str, str], str] = {
    ("control-plane", "Leaders", "A"): "turnout_leader exists only with --leader-elect"
    " (the Kubernetes source); the embedded control plane has no Lease",
    ("control-plane", "Leader by replica", "A"): "the same gauge, by replica",
    ("control-plane", "ACKs and NACKs per second", "B"): "a NACK needs a proxy that refuses"
    " a resource; every proxy of the test mesh accepts what the control plane sends",
}
"""(dashboard, panel title, refId) -> why it is empty on the test mesh."""

POSITIVE: set[tuple[str, str, str]] = {
    ("control-plane", "Changes and rejections per second", "B"),
    ("workload", "Denied requests per second", "A"),
    ("route", "Retries per second", "A"),
    ("route", "Retries per second", "B"),
    ("route", "Retries per second", "C"),
}
"""Targets that must be above zero for some combination: the mesh was made to produce them."""

FLAKY_ROUTE = """\
apiVersion: v1
kind: Service
metadata: {{name: flaky, namespace: emojivoto}}
spec:
  selector: {{app: flaky}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: flaky-abc12
  namespace: emojivoto
  labels: {{kubernetes.io/service-name: flaky}}
addressType: IPv4
ports: [{{name: http, port: {port}, protocol: TCP}}]
endpoints:
- addresses: ["127.0.0.1"]
  conditions: {{ready: true}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: flaky, namespace: emojivoto}}
spec:
  parentRefs:
  - {{group: "", kind: Service, name: flaky, port: 80}}
  rules:
  - retry: {{codes: [503], attempts: 2, backoff: 10ms}}
    backendRefs:
    - {{name: flaky, port: 80}}
"""
BROKEN = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: broken{n}, namespace: emojivoto}}\nspec: {{parentRefs: nope}}\n"  # fmt: skip


@dataclass
class Lab:
    demo: Demo
    prom: PrometheusProcess
    backend: Backend

    @property
    def admin(self) -> str:
        return f"http://{HOST}:{self.demo.ports.serve_admin}"


async def until(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what} after {timeout_s}s")
        await asyncio.sleep(0.2)


async def first(prom: str, promql: str) -> float:
    got = await instant_query(prom, promql)
    return got[0].value if got else math.nan


async def traffic(lab: Lab, session: aiohttp.ClientSession) -> None:
    """Until cancelled: tries through the vote-bot's proxy to the flaky route (/half: 503 every
    other try, retried; /status/503: retries exhausted), and a plaintext client web denies."""
    p = lab.demo.ports
    flaky = {"host": "flaky.emojivoto"}
    for i in itertools.count():
        path = "/status/503" if i % 4 == 3 else "/half"
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(f"http://{HOST}:{p.outbound}{path}", headers=flaky) as r:
                await r.read()
            async with session.get(f"http://{HOST}:{p.slices['web-v1']}/api/list") as r:
                await r.read()
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def lab_running(tmp_path: Path) -> AsyncIterator[Lab]:
    backend = await Backend("flaky").start()
    demo = Demo(examples=EXAMPLES / "emojivoto", rps=10.0, with_prometheus=False)
    prom: PrometheusProcess | None = None
    try:
        await demo.start()
        p = demo.ports
        admins = [p.outbound_admin, *p.inbound_admin.values(), *p.web_admin.values()]
        (tmp_path / "targets.json").write_text(
            json.dumps([{"targets": [f"{HOST}:{a}" for a in admins]}])
        )
        prom = await start_prometheus(
            tmp_path,
            targets_file=tmp_path / "targets.json",
            control_plane=f"{HOST}:{p.serve_admin}",
            settings=PrometheusSettings(listen=f"{HOST}:{free_port()}", scrape_interval_ms=500),
        )
        yield Lab(demo, prom, backend)
    finally:
        if prom is not None:
            await prom.stop()
        await demo.stop()
        await backend.stop()


async def changes_taken(session: aiohttp.ClientSession, lab: Lab) -> int:
    async with session.get(f"{lab.admin}/debug/diagnostics") as r:
        return int((await r.json())["changes"])


Values = dict[str, str]
Key = tuple[str, str, str]
"""A target: (dashboard, panel title, refId)."""
WORKLOADS = [
    {"namespace": ns, "deployment": d}
    for ns, d in (("emojivoto", "web-v1"), ("emojivoto", "web-v2"), ("loadgen", "vote-bot"))
]
LAB_WORKLOADS = [
    {"namespace": "emojivoto", "deployment": d} for d in ("emoji", "voting-v1", "voting-v2")
] + WORKLOADS
"""The shared lab's Prometheus also scrapes the proxyless gRPC servers (grpcmesh's admin
port, on their xDS node metadata)."""


async def results(
    prom: str,
) -> tuple[dict[tuple[str, str, str], list[tuple[Values, float]]], dict[str, list[Values]]]:
    """Every target's finite values with the variable values that gave them, and each
    dashboard's combinations of variable values."""
    out: dict[tuple[str, str, str], list[tuple[Values, float]]] = {}
    combos = {}
    for name in DASHBOARDS:
        board = dashboard(name)
        combos[name] = combinations(prom, board)
        for t in targets(board):
            found = out.setdefault((name, t.panel, t.ref), [])
            for values in combos[name]:
                got: list[VectorSample] = await instant_query(prom, substitute(t.expr, values))
                found += [(values, s.value) for s in got if not math.isnan(s.value)]
    return out, combos


@pytest.mark.slow
@bounded(60)
async def test_every_panel_has_numbers_on_a_mesh_with_traffic(tmp_path: Path) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed: `make tools` installs Debian's package")
    async with (
        lab_running(tmp_path) as lab,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session,
    ):
        prom, mesh = lab.prom.url, lab.demo.manifests / "mesh"
        changes = await changes_taken(session, lab)
        (mesh / "90-flaky.yaml").write_text(FLAKY_ROUTE.format(port=lab.backend.port))
        (mesh / "91-broken.yaml").write_text(BROKEN.format(n=1))

        async def taken() -> bool:
            return await changes_taken(session, lab) > changes

        await until("the new files taken", taken)
        load = asyncio.create_task(traffic(lab, session))
        try:
            rejected = (
                'sum(turnout_control_plane_rejected_changes_total{job="turnout-control-plane"})'
            )
            await until("a rejection scraped", lambda: _above(prom, rejected, 0))
            (mesh / "91-broken.yaml").write_text(BROKEN.format(n=2))  # a second rejected change
            # every target is scraped on its own schedule: ask again until each query has had
            # the samples it needs (or the time is up, and the last answer's problems fail)
            deadline = time.monotonic() + 20
            while (found := await problems(prom, lab)) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
        finally:
            load.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await load
    assert not found, "\n".join(found)


async def problems(prom: str, lab: Lab) -> list[str]:
    """What is wrong with the dashboards' answers now ([]: nothing)."""
    got, combos = await results(prom)
    out = []
    want = {
        "control-plane": [
            {"job": "turnout-control-plane", "instance": f"{HOST}:{lab.demo.ports.serve_admin}"}
        ],
        "namespace": [{"namespace": "emojivoto"}, {"namespace": "loadgen"}],
        "workload": WORKLOADS,
        "route": [{"namespace": "emojivoto", "route": r} for r in ("flaky", "voting", "web")],
    }
    out += [
        f"{name}: variables list {combos[name]}, not {w}"
        for name, w in want.items()
        if combos[name] != w
    ]
    out += [f"no numbers: {k}" for k, v in got.items() if not v and k not in EXEMPT]
    out += [f"exempt but has numbers (drop the exemption): {k}" for k in EXEMPT if got.get(k)]
    out += [f"never above zero: {k}" for k in POSITIVE if not any(v > 0 for _c, v in got[k])]
    tries = got[("route", "Tries per request", "A")]
    if not any(c["route"] == "flaky" and v > 1 for c, v in tries):
        out.append(f"the flaky route's tries per request are not above 1: {tries}")
    return out


async def _above(prom: str, promql: str, floor: float) -> bool:
    return (await first(prom, promql)) > floor


NEEDS_CHANGES: dict[tuple[str, str, str], str] = {
    ("control-plane", "Changes and rejections per second", "B"): "no change was rejected",
    ("control-plane", "Compile duration", "A"): "one compile, at start: no rate",
    ("control-plane", "Compile duration", "B"): "one compile, at start: no rate",
    ("workload", "Denied requests per second", "A"): "no client the policy denies",
}
"""Empty on the shared lab, which tests may not change (tests/viz/lab.py): the test above,
on a mesh of its own, makes each of these produce numbers."""


@pytest.mark.slow
@bounded(60)
async def test_every_panel_has_numbers_on_the_shared_demo_mesh(viz_lab: VizLab) -> None:
    """The same queries on the shared lab's Prometheus, the one `mesh serve --prometheus`
    starts (file-based discovery of the proxies, 2 s scrapes): its job names and labels."""
    skipped = EXEMPT | NEEDS_CHANGES

    def empty(got: dict[tuple[str, str, str], list[tuple[Values, float]]]) -> list[Key]:
        return [k for k, v in got.items() if not v and k not in skipped]

    # Each target is scraped on its own schedule; on a busy machine a short window can miss
    # one, so ask again (bounded) before calling a panel empty.
    deadline = time.monotonic() + 20
    while empty(got := (answer := await results(viz_lab.prometheus))[0]):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    combos = answer[1]
    assert combos == {
        "control-plane": [{"job": "turnout-control-plane", "instance": viz_lab.control_plane}],
        "namespace": [{"namespace": "emojivoto"}, {"namespace": "loadgen"}],
        "workload": LAB_WORKLOADS,
        # voting: the proxyless web apps' gRPC calls (they report their metrics port)
        "route": [
            {"namespace": "emojivoto", "route": "voting"},
            {"namespace": "emojivoto", "route": "web"},
        ],
    }
    assert empty(got) == []
    assert [k for k in skipped if got[k]] == [], "has numbers now: drop it from the list"
