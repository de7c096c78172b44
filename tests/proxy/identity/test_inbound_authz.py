"""Inbound authorization on real proxies with real identities: the seed scenario (only one
service account may call the app), gRPC's status 7, a forged `l5d-client-id`, the metrics
moving by the request counts, STRICT refusing plaintext, and an opaque port (a
greeting-first app answering at once; a denied connection refused).

The policy goes through the wire form the control plane serves: the engine compiles the
manifests, renders the xDS policy resources, and the proxy decodes them from a
DiscoveryResponse (`xds_resources.decode_policy`) before `Proxy.apply_policy`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import bounded, metric
from tests.proxy.identity.kit import API, WEB, Ca, identity_service
from tests.proxy.identity.test_mtls_e2e import run_proxy, service, table
from turnout.engine.pipeline import compile_policy_files
from turnout.engine.xds.policy import policy_resources
from turnout.proxy.process import Address, IdentityConfig, ProxyConfig
from turnout.proxy.runner import Proxy, stop_proxy
from turnout.proxy.table import RuntimeTable
from turnout.proxy.xds_resources import POLICY_TYPE, decode_policy

NS = "shop"
ANY = Address(host="127.0.0.1", port=0)
INGRESS = "ingress.shop.serviceaccount.identity.cluster.local"


def served_policy(tmp: Path, text: str, version: str = "1") -> object:
    """Manifests -> the engine's policy resources -> a DiscoveryResponse -> the proxy's."""
    f = tmp / f"policy-{version}.yaml"
    f.write_text(text)
    _, result = compile_policy_files([f])
    res = policy_resources(result.table)
    resp = discovery_pb2.DiscoveryResponse(version_info=version, type_url=POLICY_TYPE)
    for ts in res.by_name().values():
        packed = any_pb2.Any()
        packed.Pack(ts)
        resp.resources.append(packed)
    return decode_policy(resp)


def server_policy(port: int, *, extra: str = "", protocol: str = "HTTP/1") -> str:
    return f"""
apiVersion: policy.linkerd.io/v1beta1
kind: Server
metadata: {{name: api-http, namespace: {NS}}}
spec:
  podSelector: {{matchLabels: {{app: api}}}}
  port: {port}
  proxyProtocol: {protocol}
---
apiVersion: policy.linkerd.io/v1beta1
kind: ServerAuthorization
metadata: {{name: api-ingress, namespace: {NS}}}
spec:
  server: {{name: api-http}}
  client:
    meshTLS:
      serviceAccounts: [{{name: ingress, namespace: {NS}}}]
{extra}"""


STRICT = f"""---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: strict, namespace: {NS}}}
spec:
  mtls: {{mode: STRICT}}
