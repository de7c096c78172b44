"""Propagation in Kubernetes mode: a route's weights changed on the API server, to the proxy.

```
FakeApiServer (tests/engine/sources/k8s_fake.py, aiohttp on 127.0.0.1: the real kubernetes
client talks to it) ──watch──> KubernetesSource ──snapshot──> ControlPlane ──publish──>
AdsServer ──ADS (gRPC)──> XdsClient (the proxy's own client) ── on_table: the new weights
                                   └──status PUT──> the route's observedGeneration
```

Each round applies the route with new weights and times two things from the apply: the
proxy's table deciding with the new weights (propagation), and the route's status carrying
the new generation (what Flagger waits for). The source's debounce (0.1 s by default, a
coalescing window) is part of both, as it is in a cluster; the figures print with it and
with it at 0. The API server here is a fake on loopback, so the network and etcd of a real
cluster are not in the figures: they are Turnout's share.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from typing import Any

from tests.engine.server.ads_kit import FAST, node
from tests.engine.sources.k8s_fake import FakeApiServer, ServedKind
from turnout.engine.plane import ControlPlane
from turnout.engine.server.ads import AdsServer
from turnout.engine.server.settings import ServerSettings
from turnout.engine.sources.k8s import (
    DEFAULT_KUBERNETES_SETTINGS,
    WATCHED_KINDS,
    KubernetesSettings,
    start_kubernetes_source,
)
from turnout.proxy import Forward, RequestInfo, RuntimeTable
from turnout.proxy.xds_client import XdsClient

ROUNDS = 40
NS = "shop"
WEB = "web.shop.svc.cluster.local:80"
SERVED = [ServedKind(k.group, k.version, k.plural, k.kind, k.namespaced) for k in WATCHED_KINDS]
ROUTE_KIND = next(s for s in SERVED if s.kind == "HTTPRoute")
TIMEOUT_S = 10.0


def _service(name: str, ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]},
    }


def _route(v2: int) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "web", "port": 80}],
            "rules": [
                {
                    "backendRefs": [
                        {"name": "web-v1", "port": 80, "weight": 100 - v2},
                        {"name": "web-v2", "port": 80, "weight": v2},
                    ]
                }
            ],
        },
    }


def _v2_weight(table: RuntimeTable | None) -> int | None:
    if table is None:
        return None
    decision = table.decide(
        RequestInfo(method="GET", authority="web", path="/", headers=()), listener=WEB
    )
    if not isinstance(decision.action, Forward):
        return None
    return next((b.weight for b in decision.action.backends if "web-v2" in b.cluster), None)


def _observed(fake: FakeApiServer) -> tuple[int, int]:
    obj = fake.get(ROUTE_KIND, NS, "web")
    gen = int(obj["metadata"].get("generation") or 0)
    parents = (obj.get("status") or {}).get("parents") or []
    seen = [
        int(c.get("observedGeneration") or 0)
        for p in parents
        for c in p.get("conditions") or []
        if c.get("type") == "Accepted"
    ]
    return gen, min(seen, default=0)


async def _until(check: Any) -> float:
    start = time.perf_counter()
    async with asyncio.timeout(TIMEOUT_S):
        while not check():
            await asyncio.sleep(0.001)
    return time.perf_counter() - start


async def measure(settings: KubernetesSettings) -> tuple[list[float], list[float]]:
    """Per round: (apply -> proxy table, apply -> status observedGeneration), seconds."""
    async with FakeApiServer(SERVED) as fake:
        for i, name in enumerate(("web", "web-v1", "web-v2")):
            fake.apply(_service(name, f"10.96.0.{10 + i}"))
        fake.apply(_route(0))
        server = AdsServer(settings=ServerSettings(stop_grace_ms=0))
        port = await server.start("127.0.0.1", 0)
        plane = ControlPlane(publish=server.publish)
        api = fake.api_client()
        source = await start_kubernetes_source(plane, api, settings=settings)
        client = XdsClient(
            f"127.0.0.1:{port}", node=node(NS), on_table=lambda t, v: None, settings=FAST
        )
        client.start()
        table_s: list[float] = []
        status_s: list[float] = []
        try:
            await _until(lambda: _v2_weight(client.table) == 0)
            for i in range(1, ROUNDS + 1):
                want = i % 50 + 1
                start = time.perf_counter()
                fake.apply(_route(want))
                gen = _observed(fake)[0]
                await _until(lambda w=want: _v2_weight(client.table) == w)
                table_s.append(time.perf_counter() - start)
                await _until(lambda g=gen: _observed(fake)[1] >= g)
                status_s.append(time.perf_counter() - start)
        finally:
            await client.stop()
            await source.stop()
            await server.stop()
            api.close()
    return table_s, status_s


def _line(what: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return (
        f"  {what:<44} p50 {statistics.median(ms):6.1f} ms   p99 {p99:6.1f} ms"
        f"   ({len(ms)} changes)"
    )


def main() -> None:
    print("kubernetes mode: a route's weights changed on the API server (fake, loopback)")
    for label, settings in (
        ("debounce 0.1 s (default)", DEFAULT_KUBERNETES_SETTINGS),
        ("debounce 0", dataclasses.replace(DEFAULT_KUBERNETES_SETTINGS, debounce_s=0.0)),
    ):
        table_s, status_s = asyncio.run(measure(settings))
        print(f" {label}:")
        print(_line("apply -> proxy table has the new weights", table_s))
        print(_line("apply -> status observedGeneration", status_s))


if __name__ == "__main__":
    main()
