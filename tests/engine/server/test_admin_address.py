"""Proxies say where their admin port is (xDS node `metadata.admin`), and the control plane
shows it per stream in `/debug/proxies`: what Prometheus' service discovery is built from.

```
proxy (start_proxy, --admin 127.0.0.1:0) ──ADS, node.metadata.admin=127.0.0.1:<bound>──> AdsServer
                                                                         admin: /debug/proxies
```
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest
from google.protobuf import json_format

from tests.engine.server.ads_kit import TIMEOUT_S
from tests.proxy.e2e.harness import bounded, dead_port, start_cli_proxy
from turnout.engine.plane import ControlPlane
from turnout.engine.server import AdsServer
from turnout.engine.server.admin import admin_app, start_admin
from turnout.engine.server.streams import StreamState
from turnout.proxy.process import Address, ProxyConfig, StaticTable, XdsSource, reporting_admin
from turnout.proxy.runner import start_proxy, stop_proxy
from turnout.proxy.table import RuntimeTable
from turnout.proxy.xds_client import NodeInfo


def mk_node(*, pod: str = "web-7f9c", admin: str | None = None) -> NodeInfo:
    return NodeInfo(
        id=f"shop/web/{pod}", cluster="shop", namespace="shop", workload="web", pod=pod, admin=admin
    )


async def proxies(session: aiohttp.ClientSession, admin: str) -> list[dict[str, object]]:
    async with session.get(f"http://{admin}/debug/proxies") as resp:
        assert resp.status == 200
        found: list[dict[str, object]] = json.loads(await resp.text())["proxies"]
        return found


@pytest.fixture
async def plane_admin(server: AdsServer) -> AsyncIterator[str]:
    """The ADS server's control plane admin port (`mesh serve`'s), as ``HOST:PORT``."""
    runner, port = await start_admin(
        admin_app(ControlPlane(publish=server.publish), server), "127.0.0.1", 0
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@bounded(15)
async def test_debug_proxies_shows_the_admin_address_a_real_proxy_bound(
    server: AdsServer, plane_admin: str
) -> None:
    config = ProxyConfig(
        namespace="shop",
        workload_name="web",
        pod="web-7f9c",
        outbound=Address(host="127.0.0.1", port=0),
        admin=Address(host="127.0.0.1", port=0),
    )
    source = XdsSource(target=f"127.0.0.1:{server.port}", node=mk_node())
    proxy, task = await start_proxy(config, source)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session:
        try:
            bound = proxy.listening().admin
            assert bound is not None and bound.port != 0
            while not (seen := await proxies(session, plane_admin)):
                await asyncio.sleep(0.02)
            [entry] = seen
            assert entry["node_id"] == "shop/web/web-7f9c"
            assert entry["admin"] == f"127.0.0.1:{bound.port}"
            assert (entry["namespace"], entry["workload"], entry["pod"]) == (
                "shop",
                "web",
                "web-7f9c",
            )
            async with session.get(f"http://{entry['admin']}/metrics") as resp:
                assert resp.status == 200  # the address reported is the proxy's admin port
                assert 'pod="web-7f9c"' in await resp.text()
        finally:
            await stop_proxy(proxy, task)
        while await proxies(session, plane_admin):  # the stream is gone with the proxy
            await asyncio.sleep(0.02)


@bounded(45)
async def test_every_worker_of_a_mesh_proxy_process_reports_the_parent_admin_port(
    server: AdsServer, plane_admin: str
) -> None:
    admin = f"127.0.0.1:{dead_port()}"
    proc = await start_cli_proxy(
        *("--xds", f"127.0.0.1:{server.port}", "--workers", "2", "--pod", "web-7f9c"),
        *("--namespace", "shop", "--workload", "deployment/web"),
        *("--outbound", f"127.0.0.1:{dead_port()}", "--admin", admin),
    )
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session:
            while len(seen := await proxies(session, plane_admin)) < 2:
                assert proc.returncode is None, "mesh proxy exited"
                await asyncio.sleep(0.05)
        ids = sorted(str(p["node_id"]) for p in seen)
        assert ids == ["shop/deployment/web/web-7f9c", "shop/deployment/web/web-7f9c/worker-1"]
        assert [p["admin"] for p in seen] == [admin, admin]  # the child's own port is internal
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 0, err.decode()


@bounded(30)
async def test_mesh_proxy_xds_protocol_sotw_opens_a_state_of_the_world_stream(
    server: AdsServer, plane_admin: str
) -> None:
    """`--xds-protocol sotw` speaks StreamAggregatedResources; the default speaks delta."""
    procs = [
        await start_cli_proxy(
            *("--xds", f"127.0.0.1:{server.port}", "--pod", pod, *protocol),
            *("--namespace", "shop", "--workload", "deployment/web"),
            *("--outbound", f"127.0.0.1:{dead_port()}"),
        )
        for pod, protocol in (("a", ()), ("b", ("--xds-protocol", "sotw")))
    ]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session:
            while len(seen := await proxies(session, plane_admin)) < 2:
                assert all(p.returncode is None for p in procs), "mesh proxy exited"
                await asyncio.sleep(0.05)
        by_pod = {p["pod"]: p["protocol"] for p in seen}
        assert by_pod == {"a": "delta", "b": "sotw"}
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            await asyncio.wait_for(proc.communicate(), timeout=20)
    assert [p.returncode for p in procs] == [0, 0]


def test_the_node_metadata_carries_admin_and_pod_only_when_known() -> None:
    sent = json_format.MessageToDict(mk_node(admin="127.0.0.1:4191").to_proto().metadata)
    assert sent["admin"] == "127.0.0.1:4191" and sent["pod"] == "web-7f9c"
    bare = json_format.MessageToDict(mk_node(pod="").to_proto().metadata)
    assert "admin" not in bare and "pod" not in bare


def test_the_control_plane_ignores_an_admin_that_is_not_a_string() -> None:
    node = mk_node().to_proto()
    node.metadata.update({"admin": 4191})
    state = StreamState(peer="ipv4:127.0.0.1:1")
    state._identify(node)
    assert state.admin == "" and state.pod == "web-7f9c"


def test_reporting_admin_fills_in_the_bound_port_but_keeps_an_admin_already_named() -> None:
    bound = Address(host="127.0.0.1", port=4191)
    fresh = reporting_admin(XdsSource(target="x:1", node=mk_node()), bound)
    assert isinstance(fresh, XdsSource) and fresh.node.admin == "127.0.0.1:4191"
    # a --workers child names the parent's admin port, which serves the child's metrics too
    child = reporting_admin(XdsSource(target="x:1", node=mk_node(admin="127.0.0.1:9")), bound)
    assert isinstance(child, XdsSource) and child.node.admin == "127.0.0.1:9"
    static = StaticTable(RuntimeTable.from_serialized([]))
    assert reporting_admin(static, bound) is static
    unbound = XdsSource(target="x:1", node=mk_node())
    assert reporting_admin(unbound, None) is unbound
