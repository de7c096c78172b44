"""Outbound mesh TLS on real sockets: the TLS labels of the request metrics and tap (Linkerd's,
in Linkerd's order), ``--require-mtls`` failing closed and ``l5d-require-id``.

client -> proxy with --identity web (outbound) -> server proxy (--identity api, inbound) -> app,
and a plaintext backend that is a raw socket server counting the connections it accepts:
when mTLS is required and not possible it must see none."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import bounded
from tests.proxy.identity.kit import API, WEB, Ca, identity_service
from tests.proxy.identity.test_mtls_e2e import ANY, DB, NS, run_proxy, service, table
from turnout.proxy.process import Address, IdentityConfig, ProxyConfig
from turnout.proxy.runner import Proxy, stop_proxy
from turnout.proxy.table import RuntimeTable
from turnout.proxy.tap import TapFilter

API_HOST = "api.shop.svc.cluster.local"
BARE_HOST = "bare.shop.svc.cluster.local"
WRONG_HOST = "wrong.shop.svc.cluster.local"


@dataclass
class Counting:
    """A plaintext HTTP server on a raw socket: counts accepted connections, answers 200."""

    accepted: int = 0
    server: asyncio.Server | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nplain")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        for w in self.writers:
            w.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@dataclass
class Lab:
    ca: Ca
    app: Backend
    bare: Counting
    server: Proxy
    strict: Proxy
    """--identity web --require-mtls"""
    client: Proxy
    """--identity web"""
    plain: Proxy
    """no identity"""
    session: aiohttp.ClientSession

    async def via(
        self, proxy: Proxy, host: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        port = proxy.port_of(proxy.servers[0])
        hdrs = {"Host": host, **(headers or {})}
        async with self.session.get(f"http://127.0.0.1:{port}/", headers=hdrs) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    async def metrics(self, proxy: Proxy) -> str:
        assert proxy.admin is not None
        port = proxy.admin.addresses[0][1]
        async with self.session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            return await resp.text()


def _identity(ca: Ca, name: str, sa: str) -> IdentityConfig:
    return IdentityConfig(name=name, token_file=str(ca.token_file(sa)), addr=ca.target)


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    async with identity_service(tmp_path) as ca:
        app = await Backend("api").start()
        bare = Counting()
        bare_port = await bare.start()
        procs: list[tuple[Proxy, asyncio.Task[None]]] = []
        try:
            server = await run_proxy(
                ProxyConfig(
                    namespace=NS,
                    workload_name="api",
                    inbound=ANY,
                    app=Address(host="127.0.0.1", port=app.port),
                    admin=ANY,
                    identity=_identity(ca, API, "api"),
                ),
                RuntimeTable.from_xds((), ()),
            )
            procs.append(server)
            port = server[0].port_of(server[0].servers[0])
            runtime = table(
                tmp_path,
                [service("api", port, API), service("wrong", port, DB), service("bare", bare_port, None)],
            )  # fmt: skip

            async def outbound(name: str, **extra: object) -> Proxy:
                config = ProxyConfig(
                    namespace=NS, workload_name=name, outbound=ANY, admin=ANY, **extra
                )  # type: ignore[arg-type]
                procs.append(await run_proxy(config, runtime))
                return procs[-1][0]

            strict = await outbound("web", identity=_identity(ca, WEB, "web"), require_mtls=True)
            client = await outbound("web2", identity=_identity(ca, WEB, "web"))
            plain = await outbound("old")
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                yield Lab(ca, app, bare, server[0], strict, client, plain, session)
        finally:
            for proxy, task in reversed(procs):
                await stop_proxy(proxy, task)
            await bare.stop()
            await app.stop()


def series(text: str, name: str, **labels: str) -> list[str]:
    """The label strings of `name`'s samples that have all of `labels`."""
    out = []
    for m in re.finditer(rf"^{re.escape(name)}\{{(.*)\}} \S+$", text, re.MULTILINE):
        if all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            out.append(m.group(1))
    return out


