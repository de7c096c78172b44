"""The control plane's Prometheus: the targets file follows the ADS streams, and a real
`prometheus` (Debian's, `make tools`) scrapes real proxies through it.

```
proxy a, proxy b (inbound -> app, admin :0) ──ADS, metadata.admin──> AdsServer
     │                                                    └─on_streams_changed─> TargetsFile
     └── /metrics <──scrape (file_sd: targets.json)── prometheus ── /api/v1/query <── test
```

The unit tests drive `TargetsFile` with a hand-made `ServerStatus`; the slow one runs the
whole loop and checks that Prometheus' `sum(request_total)` is what the proxies' own
`/metrics` say. Without a `prometheus` binary the slow test skips and says why.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import bounded
from turnout.engine.errors import ControlPlaneError
from turnout.engine.ir import RouteTable
from turnout.engine.plane import ControlPlane
from turnout.engine.server import AdsServer, ServerStatus, StreamStatus
from turnout.engine.server.admin import admin_app, start_admin
from turnout.engine.server.prometheus import (
    PrometheusProcess,
    PrometheusSettings,
    start_prometheus,
)
from turnout.engine.server.targets import TargetsFile, scrape_groups, scrape_target
from turnout.proxy.process import Address, ProxyConfig, XdsSource
from turnout.proxy.runner import Proxy, start_proxy, stop_proxy
from turnout.proxy.xds_client import NodeInfo
from turnout.viz.stats import parse_text


def mk_stream(node_id: str, *, admin: str = "", pod: str = "", peer: str = "") -> StreamStatus:
    return StreamStatus(
        peer=peer or f"ipv4:127.0.0.1:{abs(hash(node_id)) % 50_000 + 10_000}",
        node_id=node_id,
        namespace="shop",
        acked={},
        subscriptions={},
        nacks=(),
        workload="deployment/web",
        pod=pod,
        admin=admin,
    )


def mk_status(*streams: StreamStatus) -> ServerStatus:
    return ServerStatus(version=1, streams=streams, nacks=0)


def test_scrape_groups_one_per_admin_address_sorted_and_without_proxyless_clients() -> None:
    status = mk_status(
        mk_stream("shop/web/b", admin="127.0.0.1:4192", pod="web-b"),
        mk_stream("shop/web/a", admin="127.0.0.1:4191", pod="web-a"),
        mk_stream("shop/web/a/worker-1", admin="127.0.0.1:4191", pod="web-a"),
        mk_stream("grpc~shop~deployment/api"),  # proxyless: no admin port
        mk_stream("", admin="127.0.0.1:4193"),  # not identified yet
    )
    labels = {"namespace": "shop", "workload": "deployment/web"}
    assert scrape_groups(status) == [
        {"targets": ["127.0.0.1:4191"], "labels": {**labels, "pod": "web-a"}},
        {"targets": ["127.0.0.1:4192"], "labels": {**labels, "pod": "web-b"}},
    ]


@pytest.mark.parametrize(
    ("admin", "peer", "target"),
    [
        pytest.param("10.0.0.7:4191", "ipv4:10.0.0.9:5000", "10.0.0.7:4191", id="named-host"),
        pytest.param("0.0.0.0:4191", "ipv4:10.0.0.9:5000", "10.0.0.9:4191", id="any-v4"),
        pytest.param("[::]:4191", "ipv6:[fd00::7]:5000", "[fd00::7]:4191", id="any-v6"),
        pytest.param("0.0.0.0:4191", "unix:/tmp/x", "0.0.0.0:4191", id="unix-peer-kept"),
    ],
)
def test_an_admin_bound_on_any_address_is_scraped_where_its_stream_came_from(
    admin: str, peer: str, target: str
) -> None:
    assert scrape_target(admin, peer) == target


async def test_the_targets_file_is_rewritten_only_when_the_targets_change(tmp_path: Path) -> None:
    current = mk_status()
    path = tmp_path / "targets.json"
    targets = TargetsFile(path, lambda: current)
    await targets.start()
    try:
        assert json.loads(path.read_text()) == [] and targets.writes == 1
        current = mk_status(mk_stream("shop/web/a", admin="127.0.0.1:4191", pod="web-a"))
        targets.changed()  # what the ADS server calls: the writer task wakes and writes
        async with asyncio.timeout(5):
            while targets.writes < 2:
                await asyncio.sleep(0.01)
        [group] = json.loads(path.read_text())
        assert group["targets"] == ["127.0.0.1:4191"] and group["labels"]["pod"] == "web-a"
        # the same proxy on a new stream (a reconnect) and a proxyless client: no write
        current = mk_status(
            mk_stream("shop/web/a", admin="127.0.0.1:4191", pod="web-a", peer="ipv4:1.2.3.4:9"),
            mk_stream("grpc~shop~deployment/api"),
        )
        assert await targets.sync() is False and targets.writes == 2
        current = mk_status()
        assert await targets.sync() is True
        assert json.loads(path.read_text()) == []
        assert not list(tmp_path.glob(".*.tmp"))  # the temp file was renamed, not left behind
    finally:
        await targets.stop()


async def test_a_missing_prometheus_binary_is_one_line_naming_it(tmp_path: Path) -> None:
    settings = PrometheusSettings(binary="no-such-prometheus")
    with pytest.raises(ControlPlaneError, match=r"^no no-such-prometheus executable"):
        await start_prometheus(
            tmp_path, targets_file=tmp_path / "t.json", control_plane="x:1", settings=settings
        )


# -- the real loop -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(ok: Callable[[], object], what: str, *, timeout_s: float = 10) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not ok():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{what}: not after {timeout_s} s") from None


async def start_pod(xds_port: int, app: Backend, pod: str) -> tuple[Proxy, asyncio.Task[None]]:
    """`mesh proxy --xds ... --inbound :0 --app ... --admin :0 --pod POD` for shop/web."""
    config = ProxyConfig(
        namespace="shop",
        workload_name="web",
        pod=pod,
        inbound=Address(host="127.0.0.1", port=0),
        app=Address(host="127.0.0.1", port=app.port),
        admin=Address(host="127.0.0.1", port=0),
    )
    node = NodeInfo(
        id=f"shop/web/{pod}", cluster="shop", namespace="shop", workload="deployment/web", pod=pod
    )
    return await start_proxy(config, XdsSource(target=f"127.0.0.1:{xds_port}", node=node))


@pytest.fixture
async def prometheus(tmp_path: Path, server: AdsServer) -> AsyncIterator[PrometheusProcess]:
    """Prometheus scraping the targets file of `server`'s streams every 500 ms."""
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed: `make tools` installs Debian's package")
    server.publish(RouteTable())
    runner, admin_port = await start_admin(
        admin_app(ControlPlane(publish=server.publish), server), "127.0.0.1", 0
    )
    targets = TargetsFile(tmp_path / "targets.json", server.status)
    server.on_streams_changed = targets.changed
    await targets.start()
    settings = PrometheusSettings(listen=f"127.0.0.1:{free_port()}", scrape_interval_ms=500)
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    prom = await start_prometheus(
        workdir,
        targets_file=targets.path,
        control_plane=f"127.0.0.1:{admin_port}",
        settings=settings,
    )
    try:
        yield prom
    finally:
        await prom.stop()
        await targets.stop()
        await runner.cleanup()


