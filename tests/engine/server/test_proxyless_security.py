"""Proxyless gRPC security, end to end with real grpcio: mTLS from xDS credentials (gRFC A29)
and RBAC on an xDS server (A41), certificates from the engine's CA written by the identity
agent, on 127.0.0.1.

```
 AdsServer (ADS + Certify, 127.0.0.1:0) ── publish(route table, policy table)
    │  ^ Certify                      │ LDS "grpc/server?xds.resource.listening_address=IP:PORT"
    │  Agent.once() -> DIR/{cert,key,ca}.pem   (one directory per service account)
    v                                  v
 grpcio client subprocess ── mTLS ──> grpc.server(xds=True) subprocess (echo, app=echo)
 (xds_channel_credentials,             (xds_server_credentials; answers what it saw of
  xds:///echo.grpc.svc...:9000)         its peer: URI SAN, auth context)
```

The policy is Istio's: PeerAuthentication STRICT in namespace `grpc` (`STRICT`), and an
AuthorizationPolicy on `app: echo` that allows only `cluster.local/ns/grpc/sa/web`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from tests.engine.server.test_proxyless_grpc import ROOT, ProxylessClient
from tests.proxy.identity.kit import Ca
from turnout.engine.identity.service import IdentityService
from turnout.engine.identity.settings import IdentitySettings
from turnout.engine.identity.store import AuthorityFiles, init_store, load_material
from turnout.engine.identity.tokens import JoinTokenVerifier
from turnout.engine.ir import SourceRef
from turnout.engine.ir_policy import PeerAuthn, PolicyTable
from turnout.engine.pipeline import compile_files, compile_policy_files
from turnout.engine.server import AdsServer, ServerSettings, bootstrap_config, service_target
from turnout.engine.server.certify import certify_handler
from turnout.proxy.identity.agent import Agent

NS = "grpc"
PORT = 9000
TARGET = service_target("echo", NS, PORT)
DOMAIN = "cluster.local"
TIMEOUT_S = 20.0


def identity(sa: str) -> str:
    return f"{sa}.{NS}.serviceaccount.identity.{DOMAIN}"


def spiffe(sa: str) -> str:
    return f"spiffe://{DOMAIN}/ns/{NS}/sa/{sa}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def routes_yaml(server_port: int) -> str:
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: {NS}}}
spec: {{ports: [{{name: grpc, port: {PORT}, appProtocol: grpc}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-a
  namespace: {NS}
  labels: {{kubernetes.io/service-name: echo}}
  annotations: {{identity.turnout.dev/name: {identity("echo")}}}
addressType: IPv4
ports: [{{name: grpc, port: {server_port}, protocol: TCP}}]
endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: echo, namespace: {NS}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: echo, port: {PORT}}}]
  rules: [{{backendRefs: [{{name: echo, port: {PORT}}}]}}]
"""


POLICY = f"""\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: echo-callers, namespace: {NS}}}
spec:
  selector: {{matchLabels: {{app: echo}}}}
  action: ALLOW
  rules: [{{from: [{{source: {{principals: [{DOMAIN}/ns/{NS}/sa/web]}}}}]}}]
"""


STRICT = PeerAuthn(
    name=f"istio/peerauthentication/{NS}/strict",
    source=SourceRef(kind="PeerAuthentication", namespace=NS, name="strict"),
    namespace=NS,
    selector=None,
    mode="STRICT",
)
"""PeerAuthentication `strict` (namespace-wide STRICT), built as the policy IR holds it: the
Istio adapter parses PeerAuthentication but does not put it in the table yet."""


def compile_all(tmp: Path, server_port: int) -> tuple[object, PolicyTable]:
    routes, policy = tmp / "routes.yaml", tmp / "policy.yaml"
    routes.write_text(routes_yaml(server_port))
    policy.write_text(POLICY)
    compiled = compile_files([routes])
    assert not [d for d in compiled.diagnostics if d.severity.value == "error"]
    _, result = compile_policy_files([policy])
    assert not [d for d in result.diagnostics if d.severity.value == "error"]
    return compiled.result.table, dataclasses.replace(result.table, peer_authentications=(STRICT,))


@dataclass
class Mesh:
    ads: AdsServer
    ca: Ca
    tmp: Path
    server_port: int
    agents: dict[str, Agent]

    async def certs(self, sa: str) -> Path:
        """DIR of `sa`'s files, (re)written by its agent from the CA (a renewal)."""
        agent = self.agents.get(sa)
        if agent is None:
            agent = Agent(
                identity(sa),
                target=self.ca.target,
                token_file=self.ca.token_file(sa, NS),
                out=self.tmp / f"certs-{sa}",
            )
            self.agents[sa] = agent
        await agent.once()
        return agent.out

    def bootstrap(self, sa: str, certs: Path, labels: dict[str, str]) -> str:
        config = bootstrap_config(
            xds=f"127.0.0.1:{self.ads.port}",
            namespace=NS,
            workload=f"deployment/{sa}",
            certs=str(certs),
            labels=labels,
            refresh_interval_s=1,
        )
        return json.dumps(config)


@asynccontextmanager
async def mesh(tmp: Path) -> AsyncIterator[Mesh]:
    d = tmp / "ca"
    init_store(d, IdentitySettings(), now=dt.datetime.now(dt.UTC))
    service = IdentityService(
        AuthorityFiles(d), JoinTokenVerifier(load_material(d).token_key), reload_interval_ms=0
    )
    ads = AdsServer(
        settings=ServerSettings(stop_grace_ms=0, stop_timeout_ms=2_000),
        handlers=[certify_handler(service)],
    )
    port = await ads.start("127.0.0.1", 0)
    server_port = free_port()
    table, policy = compile_all(tmp, server_port)
    ads.publish(table, policy)  # type: ignore[arg-type]
    try:
        yield Mesh(ads, Ca(d, f"127.0.0.1:{port}"), tmp, server_port, {})
    finally:
        await ads.stop()


def _env(bootstrap: str) -> dict[str, str]:
    env = dict(os.environ)
    env["GRPC_XDS_BOOTSTRAP_CONFIG"] = bootstrap
    env["PYTHONPATH"] = str(ROOT)
    if os.environ.get("TURNOUT_GRPC_TRACE"):
        env |= {"GRPC_TRACE": "xds_client,xds_server_config_fetcher", "GRPC_VERBOSITY": "DEBUG"}
    return env


@asynccontextmanager
async def subprocess(
    name: str, args: list[str], bootstrap: str, tmp: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    stderr_path = tmp / f"{name}.stderr"
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=_env(bootstrap),
            cwd=ROOT,
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        text = stderr_path.read_text(errors="replace")
        sys.stderr.write(f"--- {name} stderr\n{text[-20_000:]}")


@asynccontextmanager
async def echo_server(m: Mesh) -> AsyncIterator[Path]:
    """The xDS-managed grpcio server of service account `echo` (labels app=echo)."""
    certs = await m.certs("echo")
    bootstrap = m.bootstrap("echo", certs, {"app": "echo"})
    args = ["tests.engine.server.grpc_xds_server", f"127.0.0.1:{m.server_port}"]
    async with subprocess("echo-server", args, bootstrap, m.tmp) as proc:
        assert proc.stdout is not None
        async with asyncio.timeout(TIMEOUT_S):
            line = await proc.stdout.readline()
        assert line.startswith(b"serving"), line
        yield certs


@asynccontextmanager
async def client(m: Mesh, sa: str, *, xds_creds: bool = True) -> AsyncIterator[ProxylessClient]:
    certs = await m.certs(sa)
    bootstrap = m.bootstrap(sa, certs, {"app": sa})
    args = ["tests.engine.server.grpc_client", TARGET, *(["--xds-creds"] if xds_creds else [])]
    async with subprocess(f"client-{sa}", args, bootstrap, m.tmp) as proc:
        yield ProxylessClient(proc)


async def test_mtls_rpc_the_server_sees_the_clients_spiffe_uri(tmp_path: Path) -> None:
    async with mesh(tmp_path) as m, echo_server(m), client(m, "web") as web:
        [(body, status, _)] = await web.call(1, timeout_s=TIMEOUT_S, wait_for_ready=True)
        assert status == "OK", body
        seen = json.loads(body or "{}")
        assert spiffe("web") in seen["identities"]
        assert seen["auth"]["transport_security_type"] == ["tls"]
        assert spiffe("web") in seen["auth"]["x509_subject_alternative_name"]


async def test_rbac_denies_an_identity_the_policy_does_not_allow(tmp_path: Path) -> None:
    async with mesh(tmp_path) as m, echo_server(m):
        async with client(m, "web") as web:  # the server is serving, and web may call
            [(_, status, _)] = await web.call(1, timeout_s=TIMEOUT_S, wait_for_ready=True)
            assert status == "OK"
        async with client(m, "rogue") as rogue:
            calls = await rogue.call(3, timeout_s=TIMEOUT_S, wait_for_ready=True)
        assert [s for _, s, _ in calls] == ["PERMISSION_DENIED"] * 3


async def test_strict_refuses_a_plaintext_client(tmp_path: Path) -> None:
    """Without xDS credentials a client ignores the Cluster's TLS and sends plaintext: the
    STRICT server's handshake fails, the call never reaches RBAC."""
    async with mesh(tmp_path) as m, echo_server(m):
        async with client(m, "web") as web:  # the same client with xDS credentials: served
            [(_, status, _)] = await web.call(1, timeout_s=TIMEOUT_S, wait_for_ready=True)
            assert status == "OK"
        async with client(m, "web", xds_creds=False) as plain:
            [(_, status, _)] = await plain.call(1, timeout_s=5.0, wait_for_ready=False)
        assert status == "UNAVAILABLE", status


def _served_serial(port: int, certs: Path) -> int:
    """The serial of the certificate the server presents to a new mTLS handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(certs / "ca.pem")
    ctx.load_cert_chain(certs / "cert.pem", certs / "key.pem")
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def _file_serial(certs: Path) -> int:
    return int(x509.load_pem_x509_certificate((certs / "cert.pem").read_bytes()).serial_number)


@pytest.mark.slow
async def test_certificate_rotation_fails_no_rpc(tmp_path: Path) -> None:
    async with mesh(tmp_path) as m, echo_server(m) as server_certs, client(m, "web") as web:
        [(_, status, _)] = await web.call(1, timeout_s=TIMEOUT_S, wait_for_ready=True)
        assert status == "OK"
        web_certs = m.agents["web"].out
        first = _served_serial(m.server_port, web_certs)
        statuses = []
        for _ in range(4):  # 4 renewals of both sides, 50 RPCs after each
            await m.certs("echo")
            await m.certs("web")
            statuses += [s for _, s, _ in await web.call(50, timeout_s=5.0)]
        assert statuses.count("OK") == 200, statuses
        rotated = _file_serial(server_certs)
        async with asyncio.timeout(5):  # file_watcher re-reads every 1 s
            while (
                served := await asyncio.to_thread(_served_serial, m.server_port, web_certs)
            ) != rotated:
                await asyncio.sleep(0.2)
        assert served != first
