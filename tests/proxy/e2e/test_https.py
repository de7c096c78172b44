"""HTTPS Gateway listeners on the wire: a real `ssl` client against the proxy's real TLS.

The Gateway `public` has three HTTPS listeners on port 443 (www.example.com, *.example.com,
and, in some tables, one without a hostname) and an HTTP listener on port 80 that redirects
to HTTPS. Each listener's certificate is a real one (`tests/certs.py`); which certificate a
connection got is read from the handshake (its serial number)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from cryptography import x509

from tests.certs import Authority, Leaf, secret_yaml
from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import (
    Endpoint,
    Mesh,
    bounded,
    dead_port,
    service_yaml,
    start_cli_proxy,
    start_mesh,
    wait_admin_ready,
)
from tests.proxy.transport.helpers import read_response
from tests.support.h2client import H2Client
from turnout.proxy.table import RuntimeTable

GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: turnout}}
spec: {{controllerName: turnout.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: public, namespace: shop}}
spec:
  gatewayClassName: turnout
  listeners:
  - name: www
    protocol: HTTPS
    port: 443
    hostname: www.example.com
    tls: {{mode: Terminate, certificateRefs: [{{name: www-cert}}]}}
  - name: wild
    protocol: HTTPS
    port: 443
    hostname: "*.example.com"
    tls: {{mode: Terminate, certificateRefs: [{{name: {wild_secret}}}]}}
{extra_listener}
  - {{name: http, protocol: HTTP, port: 80, hostname: "*.example.com"}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: www, namespace: shop}}
spec:
  parentRefs: [{{name: public, sectionName: www}}]
  hostnames: [www.example.com]
  rules:
  - backendRefs: [{{name: web-v1, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: api, namespace: shop}}
spec:
  parentRefs: [{{name: public, sectionName: wild}}]
  rules:
  - backendRefs: [{{name: web-v2, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: to-https, namespace: shop}}
spec:
  parentRefs: [{{name: public, sectionName: http}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /tls-port}}}}]
    filters: [{{type: RequestRedirect, requestRedirect: {{scheme: https, port: 8443}}}}]
  - filters: [{{type: RequestRedirect, requestRedirect: {{scheme: https, statusCode: 301}}}}]
"""

UNNAMED = """\
  - name: any
    protocol: HTTPS
    port: 443
    tls: {mode: Terminate, certificateRefs: [{name: any-cert}]}"""


class Certs:
    def __init__(self) -> None:
        self.ca = Authority()
        self.www = self.ca.leaf("www.example.com")
        self.wild = self.ca.leaf("*.example.com", "*.b.example.com")
        self.any = self.ca.leaf("gateway.internal")

    def client(self, *, verify: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.ca.ca_pem.decode())
        if not verify:
            ctx.check_hostname = False
        return ctx


def table(
    lab: Lab,
    certs: Certs,
    *,
    www: Leaf | None = None,
    wild_secret: str = "wild-cert",
    unnamed: bool = False,
    services: Mapping[str, Sequence[Endpoint]],
) -> RuntimeTable:
    secrets = [
        secret_yaml("shop", "www-cert", www or certs.www),
        secret_yaml("shop", "wild-cert", certs.wild),
        secret_yaml("shop", "any-cert", certs.any),
    ]
    routes = GATEWAY.format(wild_secret=wild_secret, extra_listener=UNNAMED if unnamed else "")
    return lab.compile(services, "\n---\n".join([*secrets, routes]))


