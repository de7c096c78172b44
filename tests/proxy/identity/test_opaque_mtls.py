"""Forwarded TCP over mesh TLS, on real proxies with real identities: a transparent client
proxy (its original destinations faked by `detect.original_dst`, as
tests/proxy/e2e/test_transparent_detect.py does) -> mTLS -> a server proxy's inbound
(STRICT, `--app`) -> the app. gRPC (h2c, served as HTTP/2 per request over mTLS) end to end, an opaque server-first greeter, a
denied identity, a server of another identity, and a capture of the wire between the two
proxies that holds no plaintext."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from tests.proxy.e2e.harness import bounded, metric
from tests.proxy.identity.kit import API, WEB, Ca, identity_service
from tests.proxy.identity.test_inbound_authz import served_policy
from tests.proxy.identity.test_mtls_e2e import DB, run_proxy, table
from turnout.proxy.process import Address, IdentityConfig, ProxyConfig
from turnout.proxy.runner import Proxy, stop_proxy
from turnout.proxy.table import RuntimeTable
from turnout.proxy.transport import detect

NS = "shop"
ANY = Address(host="127.0.0.1", port=0)
GRPC = ("127.0.0.51", 50051)  # unmarked: detected as HTTP/2, served per request
MYSQL = ("127.0.0.52", 3306)  # opaque: the Service's annotation
WRONG = ("127.0.0.53", 3306)  # opaque, its endpoint said to be DB's identity
PLAIN = ("127.0.0.54", 3306)  # opaque, its endpoint (the app itself) not meshed
DETECT_MS = 300  # the server proxies' detect timeout: a silent client is plaintext after it
GREETING = b"5.7.0-mysql greeting\n"
SECRET = b"turnout-secret-payload"


def service(
    name: str, vip: tuple[str, int], port: int, identity: str | None, *, opaque: bool
) -> str:
    """A Service at `vip` whose one endpoint is 127.0.0.1:`port`, meshed as `identity`
    (None: not meshed)."""
    ann = {"config.linkerd.io/opaque-ports": str(vip[1])} if opaque else {}
    meshed = {"identity.turnout.dev/name": identity} if identity is not None else {}
    docs = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": NS, "annotations": ann},
            "spec": {"clusterIP": vip[0], "ports": [{"name": "tcp", "port": vip[1]}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-a",
                "namespace": NS,
                "labels": {"kubernetes.io/service-name": name},
                "annotations": meshed,
            },
            "addressType": "IPv4",
            "ports": [{"name": "tcp", "port": port}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        },
    ]
    return "\n---\n".join(json.dumps(d) for d in docs)


def policy(port: int, allowed: str) -> str:
    """STRICT, and only service account `allowed` may connect to `port`."""
    return f"""
apiVersion: policy.linkerd.io/v1beta1
kind: Server
metadata: {{name: app, namespace: {NS}}}
spec:
  podSelector: {{matchLabels: {{app: api}}}}
  port: {port}
---
apiVersion: policy.linkerd.io/v1beta1
kind: ServerAuthorization
metadata: {{name: app-{allowed}, namespace: {NS}}}
spec:
  server: {{name: app}}
  client:
    meshTLS:
      serviceAccounts: [{{name: {allowed}, namespace: {NS}}}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: strict, namespace: {NS}}}
spec:
  mtls: {{mode: STRICT}}
"""


def open_policy(port: int) -> str:
    """PERMISSIVE (no PeerAuthentication), and any client, meshed or not, may connect."""
    return f"""
apiVersion: policy.linkerd.io/v1beta3
kind: Server
metadata: {{name: app, namespace: {NS}}}
spec:
  podSelector: {{matchLabels: {{app: api}}}}
  port: {port}
  accessPolicy: all-unauthenticated