@bounded(30)
async def test_require_mtls_answers_502_and_opens_no_connection_to_an_unmeshed_endpoint(
    lab: Lab,
) -> None:
    status, headers, body = await lab.via(lab.strict, BARE_HOST)
    assert status == 502, body
    assert headers["l5d-proxy-error"] == "endpoint not meshed"
    assert b"no identity" in body
    assert lab.bare.accepted == 0
    # a meshed endpoint is served as usual, over mTLS
    status, _, body = await lab.via(lab.strict, API_HOST)
    assert status == 200, body
    assert lab.strict.pool.idle_count(("127.0.0.1", lab.server.port_of(lab.server.servers[0])), API) == 1  # fmt: skip
    # the proxy without --require-mtls does reach the plaintext endpoint
    status, _, body = await lab.via(lab.client, BARE_HOST)
    assert (status, body) == (200, b"plain")
    assert lab.bare.accepted == 1
    text = await lab.metrics(lab.strict)
    assert series(text, "response_total", error="EndpointNotMeshed", status_code="502")


@bounded(30)
async def test_l5d_require_id_is_honoured_and_never_forwarded(lab: Lab) -> None:
    status, _, body = await lab.via(lab.client, API_HOST, {"l5d-require-id": API})
    assert status == 200, body
    assert "l5d-require-id" not in {k.lower() for k in lab.app.seen[-1]["headers"]}  # type: ignore[union-attr]
    hits = lab.app.total
    status, headers, body = await lab.via(lab.client, API_HOST, {"l5d-require-id": DB})
    assert status == 502 and headers["l5d-proxy-error"] == "endpoint identity mismatch", body
    assert DB.encode() in body and API.encode() in body
    assert lab.app.total == hits
    status, headers, _ = await lab.via(lab.client, BARE_HOST, {"l5d-require-id": API})
    assert status == 502 and headers["l5d-proxy-error"] == "endpoint not meshed"
    assert lab.bare.accepted == 0
    # a proxy without an identity cannot prove anything: 502, nothing sent
    status, headers, _ = await lab.via(lab.plain, BARE_HOST, {"l5d-require-id": API})
    assert status == 502 and headers["l5d-proxy-error"] == "mesh tls disabled"
    assert lab.bare.accepted == 0


@bounded(30)
async def test_tls_labels_on_request_metrics_in_linkerd_order(lab: Lab) -> None:
    for host in (API_HOST, BARE_HOST):
        status, _, _ = await lab.via(lab.client, host)
        assert status == 200
    inbound = lab.server.port_of(lab.server.servers[0])
    async with lab.session.get(f"http://127.0.0.1:{inbound}/", headers={"Host": API_HOST}):
        pass  # plaintext straight to the server proxy's inbound port
    status, _, _ = await lab.via(lab.plain, API_HOST)
    assert status == 200

    text = await lab.metrics(lab.client)
    [meshed] = series(text, "request_total", authority=API_HOST)
    assert re.search(
        rf'target_port="{inbound}",tls="true",server_id="{re.escape(API)}",dst_namespace="shop"',
        meshed,
    ), meshed
    [bare] = series(text, "response_total", authority=BARE_HOST)
    assert 'tls="no_identity",no_tls_reason="not_provided_by_service_discovery",dst_' in bare
    text = await lab.metrics(lab.plain)
    [old] = series(text, "request_total", direction="outbound")
    assert re.search(r'target_port="\d+",tls="disabled",dst_namespace=', old), old

    text = await lab.metrics(lab.server)
    got = series(text, "request_total", direction="inbound")
    assert len(got) == 2, got  # from the meshed proxy (mTLS) and from plaintext clients
    assert any(f'tls="true",client_id="{WEB}"' in s for s in got), got
    assert any('tls="no_identity",no_tls_reason="no_tls_from_remote"' in s for s in got), got
    assert series(text, "response_latency_ms_count", tls="true", client_id=WEB)


@bounded(30)
async def test_tap_prints_the_tls_status(lab: Lab) -> None:
    with lab.client.tap.subscribe(TapFilter()) as sub, lab.server.tap.subscribe(TapFilter()) as inb:
        for host in (API_HOST, BARE_HOST):
            status, _, _ = await lab.via(lab.client, host)
            assert status == 200
        out = [await sub.get() for _ in range(6)]
        tls = {(e.authority, e.tls) for e in out if e is not None}
        assert tls == {(API_HOST, "true"), (BARE_HOST, "not_provided_by_service_discovery")}
        first = await inb.get()
        assert first is not None and first.tls == "true"
