"""Two real Turnout proxies on 127.0.0.1 with identities from a real Certify service:
client app -> client proxy (outbound, mTLS origination) -> server proxy (inbound, TLS
detection, mTLS termination) -> server app. Plaintext clients on the same inbound port,
forged `l5d-client-id`, and a server whose certificate is not the expected identity."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import _ReadySource, bounded, metric
from tests.proxy.identity.kit import API, WEB, Ca, identity_service
from tests.support.h2client import H2Client
from turnout.cli.offline import offline_runtime
from turnout.proxy.process import Address, IdentityConfig, ProxyConfig
from turnout.proxy.runner import Proxy, start_proxy, stop_proxy
from turnout.proxy.table import RuntimeTable

NS = "shop"
DB = "db.shop.serviceaccount.identity.cluster.local"
ANY = Address(host="127.0.0.1", port=0)


def service(name: str, port: int, identity: str | None, app_protocol: str | None = None) -> str:
    """A Service `name`:80 whose one endpoint is 127.0.0.1:`port`, meshed as `identity`."""
    annotations = {"identity.turnout.dev/name": identity} if identity else {}
    svc_port: dict[str, object] = {"name": "http", "port": 80}
    if app_protocol is not None:
        svc_port["appProtocol"] = app_protocol
    docs = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"ports": [svc_port]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-slice",
                "namespace": NS,
                "labels": {"kubernetes.io/service-name": name},
                "annotations": annotations,
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port}],
            "endpoints": [{"addresses": ["127.0.0.1"]}],
        },
    ]
    return "\n---\n".join(json.dumps(d) for d in docs)


def table(tmp: Path, docs: list[str]) -> RuntimeTable:
    f = tmp / "mesh.yaml"
    f.write_text("\n---\n".join(docs))
    runtime, diags = offline_runtime([str(f)], namespace=NS)
    assert not [d for d in diags if d.severity.value == "error"]
    return runtime


async def run_proxy(config: ProxyConfig, runtime: RuntimeTable) -> tuple[Proxy, asyncio.Task[None]]:
    applied = asyncio.Event()
    proxy, task = await start_proxy(config, _ReadySource(runtime, applied))
    async with asyncio.timeout(10):
        await applied.wait()
        while not proxy.ready:  # the first leaf is installed
            await asyncio.sleep(0.01)
    return proxy, task


@dataclass
class Lab:
    ca: Ca
    app: Backend
    server: Proxy
    client: Proxy
    plain: Proxy
    session: aiohttp.ClientSession

    @property
    def inbound(self) -> int:
        return self.server.port_of(self.server.servers[0])

    async def get(
        self, port: int, host: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, object]]:
        hdrs = {"Host": host, **(headers or {})}
        async with self.session.get(f"http://127.0.0.1:{port}/", headers=hdrs) as resp:
            body = await resp.read()
            return resp.status, json.loads(body) if resp.status == 200 else {"text": body.decode()}

    async def via(
        self, proxy: Proxy, host: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, object]]:
        return await self.get(proxy.port_of(proxy.servers[0]), host, headers)


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    async with identity_service(tmp_path) as ca:
        app = await Backend("api").start()
        procs: list[tuple[Proxy, asyncio.Task[None]]] = []
        try:
            server = await run_proxy(
                ProxyConfig(
                    namespace=NS,
                    workload_name="api",
                    inbound=ANY,
                    app=Address(host="127.0.0.1", port=app.port),
                    admin=ANY,
                    identity=IdentityConfig(
                        name=API, token_file=str(ca.token_file("api")), addr=ca.target
                    ),
                ),
                RuntimeTable.from_xds((), ()),
            )
            procs.append(server)
            port = server[0].port_of(server[0].servers[0])
            runtime = table(
                tmp_path,
                [
                    service("api", port, API),
                    service("wrong", port, DB),
                    service("bare", port, None),
                    service("api-h2", port, API, "kubernetes.io/h2c"),
                ],
            )
            client = await run_proxy(
                ProxyConfig(
                    namespace=NS,
                    workload_name="web",
                    outbound=ANY,
                    admin=ANY,
                    identity=IdentityConfig(
                        name=WEB, token_file=str(ca.token_file("web")), addr=ca.target
                    ),
                ),
                runtime,
            )
            procs.append(client)
            plain = await run_proxy(
                ProxyConfig(namespace=NS, workload_name="old", outbound=ANY), runtime
            )
            procs.append(plain)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                yield Lab(ca, app, server[0], client[0], plain[0], session)
        finally:
            for proxy, task in reversed(procs):
                await stop_proxy(proxy, task)
            await app.stop()


def client_id(echo: dict[str, object]) -> object:
    headers = echo["headers"]
    assert isinstance(headers, dict)
    return headers.get("l5d-client-id")


@bounded(30)
async def test_meshed_client_to_meshed_server_is_mtls_and_the_app_sees_the_client_id(
    lab: Lab,
) -> None:
    status, echo = await lab.via(lab.client, "api.shop.svc.cluster.local")
    assert status == 200 and client_id(echo) == WEB
    # the client's own header is replaced by the verified one
    forged = {"l5d-client-id": "root.kube-system.serviceaccount.identity.cluster.local"}
    status, echo = await lab.via(lab.client, "api.shop.svc.cluster.local", forged)
    assert status == 200 and client_id(echo) == WEB
    assert lab.client.pool.idle_count(("127.0.0.1", lab.inbound), API) == 1


@bounded(30)
async def test_a_plaintext_client_is_served_on_the_same_port_and_cannot_forge_the_id(
    lab: Lab,
) -> None:
    forged = {"l5d-client-id": WEB}
    status, echo = await lab.get(lab.inbound, "api.shop.svc.cluster.local", forged)
    assert status == 200 and client_id(echo) is None
    # a proxy without an identity sends plaintext even to a meshed endpoint
    status, echo = await lab.via(lab.plain, "api.shop.svc.cluster.local", forged)
    assert status == 200 and client_id(echo) is None
    # and a meshed proxy sends plaintext to an endpoint discovery names no identity for
    status, echo = await lab.via(lab.client, "bare.shop.svc.cluster.local", forged)
    assert status == 200 and client_id(echo) is None


@bounded(30)
async def test_a_server_certificate_for_another_identity_is_refused_with_502(lab: Lab) -> None:
    hits = lab.app.total
    status, body = await lab.via(lab.client, "wrong.shop.svc.cluster.local")
    assert status == 502, body
    assert "tls" in str(body["text"]), body
    assert lab.app.total == hits  # nothing reached the app


@bounded(30)
async def test_identity_metrics_are_exposed(lab: Lab) -> None:
    assert lab.server.admin is not None
    port = lab.server.admin.addresses[0][1]
    async with lab.session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    assert metric(text, "identity_cert_refresh_count") == 1
    assert metric(text, "identity_cert_expiration_timestamp_seconds") > 0


@bounded(30)
async def test_an_h2_client_choosing_alpn_h2_is_served_http2_over_mesh_tls(lab: Lab) -> None:
    # a meshed client's HTTP/2 (ALPN h2): the inbound serves it per request, not as TCP
    identity = lab.client.identity
    assert identity is not None and identity.h2_client_context is not None
    client = await H2Client.open(
        ("127.0.0.1", lab.inbound), ssl=identity.h2_client_context, server_hostname=API
    )
    try:
        selected = client.writer.get_extra_info("ssl_object").selected_alpn_protocol()
        forged = [(b"l5d-client-id", b"root.kube-system.serviceaccount.identity.cluster.local")]
        resp = await client.request("GET", "/h2", authority="api.shop:80", headers=forged)
    finally:
        await client.close()
    assert selected == "h2"
    echo = json.loads(resp.body)
    assert resp.status == 200 and echo["path"] == "/h2"
    assert echo["headers"]["l5d-client-id"] == WEB  # the verified identity, not the forged one


@bounded(30)
async def test_an_h2c_service_behind_a_meshed_proxy_is_reached_over_mtls_with_alpn_h2(
    lab: Lab,
) -> None:
    """Client proxy's H2Pool -> mTLS, ALPN h2 -> the server proxy serves HTTP/2 per request
    (then HTTP/1.1 to its app): the app sees the verified client identity."""
    status, echo = await lab.via(lab.client, "api-h2.shop.svc.cluster.local")
    assert status == 200 and client_id(echo) == WEB
    assert lab.client.pool.h2.connection_count(("127.0.0.1", lab.inbound), API) == 1
    assert lab.client.pool.idle_count(("127.0.0.1", lab.inbound), API) == 0  # not HTTP/1
