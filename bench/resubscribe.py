"""xDS resubscription: one table change that adds names to a subscription and changes that
type's content at once (issue 11), against a plain weight change, on one ADS stream.

```
publish(v1: web + web-v2)   ─> client table
publish(v2: web-v2 gone)    ─> client table, server sees RDS/EDS narrowed to web
publish(v3: web-v2 back, web's endpoint moved, 100% to web-v2) ─(t0)─> the client's table
                               sends everything to web-v2, web-v2 has its endpoint   ─(t1)
```

One `AdsServer` and one `turnout.proxy.xds_client.XdsClient` in this process, with the
client's production settings (a 15 s dependency timer). In v3 the server sends CDS, EDS,
LDS, RDS in one go; the client's requests for web-v2's endpoints and route config cross the
EDS and RDS responses on the wire (stale nonces). Printed: t1 - t0 per run, beside a plain
weight flip measured the same way, and how often the client's "building anyway" fallback
fired. Goal: every resubscription below `GOAL_MS` and no fallback.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.synth import service
from turnout.engine.ir import RouteTable
from turnout.engine.pipeline import compile_files
from turnout.engine.server import AdsServer, ServerSettings
from turnout.proxy import Forward, RequestInfo, RuntimeTable
from turnout.proxy.xds_client import NodeInfo, XdsClient

RUNS = 5
GOAL_MS = 1_000.0
NS = "bench"
WEB = f"web.{NS}.svc.cluster.local:80"
WEB_CLUSTER, CANARY_CLUSTER = f"{NS}/web:80", f"{NS}/web-v2:80"
TIMEOUT_S = 20.0
"""Per wait; longer than the client's 15 s fallback, so a stall shows as its figure, and a
change that never lands (the fallback NACKed it) as "never"."""


def endpoint_slice(svc: str, port: int) -> dict[str, object]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{svc}-x1",
            "namespace": NS,
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
    }


def split(weights: dict[str, int]) -> dict[str, object]:
    refs = [{"name": n, "port": 80, "weight": w} for n, w in weights.items()]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "web", "port": 80}],
            "rules": [{"backendRefs": refs}],
        },
    }


def manifest(*, canary: bool, weights: dict[str, int], web_port: int) -> list[Any]:
    docs: list[Any] = [service(NS, "web"), endpoint_slice("web", web_port)]
    if canary:
        docs += [service(NS, "web-v2"), endpoint_slice("web-v2", 9000)]
    return [*docs, split(weights)]


def compile_docs(directory: Path, name: str, docs: list[Any]) -> RouteTable:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    compiled = compile_files([path])
    errors = [str(d) for d in compiled.diagnostics if d.severity.value == "error"]
    assert not errors, errors
    return compiled.result.table


def shares(table: RuntimeTable) -> dict[str, int]:
    decision = table.decide(RequestInfo(method="GET", authority="web", path="/"), listener=WEB)
    assert isinstance(decision.action, Forward), decision
    return {b.cluster: b.weight for b in decision.action.backends}


class Fallbacks(logging.Handler):
    """Counts the client's "building anyway" log lines (works on any version of it)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "building anyway" in record.getMessage():
            self.count += 1


class Run:
    def __init__(self, server: AdsServer, client: XdsClient) -> None:
        self.server, self.client = server, client

    async def publish(self, table: RouteTable, want: dict[str, int], *, canary_up: bool) -> float:
        """Publish `table`; ms until the client's table sends `web` as `want` (with the
        canary's endpoint present when `canary_up`); infinity when not within `TIMEOUT_S`."""
        t0 = time.perf_counter()
        self.server.publish(table)
        try:
            return await self._until(want, canary_up=canary_up, t0=t0)
        except TimeoutError:
            return math.inf

    async def _until(self, want: dict[str, int], *, canary_up: bool, t0: float) -> float:
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                t = self.client.table
                canary = None if t is None else t.clusters.get(CANARY_CLUSTER)
                up = not canary_up or (canary is not None and canary.endpoints)
                if t is not None and up and shares(t) == want:
                    return (time.perf_counter() - t0) * 1000
                await asyncio.sleep(0.0005)

    async def narrowed(self) -> None:
        """The server has heard the client drop web-v2 (RDS and EDS name web only)."""
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                subs = [s.subscriptions for s in self.server.status().streams]
                if subs and subs[0].get("EDS") == (WEB_CLUSTER,) and subs[0].get("RDS") == (WEB,):
                    return
                await asyncio.sleep(0.001)


