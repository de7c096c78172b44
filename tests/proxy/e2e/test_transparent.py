"""`mesh proxy --transparent` without iptables (no root): what a connection that was not
redirected gets, and how accepted connections are placed by their original destination.

The redirected paths themselves run for real in network namespaces:
`tests/cluster/capture/test_netns.py`."""

from __future__ import annotations

import socket

import pytest

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded, service_yaml, start_mesh
from turnout.proxy.process import Address, ProxyConfig
from turnout.proxy.runner import build_proxy
from turnout.proxy.transparent import inbound_place, outbound_place
from turnout.proxy.transport.original_dst import original_dst

IP, PORT = "127.0.0.31", 18080

ROUTE = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: shop}}
spec:
  parentRefs: [{{group: "", kind: Service, name: web, port: {PORT}}}]
  rules: [{{backendRefs: [{{name: web, port: {PORT}}}]}}]
"""


def test_a_connection_that_was_not_redirected_has_no_original_destination() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        with client, accepted:
            assert original_dst(accepted) is None


@bounded(30)
async def test_a_transparent_proxy_serves_connections_that_were_not_redirected_as_before(
    lab: Lab,
) -> None:
    web, app = await lab.backend("web"), await lab.backend("app")
    table = lab.compile(
        {}, service_yaml("web", [web], port=PORT, cluster_ip=IP) + "\n---\n" + ROUTE
    )
    mesh = await start_mesh(table, inbound_app=("127.0.0.1", app.port), transparent=True)
    lab.meshes.append(mesh)
    # outbound, by the Host header (a client of 127.0.0.1:<outbound> itself)
    status, headers, _ = await mesh.get(f"{IP}:{PORT}", "/echo")
    assert (status, headers.get("x-backend")) == (200, "web")
    # inbound, to --app
    assert mesh.inbound is not None
    async with mesh.session.get(f"http://127.0.0.1:{mesh.inbound}/echo") as resp:
        assert (resp.status, resp.headers.get("x-backend")) == (200, "app")
    # how a redirected connection would be placed, by the table the proxy serves
    place = outbound_place(mesh.proxy.handlers[0], refuse_unknown=False)
    direct = place(None)
    assert direct is not None and (direct.original_dst, direct.forward) == (None, None)
    known = place((IP, PORT))
    assert known is not None and (known.original_dst, known.forward) == ((IP, PORT), None)
    endpoint = place(("127.0.0.1", web.port))
    assert endpoint is not None and endpoint.forward is None  # passed through as HTTP
    unknown = place(("192.0.2.9", 5432))
    assert unknown is not None and unknown.forward == ("192.0.2.9", 5432)
    refusing = outbound_place(mesh.proxy.handlers[0], refuse_unknown=True)
    assert refusing(("192.0.2.9", 5432)) is None


@pytest.mark.parametrize("app", [None, Address(host="127.0.0.1", port=9000)], ids=["no-app", "app"])
def test_inbound_places_by_the_original_port_and_refuses_the_proxys_own(
    app: Address | None,
) -> None:
    config = ProxyConfig(
        transparent=True,
        inbound=Address(host="0.0.0.0", port=4143),
        outbound=Address(host="127.0.0.1", port=4140),
        admin=Address(host="0.0.0.0", port=4191),
        app=app,
        opaque_ports=((3306, 3306),),
    )
    proxy = build_proxy(config)
    place = inbound_place(config, proxy.guard_for)
    web = place(("10.0.0.5", 8080))
    assert web is not None and web.app == ("127.0.0.1", 8080)
    assert web.gate is proxy.guard_for(8080) and proxy.guard_for(8080) is proxy.guards[8080]
    db = place(("10.0.0.5", 3306))
    assert db is not None and db.gate is not None and db.gate.opaque  # --opaque-ports per port
    for own in (4140, 4143, 4191):
        assert place(("10.0.0.5", own)) is None
    direct = place(None)
    if app is None:
        assert direct is None
    else:
        assert direct is not None and direct.app == ("127.0.0.1", 9000)