async def exchange(
    port: int,
    ctx: ssl.SSLContext | None,
    sni: str | None,
    hosts: list[str],
    path: str = "/echo",
) -> tuple[list[tuple[int, dict[str, str], bytes]], int | None]:
    """Requests for `hosts`, in order, on one connection: their answers and the serial of
    the certificate the handshake got (None without TLS)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname=sni if ctx is not None else None
    )
    try:
        serial = None
        if ctx is not None:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            serial = x509.load_der_x509_certificate(der).serial_number
        answers = []
        for host in hosts:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            await writer.drain()
            answers.append(await read_response(reader))
        return answers, serial
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def gateway(lab: Lab, t: RuntimeTable, port: int = 443) -> Mesh:
    mesh = await start_mesh(t, gateway=f"shop/public:{port}")
    lab.meshes.append(mesh)
    return mesh


@bounded(30)
async def test_sni_chooses_the_listener_and_its_certificate(lab: Lab) -> None:
    certs = Certs()
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    mesh = await gateway(lab, table(lab, certs, services={"web-v1": [v1], "web-v2": [v2]}))
    ctx = certs.client()
    # the exact hostname wins over the wildcard that also matches it
    [(status, headers, _)], serial = await exchange(
        mesh.outbound, ctx, "www.example.com", ["www.example.com"]
    )
    assert (status, headers["x-backend"], serial) == (200, "v1", certs.www.serial)
    # a wildcard matches one label or more in front of its suffix
    for name in ("api.example.com", "a.b.example.com"):
        [(status, headers, _)], serial = await exchange(mesh.outbound, ctx, name, [f"{name}:443"])
        assert (status, headers["x-backend"], serial) == (200, "v2", certs.wild.serial), name


@bounded(30)
async def test_an_h2_client_negotiates_alpn_h2_and_an_http1_client_http1(lab: Lab) -> None:
    """The listener offers ALPN h2 and http/1.1 (xDS `alpn_protocols`, Envoy Gateway's
    default): an HTTP/2 client is served HTTP/2 over TLS, an HTTP/1.1 one as before."""
    certs = Certs()
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    mesh = await gateway(lab, table(lab, certs, services={"web-v1": [v1], "web-v2": [v2]}))
    ctx = certs.client()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    client = await H2Client.open(
        ("127.0.0.1", mesh.outbound), ssl=ctx, server_hostname="www.example.com"
    )
    try:
        assert client.writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        resp = await client.request("GET", "/echo", authority="www.example.com")
        assert (resp.status, resp.header(b"x-backend")) == (200, b"v1")
    finally:
        await client.close()
    ctx1 = certs.client()
    ctx1.set_alpn_protocols(["http/1.1"])
    [(status, headers, _)], _ = await exchange(
        mesh.outbound, ctx1, "api.example.com", ["api.example.com"]
    )
    assert (status, headers["x-backend"]) == (200, "v2")


@bounded(30)
async def test_a_host_of_another_listener_is_misdirected(lab: Lab) -> None:
    certs = Certs()
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    mesh = await gateway(lab, table(lab, certs, services={"web-v1": [v1], "web-v2": [v2]}))
    # the connection is www's: api.example.com belongs to the wildcard listener, even though
    # the proxy could route it (HTTP/2-style connection reuse must not cross listeners)
    answers, _ = await exchange(
        mesh.outbound, certs.client(), "www.example.com", ["api.example.com", "WWW.Example.com:443"]
    )
    (s1, _, _), (s2, h2, _) = answers
    assert s1 == 421
    assert (s2, h2["x-backend"]) == (200, "v1")
    # the wildcard's connection may carry any of its names, not www's
    answers, _ = await exchange(
        mesh.outbound, certs.client(), "api.example.com", ["other.example.com", "www.example.com"]
    )
    assert [a[0] for a in answers] == [200, 421]


@bounded(30)
async def test_a_handshake_no_listener_takes_is_refused(lab: Lab) -> None:
    certs = Certs()
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    mesh = await gateway(lab, table(lab, certs, services={"web-v1": [v1], "web-v2": [v2]}))
    for sni in ("shop.example.org", "example.com", None):
        with pytest.raises((ssl.SSLError, OSError)):
            await exchange(mesh.outbound, certs.client(verify=False), sni, ["x.example.com"])
    # plain HTTP on the TLS port: closed without an answer
    assert await mesh.raw(b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n") == b""
    # and the port still serves TLS afterwards
    [(status, _, _)], _ = await exchange(
        mesh.outbound, certs.client(), "www.example.com", ["www.example.com"]
    )
    assert status == 200


@bounded(30)
async def test_a_listener_without_a_usable_certificate_refuses_only_its_own(lab: Lab) -> None:
    certs = Certs()
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    services = {"web-v1": [v1], "web-v2": [v2]}
    mesh = await gateway(lab, table(lab, certs, wild_secret="missing", services=services))
    with pytest.raises((ssl.SSLError, OSError)):
        await exchange(mesh.outbound, certs.client(), "api.example.com", ["api.example.com"])
    [(status, _, _)], _ = await exchange(
        mesh.outbound, certs.client(), "www.example.com", ["www.example.com"]
    )
    assert status == 200


@bounded(30)
async def test_no_sni_gets_the_listener_without_a_hostname(lab: Lab) -> None:
    certs = Certs()
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    services = {"web-v1": [v1], "web-v2": [v2]}
    mesh = await gateway(lab, table(lab, certs, unnamed=True, services=services))
    answers, serial = await exchange(mesh.outbound, certs.client(verify=False), None, ["10.0.0.1"])
    assert serial == certs.any.serial
    # routed by the Host on that listener's routes: none attach to it, so nothing routes,
    # but it is not misdirected (a listener without a hostname takes any Host)
    assert answers[0][0] == 404


@bounded(40)
async def test_certificates_rotate_without_a_restart(lab: Lab) -> None:
    certs = Certs()
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    services = {"web-v1": [v1], "web-v2": [v2]}
    mesh = await gateway(lab, table(lab, certs, services=services))
    ctx = certs.client()
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", mesh.outbound, ssl=ctx, server_hostname="www.example.com"
    )
    try:
        renewed = certs.ca.leaf("www.example.com")
        mesh.apply(table(lab, certs, www=renewed, services=services), "v1")
        _, serial = await exchange(mesh.outbound, ctx, "www.example.com", ["www.example.com"])
        assert serial == renewed.serial
        # the connection made before keeps its certificate and goes on serving
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert x509.load_der_x509_certificate(der).serial_number == certs.www.serial
        writer.write(b"GET /echo HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
        status, headers, _ = await read_response(reader)
        assert (status, headers["x-backend"]) == (200, "v1")
    finally:
        writer.close()


@bounded(40)
async def test_a_port_turning_https_is_served_again_on_the_same_socket(lab: Lab) -> None:
    certs = Certs()
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    services = {"web-v1": [v1], "web-v2": [v2]}
    https = GATEWAY.format(wild_secret="wild-cert", extra_listener="")
    plain = lab.compile(
        services, re.sub(r"\n    tls: .*", "", https.replace("protocol: HTTPS", "protocol: HTTP"))
    )
    assert plain.listeners["gateway/shop/public:443"].tls is None
    mesh = await gateway(lab, plain)
    [(status, _, _)], _ = await exchange(mesh.outbound, None, None, ["www.example.com"])
    assert status == 200
    mesh.apply(table(lab, certs, services=services), "tls")
    for _ in range(200):
        if mesh.proxy.ready:
            break
        await asyncio.sleep(0.01)
    assert mesh.proxy.ready and mesh.proxy.tls_on
    [(status, _, _)], serial = await exchange(
        mesh.outbound, certs.client(), "www.example.com", ["www.example.com"]
    )
    assert (status, serial) == (200, certs.www.serial)
    assert await mesh.raw(b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n") == b""


@bounded(30)
async def test_http_listeners_redirect_to_https_with_the_right_port(lab: Lab) -> None:
    certs = Certs()
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    mesh = await gateway(lab, table(lab, certs, services={"web-v1": [v1], "web-v2": [v2]}), port=80)
    status, headers, _ = await mesh.get("www.example.com", "/a?b=1")
    assert (status, headers["location"]) == (301, "https://www.example.com/a?b=1")
    status, headers, _ = await mesh.get("www.example.com:80", "/tls-port")
    assert (status, headers["location"]) == (302, "https://www.example.com:8443/tls-port")


def _sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            count += os.readlink(fd).startswith("socket:")
    return count


@bounded(60)
async def test_mesh_proxy_with_two_workers_terminates_tls_in_both(lab: Lab, tmp_path: Path) -> None:
    """The command users run: `mesh proxy -f --gateway NS/NAME:443 --workers 2`; each
    process terminates TLS (a connection the kernel gives either one gets the certificate)."""
    certs = Certs()
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    docs = [service_yaml("web-v1", [v1]), service_yaml("web-v2", [v2])]
    docs += [
        secret_yaml("shop", n, leaf)
        for n, leaf in (("www-cert", certs.www), ("wild-cert", certs.wild))
    ]
    docs.append(GATEWAY.format(wild_secret="wild-cert", extra_listener=""))
    manifests = tmp_path / "gateway.yaml"
    manifests.write_text("\n---\n".join(docs))
    outbound, admin = dead_port(), dead_port()
    proc = await start_cli_proxy(
        *("-f", str(manifests), "--workers", "2", "--gateway", "shop/public:443"),
        *("--namespace", "shop", "--outbound", f"127.0.0.1:{outbound}"),
        *("--admin", f"127.0.0.1:{admin}"),
    )
    held: list[asyncio.StreamWriter] = []
    try:
        await wait_admin_ready(admin)
        pids = [proc.pid, *(c for c in _children(proc.pid) if b"spawn_main" in _cmdline(c))]
        assert len(pids) == 2, pids
        before = {pid: _sockets(pid) for pid in pids}
        ctx = certs.client()
        for _ in range(20):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", outbound, ssl=ctx, server_hostname="www.example.com"
            )
            held.append(writer)
            writer.write(b"GET /echo HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
            status, headers, _ = await read_response(reader)
            assert (status, headers["x-backend"]) == (200, "v1")
        after = {pid: _sockets(pid) for pid in pids}
        assert all(after[p] > before[p] for p in pids), (before, after)
    finally:
        for writer in held:
            writer.close()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []
