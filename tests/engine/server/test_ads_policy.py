"""The authorization policy over ADS: `POLICY_TYPE_URL` (xds.type.v3.TypedStruct), wildcard,
to a bare grpc client (`ads_raw.RawAds`), in process and through `mesh serve --dir`.

A client that does not subscribe to the policy type sees nothing new when only the policy
changes (grpcio proxyless clients subscribe to LDS/RDS/CDS/EDS only).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.engine.server.ads_kit import QUIET_S
from tests.engine.server.ads_raw import RawAds, typed_structs
from tests.engine.server.builders import manifest, mk_service
from tests.support.serving import lines_until_serving
from turnout.adapters.policy import compile_policy
from turnout.engine.pipeline import compile_files
from turnout.engine.server import AdsServer
from turnout.engine.xds import CLUSTER_TYPE, LISTENER_TYPE
from turnout.engine.xds.policy import (
    DEFAULTS_NAME,
    DEFAULTS_TYPE,
    INBOUND_SERVER_TYPE,
    PEER_AUTHN_TYPE,
    POLICY_TYPE_URL,
    REQUEST_AUTHN_TYPE,
)

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT_S = 10.0

SERVER = """\
apiVersion: policy.linkerd.io/v1beta3
kind: Server
metadata: {name: web-http, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  port: 8080
  proxyProtocol: HTTP/1
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  jwtRules: [{issuer: https://issuer.example.com}]
"""

SAZ = """\
apiVersion: policy.linkerd.io/v1beta1
kind: ServerAuthorization
metadata: {name: web-any, namespace: shop}
spec:
  server: {name: web-http}
  client: {unauthenticated: true}
"""

EXPECTED = {
    "server/shop/web-http": INBOUND_SERVER_TYPE,
    "istio/peerauthentication/istio-system/default": PEER_AUTHN_TYPE,
    "istio/requestauthentication/shop/jwt": REQUEST_AUTHN_TYPE,
    DEFAULTS_NAME: DEFAULTS_TYPE,
}


def compiled(tmp_path: Path, *docs: str):  # type: ignore[no-untyped-def]
    path = tmp_path / f"{abs(hash(docs))}.yaml"
    path.write_text(manifest(*docs))
    c = compile_files([path])
    assert not [d for d in c.diagnostics if d.severity.value == "error"], c.diagnostics
    return c.result.table, compile_policy(c.inputs.resources).table


async def test_a_policy_subscriber_gets_every_resource_and_a_policy_only_change(
    server: AdsServer, tmp_path: Path
) -> None:
    table, policy = compiled(tmp_path, mk_service("web"), SERVER)
    assert server.publish(table, policy) == 1
    meta = {"namespace": "shop", "workload": "deployment/web", "labels": {"app": "web"}}
    async with RawAds(f"127.0.0.1:{server.port}", node_id="shop/web", metadata=meta) as ads:
        await ads.subscribe(POLICY_TYPE_URL)
        resp = await ads.next()
        assert (resp.type_url, resp.version_info) == (POLICY_TYPE_URL, "1")
        got = typed_structs(resp)
        assert {n: t for n, (t, _) in got.items()} == EXPECTED
        srv = got["server/shop/web-http"][1]
        assert srv["port"] == 8080.0  # a Struct number is a double: readers int() it
        await ads.ack(resp)
        await ads.quiet(QUIET_S)
        [stream] = server.status().streams
        assert stream.subscriptions == {"POLICY": ("*",)}
        assert stream.acked == {"POLICY": "1"}
        assert stream.labels == {"app": "web"} and stream.workload == "deployment/web"

        assert server.publish(table, policy) == 1  # equal: no new version, nothing sent
        await ads.quiet(QUIET_S)

        _, more = compiled(tmp_path, mk_service("web"), SERVER, SAZ)
        assert server.publish(table, more) == 2
        resp = await ads.next()
        assert resp.version_info == "2"
        authz = typed_structs(resp)["server/shop/web-http"][1]["authorizations"]
        assert [a["name"] for a in authz] == ["serverauthorization/shop/web-any"]


async def test_an_lds_cds_client_sees_nothing_of_a_policy_only_change(
    server: AdsServer, tmp_path: Path
) -> None:
    table, policy = compiled(tmp_path, mk_service("web"), SERVER)
    server.publish(table, policy)
    async with RawAds(
        f"127.0.0.1:{server.port}", node_id="shop/grpc", metadata={"namespace": "shop"}
    ) as ads:
        await ads.subscribe(LISTENER_TYPE)
        await ads.subscribe(CLUSTER_TYPE)
        first = {r.type_url: r for r in [await ads.next(), await ads.next()]}
        assert set(first) == {LISTENER_TYPE, CLUSTER_TYPE}
        for r in first.values():
            await ads.ack(r)
        await ads.quiet(QUIET_S)
        _, more = compiled(tmp_path, mk_service("web"), SERVER, SAZ)
        assert server.publish(table, more) == 2
        await ads.quiet(QUIET_S)
        assert all(r.type_url != POLICY_TYPE_URL for r in ads.received)


async def test_mesh_serve_from_a_directory_pushes_a_new_server_authorization(
    tmp_path: Path,
) -> None:
    watched = tmp_path / "mesh"
    watched.mkdir()
    (watched / "mesh.yaml").write_text(manifest(mk_service("web"), SERVER))
    code = "import sys; from turnout.cli.main import main; sys.exit(main(sys.argv[1:]))"
    argv = ["serve", "--dir", str(watched), "--xds", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    try:
        lines = await lines_until_serving(proc, timeout_s=TIMEOUT_S)
        xds = lines[0].rsplit(" ", 1)[1]
        meta = {"namespace": "shop"}
        async with (
            RawAds(xds, node_id="shop/web", metadata=meta) as policy_client,
            RawAds(xds, node_id="shop/grpc", metadata=meta) as lds_client,
        ):
            await policy_client.subscribe(POLICY_TYPE_URL)
            resp = await policy_client.next()
            assert set(typed_structs(resp)) == set(EXPECTED)
            await policy_client.ack(resp)
            await lds_client.subscribe(LISTENER_TYPE)
            lds = await lds_client.next()
            await lds_client.ack(lds)

            (watched / "authz.yaml").write_text(SAZ)
            resp = await policy_client.next(TIMEOUT_S)
            assert int(resp.version_info) > int(lds.version_info)
            authz = typed_structs(resp)["server/shop/web-http"][1]["authorizations"]
            assert authz[0]["name"] == "serverauthorization/shop/web-any"
            await lds_client.quiet(QUIET_S)  # its listeners did not change
    finally:
        if proc.returncode is None:
            proc.terminate()
            async with asyncio.timeout(TIMEOUT_S):
                await proc.wait()
