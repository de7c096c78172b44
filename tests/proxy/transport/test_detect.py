"""TLS detection on one inbound port, on asyncio's loop AND uvloop (the probe the design
rests on: uvloop's server-side `start_tls` is broken, peeking then
`connect_accepted_socket` is not). Real certificates, real TLS, real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import ssl
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from tests.certs import Authority, Leaf
from tests.proxy.transport.helpers import read_response
from turnout.proxy.identity.names import peer_identity
from turnout.proxy.transport.detect import (
    DetectingServer,
    client_hello_sni,
    is_client_hello,
    serve_detecting,
)
from turnout.proxy.transport.messages import ConnectionInfo, IncomingRequest, ResponseWriter

WEB = "web.shop.serviceaccount.identity.cluster.local"
API = "api.shop.serviceaccount.identity.cluster.local"
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def _load(ctx: ssl.SSLContext, leaf: Leaf) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "pair.pem"
        p.write_bytes(leaf.chain_pem + leaf.key_pem)
        ctx.load_cert_chain(p)


class Mesh:
    """A `MeshTls` from test certificates: the server is `API`."""

    def __init__(self, ca: Authority) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        _load(ctx, ca.leaf(API))
        ctx.load_verify_locations(cadata=ca.ca_pem.decode())
        ctx.verify_mode = ssl.CERT_OPTIONAL
        self.server_context: ssl.SSLContext | None = ctx
        self.client_context: ssl.SSLContext | None = None
        self.identity = API

    def peer_identity(self, ssl_object: object) -> str:
        return peer_identity(ssl_object)


def client_context(ca: Authority, leaf: Leaf | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca.ca_pem.decode())
    if leaf is not None:
        _load(ctx, leaf)
    return ctx


async def echo(req: IncomingRequest, writer: ResponseWriter) -> None:
    seen = {
        "client_id": req.client_id,
        "header": [v.decode() for n, v in req.raw_headers if n.lower() == b"l5d-client-id"],
    }
    await writer.respond(200, [("content-type", "application/json")], json.dumps(seen).encode())


async def ask(port: int, ctx: ssl.SSLContext | None, *, forged: bool = False) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname=API if ctx else None
    )
    extra = b"l5d-client-id: root.evil.serviceaccount.identity.cluster.local\r\n" if forged else b""
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: api\r\n" + extra + b"\r\n")
        status, _, body = await read_response(reader)
    finally:
        writer.close()
    assert status == 200
    return dict(json.loads(body))


def run(loop: str, coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(asyncio.wait_for(coro(), 20))


def test_client_hello_bytes() -> None:
    assert is_client_hello(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]))
    assert not is_client_hello(b"GET / ")
    assert not is_client_hello(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x02]))  # ServerHello


@pytest.mark.parametrize("loop", LOOPS)
def test_tls_and_plaintext_share_the_port_and_only_tls_carries_an_identity(loop: str) -> None:
    ca = Authority()

    async def main() -> None:
        server = await serve_detecting(echo, host="127.0.0.1", port=0, mesh=Mesh(ca))
        port = server.sockets[0].getsockname()[1]
        try:
            mtls = await ask(port, client_context(ca, ca.leaf(WEB)), forged=True)
            assert mtls == {"client_id": WEB, "header": [WEB]}
            anonymous = await ask(port, client_context(ca, None), forged=True)
            assert anonymous == {"client_id": "", "header": []}
            plain = await ask(port, None, forged=True)
            assert plain == {"client_id": "", "header": []}
        finally:
            server.close()
            await server.wait_closed()

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_client_certificate_of_another_ca_fails_the_handshake(loop: str) -> None:
    ca, other = Authority(), Authority("other CA")

    async def main() -> None:
        server = await serve_detecting(echo, host="127.0.0.1", port=0, mesh=Mesh(ca))
        port = server.sockets[0].getsockname()[1]
        try:
            ctx = client_context(ca, other.leaf(WEB))
            with pytest.raises((ssl.SSLError, ConnectionResetError, asyncio.IncompleteReadError)):
                await ask(port, ctx)
            assert (await ask(port, None))["client_id"] == ""  # the port still serves
        finally:
            server.close()
            await server.wait_closed()

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_silent_client_is_served_as_plaintext_after_the_detect_timeout(loop: str) -> None:
    ca = Authority()

    async def main() -> None:
        server = await serve_detecting(
            echo, host="127.0.0.1", port=0, mesh=Mesh(ca), detect_timeout_ms=100
        )
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.sleep(0.3)  # past the timeout: plaintext from here
            writer.write(b"GET / HTTP/1.1\r\nHost: api\r\n\r\n")
            status, _, _ = await read_response(reader)
            assert status == 200
            writer.close()
        finally:
            server.close()
            await server.wait_closed()

    run(loop, main)


def test_without_a_certificate_yet_tls_is_refused_and_plaintext_served() -> None:
    ca = Authority()

    async def main() -> None:
        mesh = Mesh(ca)
        mesh.server_context = None
        server: DetectingServer = await serve_detecting(echo, host="127.0.0.1", port=0, mesh=mesh)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises((ssl.SSLError, ConnectionResetError, asyncio.IncompleteReadError)):
                await ask(port, client_context(ca, ca.leaf(WEB)))
            assert (await ask(port, None))["client_id"] == ""
        finally:
            server.close()
            await server.wait_closed()

    run("asyncio", main)


@pytest.mark.parametrize("loop", LOOPS)
def test_tls_for_another_server_name_is_the_apps_own_and_passes_through(loop: str) -> None:
    """Linkerd's SNI rule: a ClientHello naming this proxy's identity is mesh TLS, any other
    name is the app's own TLS, forwarded untouched to the app (here its own HTTPS)."""
    ca = Authority()

    async def app_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"app saw " + await reader.read(5))
        await writer.drain()
        writer.close()

    async def main() -> None:
        app_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        _load(app_ctx, ca.leaf("app.shop"))
        app = await asyncio.start_server(app_tls, "127.0.0.1", 0, ssl=app_ctx)
        app_port = app.sockets[0].getsockname()[1]
        seen: list[tuple[str, str, str]] = []

        class Hooks:
            def on_connection_open(self, conn: ConnectionInfo) -> None:
                seen.append(conn.tls_status)

            def on_connection_close(self, conn: ConnectionInfo, error: object) -> None:
                pass

        server = await serve_detecting(
            echo,
            host="127.0.0.1",
            port=0,
            mesh=Mesh(ca),
            app=("127.0.0.1", app_port),
            hooks=Hooks(),  # type: ignore[arg-type]
        )
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context(ca, None), server_hostname="app.shop"
            )
            writer.write(b"hello")
            assert await reader.read() == b"app saw hello"  # the app's certificate, verified
            writer.close()
            assert seen[0] == ("opaque", "sni", "app.shop")  # tls="opaque",sni="app.shop"
            # the proxy's own identity as the SNI: mesh TLS, terminated and served as HTTP
            assert (await ask(port, client_context(ca, ca.leaf(WEB))))["client_id"] == WEB
        finally:
            server.close()
            await server.wait_closed()
            app.close()

    run(loop, main)


def test_client_hello_sni_reads_the_server_name_extension() -> None:
    def hello(name: str | None) -> bytes:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=name)
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        return outgoing.read()

    assert client_hello_sni(hello("app.shop")) == "app.shop"
    assert client_hello_sni(hello(None)) is None
    assert client_hello_sni(hello("app.shop")[:40]) is None  # truncated