"""


@dataclass
class Lab:
    tmp: Path
    ca: Ca
    app: Backend
    server: Proxy
    ingress: Proxy
    web: Proxy
    session: aiohttp.ClientSession

    @property
    def inbound(self) -> int:
        return self.server.port_of(self.server.servers[0])

    def apply(self, text: str, version: str) -> None:
        self.server.apply_policy(served_policy(self.tmp, text, version), version)  # type: ignore[arg-type]

    async def get(
        self, port: int, headers: dict[str, str] | None = None
    ) -> tuple[int, str, aiohttp.typedefs.LooseHeaders]:
        hdrs = {"Host": "api.shop.svc.cluster.local", **(headers or {})}
        async with self.session.get(f"http://127.0.0.1:{port}/", headers=hdrs) as resp:
            return resp.status, await resp.text(), resp.headers

    async def via(self, proxy: Proxy, headers: dict[str, str] | None = None) -> int:
        return (await self.get(proxy.port_of(proxy.servers[0]), headers))[0]

    async def metrics(self) -> str:
        assert self.server.admin is not None
        port = self.server.admin.addresses[0][1]
        async with self.session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            return await resp.text()


async def client(ca: Ca, sa: str, runtime: RuntimeTable) -> tuple[Proxy, asyncio.Task[None]]:
    ident = f"{sa}.{NS}.serviceaccount.identity.cluster.local"
    return await run_proxy(
        ProxyConfig(
            namespace=NS,
            workload_name=sa,
            outbound=ANY,
            identity=IdentityConfig(name=ident, token_file=str(ca.token_file(sa)), addr=ca.target),
        ),
        runtime,
    )


@contextlib.asynccontextmanager
async def open_lab(
    tmp_path: Path,
    policy: Callable[[int], str],
    server: Callable[[int], dict[str, Any]] = lambda _: {},
) -> AsyncIterator[Lab]:
    """The seed's three proxies (ingress and web call api's inbound port), `policy(app
    port)` applied as version 1; `server(app port)`: more of the api proxy's `ProxyConfig`."""
    async with identity_service(tmp_path) as ca:
        app = await Backend("api").start()
        procs: list[tuple[Proxy, asyncio.Task[None]]] = []
        try:
            proxy = await run_proxy(
                ProxyConfig(
                    namespace=NS,
                    workload_name="api",
                    inbound=ANY,
                    app=Address(host="127.0.0.1", port=app.port),
                    admin=ANY,
                    labels=(("app", "api"),),
                    identity=IdentityConfig(
                        name=API, token_file=str(ca.token_file("api")), addr=ca.target
                    ),
                    **server(app.port),
                ),
                RuntimeTable.from_xds((), ()),
            )
            procs.append(proxy)
            port = proxy[0].port_of(proxy[0].servers[0])
            runtime = table(tmp_path, [service("api", port, API)])
            procs.append(await client(ca, "ingress", runtime))
            procs.append(await client(ca, "web", runtime))
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                lab = Lab(tmp_path, ca, app, proxy[0], procs[1][0], procs[2][0], session)
                lab.apply(policy(app.port), "1")
                yield lab
        finally:
            for p, task in reversed(procs):
                await stop_proxy(p, task)
            await app.stop()


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    async with open_lab(tmp_path, server_policy) as lab:
        yield lab


@bounded(60)
async def test_seed_only_the_ingress_service_account_may_call_the_app(lab: Lab) -> None:
    hits = lab.app.total
    assert [await lab.via(lab.ingress) for _ in range(5)] == [200] * 5
    assert [await lab.via(lab.web) for _ in range(3)] == [403] * 3
    status, _, headers = await lab.get(lab.inbound)
    assert status == 403 and headers["l5d-proxy-error"] == "unauthorized request on route"
    assert lab.app.total == hits + 5  # denied requests never reach the app
    text = await lab.metrics()
    allow = metric(
        text,
        "inbound_http_authz_allow_total",
        srv_kind="server",
        srv_name="api-http",
        authz_kind="serverauthorization",
        authz_name="api-ingress",
        tls="true",
        client_id=INGRESS,
    )
    assert allow == 5
    assert metric(text, "inbound_http_authz_deny_total", tls="true", client_id=WEB) == 3
    deny_plain = metric(
        text, "inbound_http_authz_deny_total", tls="no_identity", no_tls_reason="no_tls_from_remote"
    )
    assert deny_plain == 1


@bounded(30)
async def test_a_forged_client_id_and_grpc_are_denied_as_linkerd_does(lab: Lab) -> None:
    status, _, _ = await lab.get(lab.inbound, {"l5d-client-id": INGRESS})
    assert status == 403
    status, _, headers = await lab.get(lab.inbound, {"content-type": "application/grpc"})
    assert status == 200 and headers["grpc-status"] == "7"


@bounded(30)
async def test_a_policy_update_applies_to_the_next_request(lab: Lab) -> None:
    assert await lab.via(lab.web) == 403
    widened = server_policy(
        lab.app.port,
        extra=f"""---
apiVersion: policy.linkerd.io/v1beta1
kind: ServerAuthorization
metadata: {{name: api-web, namespace: {NS}}}
spec:
  server: {{name: api-http}}
  client:
    meshTLS:
      serviceAccounts: [{{name: web, namespace: {NS}}}]
""",
    )
    lab.apply(widened, "2")
    assert await lab.via(lab.web) == 200  # same kept-alive connection, new verdict