"""


@dataclass
class Wire:
    """A TCP relay between the proxies recording every byte it carries."""

    target: int
    seen: bytearray = field(default_factory=bytearray)
    server: asyncio.Server | None = None

    async def start(self) -> int:
        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    self.seen += data
                    w.write(data)
                    await w.drain()
            finally:
                w.close()

        async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                ur, uw = await asyncio.open_connection("127.0.0.1", self.target)
            except OSError:
                w.close()
                return
            await asyncio.gather(pipe(r, uw), pipe(ur, w), return_exceptions=True)

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening (its socket would otherwise be left for the collector)."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


class Greeter:
    """Server-first (a MySQL-like greeting on accept), then echoes one line."""

    def __init__(self) -> None:
        self.accepted = 0

    async def __call__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        w.write(GREETING)
        await w.drain()
        w.write(b"echo " + await r.readline())
        await w.drain()
        w.close()


@dataclass
class Lab:
    client: Proxy
    grpc_side: Proxy
    db_side: Proxy
    greeter: Greeter
    wire: Wire
    peers: list[str]
    tmp: Path

    @property
    def outbound(self) -> int:
        return self.client.port_of(self.client.servers[0])


class Redirect:
    to: tuple[str, int] | None = None


@pytest.fixture
def redirect(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Redirect]]:
    monkeypatch.setattr(detect, "original_dst", lambda sock: Redirect.to)
    yield Redirect
    Redirect.to = None


def server_config(ca: Ca, app_port: int, *, opaque: bool) -> ProxyConfig:
    return ProxyConfig(
        namespace=NS,
        workload_name="api",
        inbound=ANY,
        app=Address(host="127.0.0.1", port=app_port),
        admin=ANY,
        labels=(("app", "api"),),
        opaque_ports=((app_port, app_port),) if opaque else (),
        identity=IdentityConfig(
            name=API,
            token_file=str(ca.token_file("api")),
            addr=ca.target,
            detect_timeout_ms=DETECT_MS,
        ),
    )


@pytest.fixture
async def lab(tmp_path: Path, redirect: type[Redirect]) -> AsyncIterator[Lab]:
    peers: list[str] = []

    async def hello(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        peers.append(context.peer())
        return b"hello " + request

    g = grpc.aio.server()
    g.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Greeter", {"Hello": grpc.unary_unary_rpc_method_handler(hello)}
            ),
        )
    )
    grpc_port = g.add_insecure_port("127.0.0.1:0")
    await g.start()
    greeter = Greeter()
    db = await asyncio.start_server(greeter, "127.0.0.1", 0)
    db_port = int(db.sockets[0].getsockname()[1])
    procs: list[tuple[Proxy, asyncio.Task[None]]] = []
    wire: Wire | None = None
    async with identity_service(tmp_path) as ca:
        try:
            grpc_side = await run_proxy(
                server_config(ca, grpc_port, opaque=False), RuntimeTable.from_xds((), ())
            )
            procs.append(grpc_side)
            db_side = await run_proxy(
                server_config(ca, db_port, opaque=True), RuntimeTable.from_xds((), ())
            )
            procs.append(db_side)
            for (proxy, _), port in ((grpc_side, grpc_port), (db_side, db_port)):
                proxy.apply_policy(served_policy(tmp_path, policy(port, "web")), "1")  # type: ignore[arg-type]
            wire = Wire(grpc_side[0].port_of(grpc_side[0].servers[0]))
            db_inbound = db_side[0].port_of(db_side[0].servers[0])
            runtime = table(
                tmp_path,
                [
                    service("grpc", GRPC, await wire.start(), API, opaque=False),
                    service("mysql", MYSQL, db_inbound, API, opaque=True),
                    service("wrong", WRONG, db_inbound, DB, opaque=True),
                    service("plain", PLAIN, db_port, None, opaque=True),
                ],
            )
            client = await run_proxy(
                ProxyConfig(
                    namespace=NS,
                    workload_name="web",
                    outbound=ANY,
                    admin=ANY,
                    transparent=True,
                    require_mtls=True,  # meshed endpoints only
                    identity=IdentityConfig(
                        name=WEB, token_file=str(ca.token_file("web")), addr=ca.target
                    ),
                ),
                runtime,
            )
            procs.append(client)
            yield Lab(client[0], grpc_side[0], db_side[0], greeter, wire, peers, tmp_path)
        finally:
            for proxy, task in reversed(procs):
                await stop_proxy(proxy, task)
            if wire is not None:
                await wire.close()
            await g.stop(None)
            db.close()
            await db.wait_closed()


async def until(check: object, proxy: Proxy, name: str, want: int, **labels: str) -> str:
    """The proxy's metrics once `name{labels}` reaches `want` (connections close a moment
    after the client sees them close)."""
    async with asyncio.timeout(5):
        while metric(text := proxy.metrics.render(), name, **labels) < want:
            await asyncio.sleep(0.01)
    return text


@bounded(20)
async def test_grpc_through_transparent_proxies_is_mtls_end_to_end_no_plaintext_on_the_wire(
    lab: Lab, redirect: type[Redirect]
) -> None:
    redirect.to = GRPC
    async with grpc.aio.insecure_channel(f"127.0.0.1:{lab.outbound}") as channel:
        call = channel.unary_unary("/test.Greeter/Hello")
        assert await call(SECRET, timeout=5) == b"hello " + SECRET
    # the app was called by the server proxy (its connection, not the client's)
    assert len(lab.peers) == 1 and lab.peers[0].startswith("ipv4:127.0.0.1:")
    # the wire between the proxies: TLS records only, no HTTP/2 preface, no payload
    seen = bytes(lab.wire.seen)
    assert seen[:3] == b"\x16\x03\x01" and len(seen) > 1000
    for plain in (SECRET, b"PRI * HTTP/2.0", b"test.Greeter", b"hello"):
        assert plain not in seen
    # an HTTP/2 preface to a known destination is served per request now (ALPN h2 on mesh
    # TLS, `H2Pool`), not forwarded as TCP: each side counts the call with its gRPC status
    mine = {"tls": "true", "client_id": WEB, "grpc_status": "0"}
    await until(None, lab.grpc_side, "response_total", 1, direction="inbound", **mine)
    out = {"direction": "outbound", "tls": "true", "server_id": API, "grpc_status": "0"}
    text = await until(None, lab.client, "response_total", 1, **out)
    assert metric(text, "tcp_open_total", direction="outbound", dst_service="grpc") == 0


@bounded(20)
async def test_opaque_server_first_is_mtls_and_a_denied_identity_is_reset(
    lab: Lab, redirect: type[Redirect], tmp_path: Path
) -> None:
    redirect.to = MYSQL
    reader, writer = await asyncio.open_connection("127.0.0.1", lab.outbound)
    assert await asyncio.wait_for(reader.readline(), 2) == GREETING  # no detection wait
    writer.write(b"select 1\n")
    assert await reader.readline() == b"echo select 1\n"
    writer.close()
    mine = {"direction": "inbound", "tls": "true", "client_id": WEB}
    text = await until(None, lab.db_side, "tcp_close_total", 1, **mine)
    assert metric(text, "tcp_write_bytes_total", **mine) == len(GREETING + b"echo select 1\n")
    assert metric(text, "inbound_tcp_authz_allow_total", tls="true", client_id=WEB) == 1
    # only `ingress` may connect now: web's connection is reset, counted, never reaches the app
    db_port = lab.db_side.config.app.port  # type: ignore[union-attr]
    lab.db_side.apply_policy(served_policy(tmp_path, policy(db_port, "ingress"), "2"), "2")  # type: ignore[arg-type]
    accepted = lab.greeter.accepted
    reader, writer = await asyncio.open_connection("127.0.0.1", lab.outbound)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    writer.close()
    text = await until(None, lab.db_side, "inbound_tcp_authz_deny_total", 1, client_id=WEB)
    assert metric(text, "inbound_tcp_authz_deny_total", tls="true", client_id=WEB) == 1
    assert lab.greeter.accepted == accepted


@bounded(20)
async def test_a_server_of_another_identity_is_reset_before_any_byte(
    lab: Lab, redirect: type[Redirect]
) -> None:
    redirect.to = WRONG  # its endpoint is the db proxy, whose certificate names API, not DB
    accepted = lab.greeter.accepted
    reader, writer = await asyncio.open_connection("127.0.0.1", lab.outbound)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    writer.close()
    text = await until(None, lab.client, "tcp_close_total", 1, errno="EPROTO", server_id=DB)
    assert metric(text, "tcp_open_total", dst_service="wrong", tls="true", server_id=DB) == 1
    assert lab.greeter.accepted == accepted
    assert metric(lab.db_side.metrics.render(), "tcp_open_total", direction="inbound") == 0


@bounded(20)
async def test_an_unmeshed_client_of_an_opaque_port_is_plaintext_once_the_detect_timeout_passes(
    lab: Lab, tmp_path: Path
) -> None:
    """An opaque port of a proxy with an identity still peeks for mesh TLS (a meshed client's
    ClientHello comes at once): a silent client, a server-first protocol's, is plaintext once
    the detect timeout passes, then reset (STRICT) or forwarded (PERMISSIVE)."""
    loop = asyncio.get_running_loop()
    inbound = lab.db_side.port_of(lab.db_side.servers[0])
    accepted = lab.greeter.accepted
    # STRICT (the lab's policy): reset, counted, nothing reaches the app
    reader, writer = await asyncio.open_connection("127.0.0.1", inbound)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    writer.close()
    await until(None, lab.db_side, "inbound_tcp_authz_deny_total", 1)
    assert lab.greeter.accepted == accepted
    # PERMISSIVE: the greeting, after the detect timeout, then bytes both ways, in plaintext
    db_port = lab.db_side.config.app.port  # type: ignore[union-attr]
    lab.db_side.apply_policy(served_policy(tmp_path, open_policy(db_port), "2"), "2")  # type: ignore[arg-type]
    started = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", inbound)
    assert await asyncio.wait_for(reader.readline(), 5) == GREETING
    assert loop.time() - started >= DETECT_MS / 1000
    writer.write(b"select 1\n")
    assert await reader.readline() == b"echo select 1\n"
    writer.close()
    plain = {"direction": "inbound", "tls": "no_identity", "no_tls_reason": "no_tls_from_remote"}
    text = await until(None, lab.db_side, "tcp_close_total", 1, **plain)
    assert metric(text, "tcp_read_bytes_total", **plain) == len(b"select 1\n")
    assert metric(text, "tcp_open_total", direction="inbound", tls="true") == 0
    assert lab.greeter.accepted == accepted + 1


@bounded(20)
async def test_require_mtls_resets_forwarded_tcp_to_an_unmeshed_endpoint_before_a_connect(
    lab: Lab, redirect: type[Redirect]
) -> None:
    """The client proxy runs with ``--require-mtls``: the tests above show its meshed
    endpoints are reached over mTLS; an endpoint without an identity is never connected."""
    redirect.to = PLAIN
    accepted = lab.greeter.accepted
    reader, writer = await asyncio.open_connection("127.0.0.1", lab.outbound)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    writer.close()
    await asyncio.sleep(0.1)  # a connect the proxy made would have been accepted by now
    assert lab.greeter.accepted == accepted
    text = lab.client.metrics.render()
    assert metric(text, "tcp_open_total", dst_service="plain") == 0
