"""`mesh proxy --transparent` outbound to known destinations that are not HTTP/1: opaque
Service ports, and protocol detection (HTTP/1 and the HTTP/2 preface served as HTTP; TLS and
anything else forwarded as TCP).

Real sockets on 127.0.0.1; what iptables would do is faked by one seam only: each accepted
connection's original destination is the test's `Redirect.to` (`detect.original_dst`), so
no root is needed. The redirected path itself runs for real in
`tests/cluster/capture/test_netns.py`."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator

import grpc
import pytest

from tests.certs import Authority
from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import NS, bounded, metric, start_mesh
from turnout.proxy.transparent import outbound_place
from turnout.proxy.transport import detect
from turnout.proxy.transport.detect import first_bytes

DB = ("127.0.0.41", 3306)  # opaque: the Service's annotation
RAW = ("127.0.0.42", 7000)  # unmarked, a client-first binary protocol
TLS = ("127.0.0.43", 443)  # unmarked, the app's own TLS
GRPC = ("127.0.0.44", 50051)  # unmarked, HTTP/2 with prior knowledge
WEB = ("127.0.0.45", 80)  # unmarked, HTTP/1 with a route splitting 3:1
GREETING = b"5.7.0-mysql greeting\n"


def service(name: str, ip_port: tuple[str, int], port: int, *, opaque: bool = False) -> str:
    """A Service at `ip_port` whose one endpoint is 127.0.0.1:`port`."""
    note = f"annotations: {{config.linkerd.io/opaque-ports: '{ip_port[1]}'}}" if opaque else ""
    return f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {NS}, {note}}}
spec: {{clusterIP: {ip_port[0]}, ports: [{{name: tcp, port: {ip_port[1]}}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-a, namespace: {NS}, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: tcp, port: {port}}}]
endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]"""


SPLIT = f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: {NS}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: web, port: 80}}]
  rules: [{{backendRefs: [{{name: v1, port: 80, weight: 3}}, {{name: v2, port: 80, weight: 1}}]}}]
"""


class Redirect:
    """The original destination every accepted connection reports (None: not redirected)."""

    to: tuple[str, int] | None = None


@pytest.fixture
def redirect(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Redirect]]:
    monkeypatch.setattr(detect, "original_dst", lambda sock: Redirect.to)
    yield Redirect
    Redirect.to = None


async def greeter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Server-first: greets on accept, then echoes one line."""
    writer.write(GREETING)
    await writer.drain()
    writer.write(b"echo " + await reader.readline())
    await writer.drain()
    writer.close()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"got " + await reader.read(64))
    await writer.drain()
    writer.close()


async def serve(handler: object, ctx: ssl.SSLContext | None = None) -> asyncio.Server:
    return await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ctx)  # type: ignore[arg-type]


def port_of(server: asyncio.Server | int) -> int:
    return server if isinstance(server, int) else int(server.sockets[0].getsockname()[1])


