"""Authorization from the Kubernetes source: policy objects in the (fake) API server, the
Kubernetes source and control plane compiling them, the ADS server serving them, and a real
proxy on 127.0.0.1 enforcing them, following a ServerAuthorization added and deleted on the
watch (the fake stands in for kube-apiserver, which cannot run here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.engine.sources.k8s_fake import FakeApiServer, ServedKind
from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import bounded
from turnout.engine.plane import ControlPlane
from turnout.engine.server import AdsServer
from turnout.engine.server.settings import ServerSettings
from turnout.engine.sources.k8s import WATCHED_KINDS, KubernetesSettings, start_kubernetes_source
from turnout.proxy.process import Address, ProxyConfig, XdsSource
from turnout.proxy.runner import Proxy, start_proxy, stop_proxy
from turnout.proxy.xds_client import NodeInfo

NS = "shop"
LINKERD = "policy.linkerd.io"
FAST = KubernetesSettings(
    debounce_s=0.02,
    request_timeout_s=5,
    connect_timeout_s=2,
    watch_timeout_s=30,
    inactivity_timeout_s=10,
    attempts=3,
)
KINDS = [ServedKind(k.group, k.version, k.plural, k.kind, k.namespaced) for k in WATCHED_KINDS]
KINDS_BY_NAME = {k.kind: k for k in KINDS if k.group != "security.istio.io"}


def obj(api: str, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


async def until(check: Callable[[], Any], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


@pytest.fixture
async def mesh() -> AsyncIterator[tuple[FakeApiServer, Proxy, Backend]]:
    app = await Backend("api").start()
    async with FakeApiServer(KINDS) as fake:
        fake.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "api", "namespace": NS},
                "spec": {
                    "selector": {"app": "api"},
                    "ports": [{"port": 80, "targetPort": app.port}],
                },
            }
        )
        fake.apply(
            obj(
                f"{LINKERD}/v1beta1",
                "Server",
                "api-http",
                {"podSelector": {"matchLabels": {"app": "api"}}, "port": app.port},
            )
        )
        server = AdsServer(settings=ServerSettings(stop_grace_ms=0))
        port = await server.start("127.0.0.1", 0)
        plane = ControlPlane(publish=server.publish)
        source = await start_kubernetes_source(plane, fake.api_client(), settings=FAST)
        node = NodeInfo(id="shop/api", cluster=NS, namespace=NS, workload="deployment/api")
        config = ProxyConfig(
            namespace=NS,
            workload_name="api",
            inbound=Address(host="127.0.0.1", port=0),
            app=Address(host="127.0.0.1", port=app.port),
            labels=(("app", "api"),),
        )
        proxy, task = await start_proxy(config, XdsSource(target=f"127.0.0.1:{port}", node=node))
        try:
            yield fake, proxy, app
        finally:
            await stop_proxy(proxy, task)
            await source.stop()
            await server.stop()
            await app.stop()


async def status(proxy: Proxy) -> int:
    port = proxy.port_of(proxy.servers[0])
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as s,
            s.get(f"http://127.0.0.1:{port}/", headers={"host": "api"}) as resp,
        ):
            return resp.status
    except aiohttp.ClientError:
        return 0  # refused / reset


@bounded(40)
async def test_policy_from_the_api_server_is_enforced_and_followed(
    mesh: tuple[FakeApiServer, Proxy, Backend],
) -> None:
    fake, proxy, app = mesh

    async def answers(code: int) -> bool:
        return await status(proxy) == code

    # a v1beta1 Server with no authorization denies everyone
    await until(lambda: answers(403))
    hits = app.total
    fake.apply(
        obj(
            f"{LINKERD}/v1beta1",
            "ServerAuthorization",
            "api-anyone",
            {"server": {"name": "api-http"}, "client": {"unauthenticated": True}},
        )
    )
    await until(lambda: answers(200))
    assert app.total > hits
    fake.delete(KINDS_BY_NAME["ServerAuthorization"], NS, "api-anyone")
    await until(lambda: answers(403))  # and back when it goes