async def query(session: aiohttp.ClientSession, url: str, promql: str) -> list[dict[str, object]]:
    async with session.get(f"{url}/api/v1/query", params={"query": promql}) as resp:
        body = await resp.json()
        assert resp.status == 200 and body["status"] == "success", body
        result: list[dict[str, object]] = body["data"]["result"]
        return result


async def scalar(session: aiohttp.ClientSession, url: str, promql: str) -> float | None:
    result = await query(session, url, promql)
    value = result[0]["value"] if result else None
    return float(value[1]) if isinstance(value, list) else None


@pytest.mark.slow
@bounded(40)
async def test_prometheus_scrapes_the_connected_proxies_and_sums_what_they_count(
    server: AdsServer, prometheus: PrometheusProcess, tmp_path: Path
) -> None:
    app = await Backend("web").start()
    pods = [await start_pod(server.port, app, pod) for pod in ("web-a", "web-b")]
    targets = tmp_path / "targets.json"
    timeout = aiohttp.ClientTimeout(total=5)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await until(lambda: len(json.loads(targets.read_text())) == 2, "both proxies listed")
            for (proxy, _), n in zip(pods, (7, 3), strict=True):
                for _ in range(n):
                    url = f"http://127.0.0.1:{proxy.port_of(proxy.servers[0])}/echo"
                    async with session.get(url) as resp:
                        assert resp.status == 200
            own = 0.0
            for proxy, _ in pods:
                assert proxy.admin is not None
                admin = f"http://127.0.0.1:{proxy.admin.addresses[0][1]}/metrics"
                async with session.get(admin) as resp:
                    samples = parse_text(await resp.text())
                own += sum(s.value for s in samples if s.name == "request_total")
            assert own == 10

            promql = "sum(request_total)"
            seen: list[float | None] = []

            async def settled() -> bool:
                seen.append(await scalar(session, prometheus.url, promql))
                return seen[-1] == own

            async with asyncio.timeout(15):
                while not await settled():
                    await asyncio.sleep(0.2)
            by_pod = await query(session, prometheus.url, "sum by (pod) (request_total)")
            assert {r["metric"]["pod"]: r["value"][1] for r in by_pod} == {  # type: ignore[index]
                "web-a": "7",
                "web-b": "3",
            }
            plane = 'up{job="turnout-control-plane"}'
            async with asyncio.timeout(10):
                while await scalar(session, prometheus.url, plane) != 1:
                    await asyncio.sleep(0.2)

            proxy, task = pods.pop()
            await stop_proxy(proxy, task)
            await until(lambda: len(json.loads(targets.read_text())) == 1, "web-b dropped")
            [group] = json.loads(targets.read_text())
            assert group["labels"] == {
                "namespace": "shop",
                "workload": "deployment/web",
                "pod": "web-a",
            }
    finally:
        for proxy, task in pods:
            await stop_proxy(proxy, task)
        await app.stop()