@bounded(30)
async def test_strict_refuses_plaintext_and_keeps_mtls(lab: Lab) -> None:
    lab.apply(server_policy(lab.app.port) + STRICT, "2")
    assert await lab.via(lab.ingress) == 200
    r, w = await asyncio.open_connection("127.0.0.1", lab.inbound)
    w.write(b"GET / HTTP/1.1\r\nhost: api\r\n\r\n")
    with contextlib.suppress(ConnectionError):
        await w.drain()
        assert await r.read() == b""  # reset (or closed) before any answer
    w.close()
    text = await lab.metrics()
    assert metric(text, "inbound_tcp_authz_deny_total", tls="no_identity") == 1


# --------------------------------------------------------------------------- opaque


class Greeter:
    """A server-first TCP app (SMTP-like): it greets on accept, then echoes one line."""

    def __init__(self) -> None:
        self.accepted = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.accepted += 1
            w.write(b"220 greeter ready\r\n")
            await w.drain()
            line = await r.readline()
            w.write(b"250 " + line)
            await w.drain()
            w.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])


async def greeting(port: int) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(2):  # far below the 10 s detection timeout
            first = await r.readline()
        w.write(b"HELO x\r\n")
        await w.drain()
        return first + await r.readline()
    finally:
        w.close()


@bounded(30)
async def test_an_opaque_port_forwards_at_once_and_refuses_denied_connections(
    tmp_path: Path,
) -> None:
    greeter = Greeter()
    app_port = await greeter.start()
    proxy, task = await run_proxy(
        ProxyConfig(
            namespace=NS,
            workload_name="mail",
            inbound=ANY,
            app=Address(host="127.0.0.1", port=app_port),
            admin=ANY,
            labels=(("app", "api"),),
            opaque_ports=((app_port, app_port),),
        ),
        RuntimeTable.from_xds((), ()),
    )
    try:
        port = proxy.port_of(proxy.servers[0])
        assert await greeting(port) == b"220 greeter ready\r\n250 HELO x\r\n"
        async with asyncio.timeout(5):  # the proxy sees the close a moment after the client
            while metric(text := proxy.metrics.render(), "tcp_close_total") < 1:
                await asyncio.sleep(0.01)
        assert metric(text, "tcp_open_total", direction="inbound", peer="src") == 1
        assert metric(text, "tcp_read_bytes_total", direction="inbound") == len(b"HELO x\r\n")
        assert metric(text, "tcp_write_bytes_total", direction="inbound") == len(
            b"220 greeter ready\r\n250 HELO x\r\n"
        )
        # a Server on the port that only the ingress may call: plaintext is refused
        proxy.apply_policy(served_policy(tmp_path, server_policy(app_port, protocol="opaque")), "1")  # type: ignore[arg-type]
        before = greeter.accepted
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError, TimeoutError)):
            got = await greeting(port)
            if not got:
                raise ConnectionResetError("closed")
        assert greeter.accepted == before  # nothing reached the app
    finally:
        await stop_proxy(proxy, task)
        assert greeter.server is not None
        greeter.server.close()


OPEN = f"""
apiVersion: policy.linkerd.io/v1beta3
kind: Server
metadata: {{name: api-http, namespace: {NS}}}
spec:
  podSelector: {{matchLabels: {{app: api}}}}
  port: PORT
  accessPolicy: all-unauthenticated
"""