async def measure() -> tuple[list[float], list[float], int]:
    fallbacks = Fallbacks()
    logging.getLogger("turnout.proxy.xds_client").addHandler(fallbacks)
    server = AdsServer(settings=ServerSettings(stop_grace_ms=0))
    port = await server.start("127.0.0.1", 0)
    node = NodeInfo(id="bench-resubscribe", cluster="bench", namespace=NS, workload="w")
    client = XdsClient(f"127.0.0.1:{port}", node=node, on_table=lambda t, v: None)
    plain, comeback = [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            client.start()
            for i in range(RUNS):
                port_a, port_b = 8000 + 2 * i, 8001 + 2 * i
                all_web = {"web": 100, "web-v2": 0}
                v1 = compile_docs(
                    d, f"v1-{i}", manifest(canary=True, weights=all_web, web_port=port_a)
                )
                flip = compile_docs(
                    d,
                    f"flip-{i}",
                    manifest(canary=True, weights={"web": 90, "web-v2": 10}, web_port=port_a),
                )
                v2 = compile_docs(
                    d, f"v2-{i}", manifest(canary=False, weights={"web": 100}, web_port=port_a)
                )
                v3 = compile_docs(
                    d,
                    f"v3-{i}",
                    manifest(canary=True, weights={"web": 0, "web-v2": 100}, web_port=port_b),
                )
                run = Run(server, client)
                await run.publish(v1, {WEB_CLUSTER: 100, CANARY_CLUSTER: 0}, canary_up=True)
                await asyncio.sleep(0.05)  # the ACKs land
                plain.append(
                    await run.publish(flip, {WEB_CLUSTER: 90, CANARY_CLUSTER: 10}, canary_up=True)
                )
                await asyncio.sleep(0.05)
                await run.publish(v2, {WEB_CLUSTER: 100}, canary_up=False)
                await run.narrowed()
                await asyncio.sleep(0.05)
                comeback.append(
                    await run.publish(v3, {WEB_CLUSTER: 0, CANARY_CLUSTER: 100}, canary_up=True)
                )
    finally:
        await client.stop()
        await server.stop()
        logging.getLogger("turnout.proxy.xds_client").removeHandler(fallbacks)
    return plain, comeback, fallbacks.count


def ms(value: float) -> str:
    return f"{value:7.1f} ms" if math.isfinite(value) else "  never   "


def main() -> None:
    print(f"== xds resubscription: cluster back + content changed in one change ({RUNS} runs)")
    plain, comeback, fallbacks = asyncio.run(measure())
    worst = max(comeback)
    verdict = "ok" if worst < GOAL_MS and fallbacks == 0 else "OVER GOAL"
    print(f"  weight flip:        median {ms(statistics.median(plain))}  max {ms(max(plain))}")
    print(
        f"  web-v2 back + step: median {ms(statistics.median(comeback))}  max {ms(worst)}"
        f"  ({verdict}: < {GOAL_MS:.0f} ms, building anyway x{fallbacks})"
    )
    print(f"  each run (back + step): {', '.join(ms(v).strip() for v in comeback)}")
    ratio = statistics.median(comeback) / statistics.median(plain)
    print(f"  ratio (median): {ratio:.1f}x", flush=True)


if __name__ == "__main__":
    main()