async def grpc_server() -> grpc.aio.Server:
    async def hello(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return b"hello " + request

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "test.Greeter", {"Hello": grpc.unary_unary_rpc_method_handler(hello)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.port = server.add_insecure_port("127.0.0.1:0")  # type: ignore[attr-defined]
    await server.start()
    return server


@pytest.mark.parametrize(
    ("head", "found"),
    [
        (b"GET / HTTP/1.1\r\n", "http1"),
        (b"PO", None),  # too few to tell: "POST" or the HTTP/2 preface
        (b"PRI * HTTP/2.0\r\n", "h2"),
        (b"\x16\x03\x01\x02\x00\x01", "tls"),
        (b"\x16", None),
        (b"\x00\x01binary", "other"),
        (b"ABCDEFGHIJKLMNOPQ", "other"),  # no space in the first 16 bytes
    ],
)
def test_first_bytes_tell_the_protocol(head: bytes, found: str | None) -> None:
    assert first_bytes(head) == found


@bounded(30)
async def test_known_destinations_that_are_not_http1_are_forwarded_to_an_endpoint(
    lab: Lab, redirect: type[Redirect]
) -> None:
    ca = Authority()
    leaf = ca.leaf("tls.shop")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert, key = lab.tmp / "tls.crt", lab.tmp / "tls.key"
    cert.write_bytes(leaf.chain_pem)
    key.write_bytes(leaf.key_pem)
    server_ctx.load_cert_chain(cert, key)
    db, raw, tls = await serve(greeter), await serve(echo), await serve(echo, server_ctx)
    g = await grpc_server()
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    docs = [
        service("db", DB, port_of(db), opaque=True),
        service("raw", RAW, port_of(raw)),
        service("tls", TLS, port_of(tls)),
        service("grpc", GRPC, g.port),  # type: ignore[attr-defined]
        service("web", WEB, v1.port),
        service("v1", ("127.0.0.46", 80), v1.port),
        service("v2", ("127.0.0.47", 80), v2.port),
        SPLIT,
    ]
    table = lab.compile({}, "\n---\n".join(docs))
    tcp = table.destinations.tcp
    assert (tcp[DB].opaque, tcp[DB].cluster) == (True, f"{NS}/db:3306")
    assert not tcp[RAW].opaque
    mesh = await start_mesh(table, transparent=True)
    lab.meshes.append(mesh)
    try:
        # opaque: the server speaks first, and its greeting arrives at once (no detection)
        redirect.to = DB
        reader, writer = await asyncio.open_connection("127.0.0.1", mesh.outbound)
        assert await asyncio.wait_for(reader.readline(), 2) == GREETING
        writer.write(b"select 1\n")
        assert await reader.read() == b"echo select 1\n"
        writer.close()
        # a client-first protocol on an unmarked port: detected as not HTTP, forwarded
        redirect.to = RAW
        reader, writer = await asyncio.open_connection("127.0.0.1", mesh.outbound)
        writer.write(b"\x00\x01binary")
        assert await reader.read() == b"got \x00\x01binary"
        writer.close()
        # the app's own TLS, end to end: the handshake checks the backend's certificate
        redirect.to = TLS
        client_ctx = ssl.create_default_context(cadata=ca.ca_pem.decode())
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", mesh.outbound, ssl=client_ctx, server_hostname="tls.shop"
        )
        writer.write(b"secret")
        assert await reader.read() == b"got secret"
        writer.close()
        # HTTP/2 with prior knowledge (gRPC): served as HTTP/2 per request (the Service's
        # routes, HTTP/2 to its endpoint), not forwarded as TCP
        redirect.to = GRPC
        async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.outbound}") as channel:
            call = channel.unary_unary("/test.Greeter/Hello")
            assert await call(b"mesh", timeout=5) == b"hello mesh"
        # HTTP/1: the Service's routes, split 3:1
        redirect.to = WEB
        seen = [(await mesh.get("anything", "/echo"))[1].get("x-backend") for _ in range(40)]
        assert set(seen) == {"v1", "v2"} and seen.count("v1") > seen.count("v2")
        # tcp_* metrics: the forwarded connections, labelled with their Service
        redirect.to = None
        text = await mesh.metrics()
        for svc, (ip, port) in (("db", DB), ("raw", RAW), ("tls", TLS)):
            labels = {"direction": "outbound", "peer": "src", "dst_service": svc}
            assert metric(text, "tcp_open_total", **labels, target_addr=f"{ip}:{port}") == 1
            assert metric(text, "tcp_close_total", **labels) == 1
        assert metric(text, "tcp_read_bytes_total", dst_service="db") == len(b"select 1\n")
        assert metric(text, "tcp_open_total", dst_service="grpc") == 0
        grpc_ok = {"direction": "outbound", "grpc_status": "0", "classification": "success"}
        assert metric(text, "response_total", **grpc_ok) == 1
        # --opaque-ports makes a port opaque for every known destination; --require-mtls
        # refuses plaintext TCP to an endpoint
        handler = mesh.proxy.handlers[0]
        place = outbound_place(handler, refuse_unknown=False, opaque_ports=((7000, 7000),))
        raw_placed, web_placed = place(RAW), place(WEB)
        assert raw_placed is not None and raw_placed.upstream is not None
        assert not raw_placed.detect
        assert web_placed is not None and web_placed.detect
        strict = outbound_place(handler, refuse_unknown=False, require_mtls=True)(DB)
        assert strict is not None and strict.upstream is not None
        assert strict.upstream.acquire() is None
    finally:
        await g.stop(None)
        for s in (db, raw, tls):
            s.close()