@bounded(90)
async def test_permissive_serves_plaintext_and_mtls_on_one_port_split_by_tls(lab: Lab) -> None:
    lab.apply(OPEN.replace("PORT", str(lab.app.port)), "2")

    async def many(send: Callable[[], Awaitable[int]], n: int) -> list[int]:
        out: list[int] = []
        for _ in range(n // 10):
            out += await asyncio.gather(*(send() for _ in range(10)))
        return out

    async def plain() -> int:
        return (await lab.get(lab.inbound))[0]

    async def meshed() -> int:
        return await lab.via(lab.ingress)

    plain_codes, mtls_codes = await asyncio.gather(many(plain, 500), many(meshed, 500))
    assert plain_codes == [200] * 500 and mtls_codes == [200] * 500
    text = await lab.metrics()
    name = "inbound_http_authz_allow_total"
    assert (
        metric(text, name, tls="true", client_id=INGRESS, authz_name="all-unauthenticated") == 500
    )
    assert metric(text, name, tls="no_identity", no_tls_reason="no_tls_from_remote") == 500
    # the connections, labelled the same way (Linkerd's tcp_* families)
    tcp = "tcp_open_total"
    assert metric(text, tcp, direction="inbound", peer="src", tls="true", client_id=INGRESS) >= 1
    assert metric(text, tcp, direction="inbound", peer="src", tls="no_identity") >= 1


@bounded(60)
async def test_switching_to_strict_under_load_loses_no_meshed_request(lab: Lab) -> None:
    results: list[int] = []

    async def load() -> None:
        for _ in range(40):
            results.extend(await asyncio.gather(*(lab.via(lab.ingress) for _ in range(5))))

    task = asyncio.create_task(load())
    while len(results) < 50:
        await asyncio.sleep(0.01)
    lab.apply(server_policy(lab.app.port) + STRICT, "2")
    await task
    assert results == [200] * 200


def peer_authn(mode: str, port_modes: dict[int, str] | None = None) -> str:
    ports = "".join(f'\n    "{p}": {{mode: {m}}}' for p, m in (port_modes or {}).items())
    level = f"\n  portLevelMtls:{ports}" if ports else ""
    return f"""---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: api, namespace: {NS}}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  mtls: {{mode: {mode}}}{level}
"""


def api_service(port: int) -> str:
    """`service("api", ...)` with the selector the PeerAuthentication is resolved against."""
    return service("api", port, API).replace(
        '"spec": {"ports"', '"spec": {"selector": {"app": "api"}, "ports"'
    )


async def plaintext_answer(port: int) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET / HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n")
    got = b""
    with contextlib.suppress(ConnectionError):
        await w.drain()
        got = await r.read()
    w.close()
    with contextlib.suppress(ConnectionError):
        await w.wait_closed()
    return got


@bounded(60)
async def test_disable_between_meshed_workloads(lab: Lab) -> None:
    """DISABLE: the server takes plaintext only, and the control plane serves its endpoints
    without an identity, so a meshed client sends plaintext too (nothing to fail on)."""
    policy = OPEN.replace("PORT", str(lab.app.port)) + peer_authn("DISABLE")
    lab.apply(policy, "2")
    runtime = table(lab.tmp, [api_service(lab.inbound), policy])
    assert [ep.identity for ep in runtime.clusters["shop/api:80"].endpoints] == [None]
    meshed = await client(lab.ca, "web", runtime)
    try:
        assert await lab.via(meshed[0]) == 200
        text = await lab.metrics()
        assert metric(text, "inbound_http_authz_allow_total", tls="true") == 0
        assert metric(text, "inbound_http_authz_allow_total", tls="no_identity") == 1
    finally:
        await stop_proxy(*meshed)
    # STRICT for the workload: the identity is served again
    strict = table(lab.tmp, [api_service(lab.inbound), policy.replace("DISABLE", "STRICT")])
    assert [ep.identity for ep in strict.clusters["shop/api:80"].endpoints] == [API]


@bounded(30)
async def test_a_port_level_mode_overrides_the_workload_mode(lab: Lab) -> None:
    base = OPEN.replace("PORT", str(lab.app.port))
    lab.apply(base + peer_authn("STRICT", {lab.app.port: "PERMISSIVE"}), "2")
    assert (await plaintext_answer(lab.inbound)).startswith(b"HTTP/1.1 200")
    lab.apply(base + peer_authn("STRICT", {lab.app.port + 1: "PERMISSIVE"}), "3")
    assert await plaintext_answer(lab.inbound) == b""  # STRICT: refused
    lab.apply(base + peer_authn("PERMISSIVE", {lab.app.port: "STRICT"}), "4")
    assert await plaintext_answer(lab.inbound) == b""
    assert await lab.via(lab.ingress) == 200
