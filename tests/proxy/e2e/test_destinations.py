"""A mesh request's destination is the address the client connected to (`destinations.py`).

Services `web-a` (cluster IP 127.0.0.21) and `web-b` (127.0.0.22) both listen on port 18080;
`web-a`'s route sends `/b` to web-b and sets `x-route: a` on everything. Requests go either
to the proxy's outbound port with an IP Host header (the Host-header mode), or to a socket
the proxy opens on each Service address (`--service-listeners`)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import Mesh, bounded, service_yaml, start_mesh

PORT = 18080
A_IP, B_IP, C_IP = "127.0.0.21", "127.0.0.22", "127.0.0.23"

ROUTE = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web-a, namespace: shop}}
spec:
  parentRefs: [{{group: "", kind: Service, name: web-a, port: {PORT}}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /b}}}}]
    backendRefs: [{{name: web-b, port: {PORT}}}]
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-route, value: a}}]}}
    backendRefs: [{{name: web-a, port: {PORT}}}]
"""


def manifests(a: Backend, b: Backend, *, c: Backend | None = None, with_b: bool = True) -> str:
    docs = [service_yaml("web-a", [a], port=PORT, cluster_ip=A_IP), ROUTE]
    if with_b:
        docs.append(service_yaml("web-b", [b], port=PORT, cluster_ip=B_IP))
    if c is not None:
        docs.append(service_yaml("web-c", [c], port=PORT, cluster_ip=C_IP))
    return "\n---\n".join(docs)


async def fetch(url: str, host: str) -> tuple[int, str, dict[str, object]]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(url, headers={"Host": host}) as resp,
    ):
        body = await resp.read()
        echo = (
            json.loads(body)
            if resp.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        return resp.status, resp.headers.get("x-backend", ""), echo


def seen_header(echo: dict[str, object], name: str) -> str | None:
    headers = echo.get("headers") or {}
    assert isinstance(headers, dict)
    for k, v in headers.items():
        if k.lower() == name:
            return str(v)
    return None


@bounded(30)
async def test_an_ip_host_names_the_service_at_that_address_or_passes_through(lab: Lab) -> None:
    a, b = await lab.backend("a"), await lab.backend("b")
    mesh = await start_mesh(lab.compile({}, manifests(a, b)))
    lab.meshes.append(mesh)
    out = f"http://127.0.0.1:{mesh.outbound}"
    # the Service at that address, its routes deciding
    status, backend, echo = await fetch(f"{out}/echo", f"{A_IP}:{PORT}")
    assert (status, backend, seen_header(echo, "x-route")) == (200, "a", "a")
    status, backend, _ = await fetch(f"{out}/b/x", f"{A_IP}:{PORT}")
    assert (status, backend) == (200, "b")
    status, backend, echo = await fetch(f"{out}/echo", f"{B_IP}:{PORT}")
    assert (status, backend, seen_header(echo, "x-route")) == (200, "b", None)
    # an endpoint's own address: forwarded to that pod untouched, no route applies
    status, backend, echo = await fetch(f"{out}/b/x", f"127.0.0.1:{a.port}")
    assert (status, backend, seen_header(echo, "x-route")) == (200, "a", None)
    # an address no Service and no endpoint has; a Service IP on another port
    for host in ("127.0.0.99:18080", f"{A_IP}:9999", A_IP):
        status, _, body = await mesh.get(host, "/echo")
        assert (status, body) == (
            404,
            b"unknown destination: no Service or endpoint has the address sent to\n",
        ), host
    status, _, body = await mesh.get("nothing.shop", "/echo")
    assert (status, body) == (404, b"unknown destination: no such Service port in the table\n")
    # names still work as before
    status, backend, _ = await fetch(f"{out}/echo", f"web-b.shop:{PORT}")
    assert (status, backend) == (200, "b")


async def _until_ready(mesh: Mesh) -> None:
    for _ in range(400):
        if mesh.proxy.ready:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the proxy never became ready")


@bounded(40)
async def test_service_listeners_take_the_destination_from_the_socket(lab: Lab) -> None:
    a, b, c = await lab.backend("a"), await lab.backend("b"), await lab.backend("c")
    mesh = await start_mesh(lab.compile({}, manifests(a, b)), service_listeners=True)
    lab.meshes.append(mesh)
    assert mesh.proxy.services is not None
    assert mesh.proxy.services.bound() == [(A_IP, PORT), (B_IP, PORT)]
    # connected to web-a's address with a Host naming web-b: web-a's routes decide
    status, backend, echo = await fetch(f"http://{A_IP}:{PORT}/echo", f"web-b.shop:{PORT}")
    assert (status, backend, seen_header(echo, "x-route")) == (200, "a", "a")
    status, backend, _ = await fetch(f"http://{A_IP}:{PORT}/b", "anything")
    assert (status, backend) == (200, "b")
    status, backend, _ = await fetch(f"http://{B_IP}:{PORT}/echo", f"web-a.shop:{PORT}")
    assert (status, backend) == (200, "b")
    # a new table: web-b's address goes away, web-c's comes
    mesh.apply(lab.compile({}, manifests(a, b, c=c, with_b=False)), "v2")
    await _until_ready(mesh)
    assert mesh.proxy.services.bound() == [(A_IP, PORT), (C_IP, PORT)]
    status, backend, _ = await fetch(f"http://{C_IP}:{PORT}/echo", "web-a.shop")
    assert (status, backend) == (200, "c")
    with pytest.raises(aiohttp.ClientConnectionError):
        await fetch(f"http://{B_IP}:{PORT}/echo", "web-b.shop")


@bounded(30)
async def test_an_address_that_cannot_be_bound_leaves_the_others_serving(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await lab.backend("a"), await lab.backend("b")
    text = manifests(a, b).replace(B_IP, "192.0.2.1")  # TEST-NET-1: not an address of this host
    mesh = await start_mesh(lab.compile({}, text), service_listeners=True)
    lab.meshes.append(mesh)
    assert mesh.proxy.ready
    assert mesh.proxy.services is not None and mesh.proxy.services.bound() == [(A_IP, PORT)]
    assert "service listener not bound address=192.0.2.1:18080" in caplog.text
    status, backend, _ = await fetch(f"http://{A_IP}:{PORT}/echo", "x")
    assert (status, backend) == (200, "a")
