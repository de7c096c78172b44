"""What the `mesh check` tests share: a fake API server holding what `mesh install` creates, a
real control plane (as `mesh serve` runs it, in process) behind the API server's proxy, a
real HTTPS injector `/ready`, and `mesh check` run as the command line runs it.

```
mesh check (a thread: its own loop) ──kubeconfig──> ClusterFakeApiServer ──proxy──> admin :N
                                                        │ objects: mk_*          /ready
                                                        │                        /debug/proxies
                                                        └──proxy──> injector (HTTPS) /ready
AdsServer <──ADS── XdsClient / `mesh proxy --pod web-1` (real clients, node ids as mesh proxy sends)
```

The objects are built by hand with small builders (`mk_pod`, `mk_crd`, ...), as `mesh install`
would render them (its renderer is another part of issue 14).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime as dt
import io
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.certs import Authority
from tests.engine.server.ads_kit import FAST, Tables, split
from tests.engine.sources.k8s_fake_cluster import ClusterFakeApiServer
from turnout.cli.main import main
from turnout.cluster import names
from turnout.cluster.check.control_plane import CRD_KINDS, REQUIRED_GROUPS
from turnout.engine.config import CONTROLLER_NAME
from turnout.engine.identity.settings import IdentitySettings
from turnout.engine.identity.store import init_store
from turnout.engine.ir import RouteTable
from turnout.engine.plane import ControlPlane
from turnout.engine.server import AdsServer, ServerSettings
from turnout.engine.server.admin import admin_app, start_admin
from turnout.engine.sources import DirectorySettings, DirectorySource
from turnout.engine.sources.k8s.kinds import KindSpec
from turnout.engine.xds import XdsResources, translate
from turnout.proxy.xds_client import NodeInfo, XdsClient

TIMEOUT_S = 10.0
NS = names.NAMESPACE
APP_NS = "shop"
FAST_DIR = DirectorySettings(debounce_ms=20, watch_tick_ms=100, stop_timeout_ms=2_000)
INJECTOR_DNS = f"{names.INJECTOR_SERVICE}.{NS}.svc"
CONTROLLER_LABELS = {"app.kubernetes.io/name": names.CONTROLLER}


# ---------------------------------------------------------------- objects, as install makes them


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mk_namespace(name: str, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "annotations": dict(annotations)},
    }


def mk_deployment(*, replicas: int = 1, ready: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": names.CONTROLLER, "namespace": NS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": CONTROLLER_LABELS}},
        "status": {"replicas": replicas, "readyReplicas": ready},
    }


def mk_pod(
    name: str,
    *,
    ns: str = APP_NS,
    labels: dict[str, str] | None = None,
    containers: tuple[str, ...] = ("app", names.PROXY_CONTAINER),
    ready: bool = True,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    cond = {"type": "Ready", "status": "True" if ready else "False"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": labels or {"app": name.rsplit("-", 1)[0]},
            "annotations": annotations
            if annotations is not None
            else (
                {names.INJECTED_ANNOTATION: "test"} if names.PROXY_CONTAINER in containers else {}
            ),
        },
        "spec": {"containers": [{"name": c, "image": "x"} for c in containers]},
        "status": {
            "phase": "Running",
            "conditions": [cond],
            "containerStatuses": [{"name": c, "ready": ready} for c in containers],
        },
    }


def mk_crd(spec: KindSpec, *, versions: tuple[str, ...] | None = None) -> dict[str, Any]:
    served = versions or (spec.version,)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{spec.plural}.{spec.group}"},
        "spec": {
            "group": spec.group,
            "names": {"kind": spec.kind, "plural": spec.plural},
            "scope": "Namespaced" if spec.namespaced else "Cluster",
            "versions": [
                {"name": v, "served": True, "storage": i == 0} for i, v in enumerate(served)
            ],
        },
    }


def mk_secret(name: str, files: dict[str, bytes], *, type_: str = "Opaque") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "type": type_,
        "data": {k: b64(v) for k, v in files.items()},
    }


def mk_webhook(ca_pem: bytes) -> dict[str, Any]:
    service = {
        "namespace": NS,
        "name": names.INJECTOR_SERVICE,
        "path": names.INJECTOR_PATH,
        "port": 443,
    }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": names.WEBHOOK_CONFIGURATION},
        "webhooks": [
            {
                "name": "inject.turnout.dev",
                "clientConfig": {"service": service, "caBundle": b64(ca_pem)},
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Ignore",
            }
        ],
    }


def mk_http_route(name: str, *, generation_seen: int | None = 1) -> dict[str, Any]:
    """A mesh HTTPRoute whose status Turnout wrote for `generation_seen` (None: no entry)."""
    ref = {"group": "", "kind": "Service", "name": name, "port": 80}
    route: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": APP_NS},
        "spec": {"parentRefs": [ref], "rules": [{"backendRefs": [{"name": name, "port": 80}]}]},
    }
    if generation_seen is not None:
        cond = {
            "type": "Accepted",
            "status": "True",
            "reason": "Accepted",
            "message": "",
            "observedGeneration": generation_seen,
            "lastTransitionTime": "2024-01-01T00:00:00Z",
        }
        route["status"] = {
            "parents": [{"parentRef": ref, "controllerName": CONTROLLER_NAME, "conditions": [cond]}]
        }
    return route


def serving_leaf(ca: Authority, dns: str, *, days: int = 365) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a server certificate for `dns`, signed by `ca`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def identity_files(directory: Path, *, now: dt.datetime | None = None) -> dict[str, bytes]:
    """`mesh identity init`'s files (made as of `now`), as the turnout-identity Secret holds them."""
    init_store(directory, IdentitySettings(), now=now or dt.datetime.now(dt.UTC))
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


# ---------------------------------------------------------------- the running pieces


class Switch:
    """A translator that serves `web`'s routes with an invalid regex while `bad` is set: our
    proxy rejects that RouteConfiguration (a real NACK)."""

    def __init__(self) -> None:
        self.bad = False

    def __call__(self, table: RouteTable, ns: str | None) -> XdsResources:
        res = translate(table, client_namespace=ns)
        if not self.bad:
            return res
        rcs = []
        for rc in res.route_configs:
            rc = copy.deepcopy(rc)
            for vh in rc.virtual_hosts:
                for r in vh.routes:
                    r.match.safe_regex.regex = "/(["
            rcs.append(rc)
        return XdsResources(
            listeners=res.listeners,
            route_configs=tuple(rcs),
            clusters=res.clusters,
            load_assignments=res.load_assignments,
        )


@dataclass
class Cluster:
    fake: ClusterFakeApiServer
    kubeconfig: Path
    directory: Path
    server: AdsServer
    admin: str
    switch: Switch
    ca: Authority
    injector: str = ""
    clients: list[XdsClient] = field(default_factory=list)

    @property
    def xds(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def client(self, pod: str, *, workload: str = "deployment/web") -> XdsClient:
        """A real ADS client that names itself as `mesh proxy -n shop --workload W --pod POD`."""
        node = NodeInfo(
            id=f"{APP_NS}/{workload}/{pod}", cluster=APP_NS, namespace=APP_NS, workload=workload
        )
        client = XdsClient(self.xds, node=node, on_table=Tables(), settings=FAST)
        client.start()
        self.clients.append(client)
        return client

    async def check(self, *args: str) -> tuple[int, str]:
        """`mesh check ARGS --kubeconfig ...` on its own loop (a thread): (exit code, stdout)."""
        out, err = io.StringIO(), io.StringIO()
        argv = ["check", "--kubeconfig", str(self.kubeconfig), *args]
        code = await asyncio.to_thread(main, argv, stdout=out, stderr=err)
        return code, out.getvalue() + err.getvalue()

    async def until(self, cond: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT_S):
            while not cond():
                await asyncio.sleep(0.02)

    def synced(self, pod: str) -> bool:
        for s in self.server.status().streams:
            if (
                s.node_id.endswith(f"/{pod}")
                and s.sync
                and all(v in ("SYNCED", "IGNORED") for v in s.sync.values())
            ):
                return True
        return False


def write_kubeconfig(path: Path, url: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        f"clusters: [{{name: fake, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: me, user: {token: test-token}}]\n"
        "contexts: [{name: fake, context: {cluster: fake, user: me}}]\n"
    )
    return path


async def start_injector(cert_pem: bytes, key_pem: bytes, tmp: Path) -> tuple[web.AppRunner, int]:
    """An HTTPS server answering GET /ready 200 with this certificate (the injector's port)."""
    (tmp / "tls.crt").write_bytes(cert_pem)
    (tmp / "tls.key").write_bytes(key_pem)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp / "tls.crt", tmp / "tls.key")

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/ready", ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    return runner, int(runner.addresses[0][1])


def install(
    c: Cluster, identity: dict[str, bytes], injector_cert: bytes, injector_key: bytes
) -> None:
    """What `mesh install --crds` and `mesh install` create, with the controller running."""
    fake = c.fake
    for ns in (mk_namespace(NS), mk_namespace(APP_NS, **{names.INJECT_ANNOTATION: "enabled"})):
        fake.apply(ns)
    for spec in CRD_KINDS:
        if spec.group in REQUIRED_GROUPS:
            fake.apply(mk_crd(spec))
    fake.apply(mk_deployment())
    fake.apply(
        mk_pod(
            f"{names.CONTROLLER}-0",
            ns=NS,
            labels=CONTROLLER_LABELS,
            containers=(names.CONTROLLER,),
            annotations={},
        )
    )
    fake.apply(mk_secret(names.IDENTITY_SECRET, identity))
    fake.apply(
        mk_secret(
            names.INJECTOR_TLS_SECRET,
            {"tls.crt": injector_cert, "tls.key": injector_key},
            type_="kubernetes.io/tls",
        )
    )
    fake.apply(mk_webhook(c.ca.ca_pem))
    fake.apply(mk_http_route("web"))
    admin = f"http://{c.admin}"
    fake.forward(NS, names.ADMIN_SERVICE, names.ADMIN_PORT, admin)
    fake.forward(NS, f"{names.CONTROLLER}-0", names.ADMIN_PORT, admin, resource="pods")
    fake.forward(NS, names.INJECTOR_SERVICE, 443, f"https://{c.injector}")


@contextlib.asynccontextmanager
async def running_cluster(tmp: Path) -> AsyncIterator[Cluster]:
    """Everything installed and healthy; tests then break one piece."""
    stack = contextlib.AsyncExitStack()
    async with stack:
        fake = await stack.enter_async_context(ClusterFakeApiServer())
        (tmp / "manifests").mkdir()
        (tmp / "manifests" / "web.yaml").write_text(split(90, 10))
        switch = Switch()
        server = AdsServer(translator=switch, settings=ServerSettings(stop_grace_ms=0))
        await server.start("127.0.0.1", 0)
        stack.push_async_callback(server.stop)
        plane = ControlPlane(publish=server.publish)
        source = DirectorySource(tmp / "manifests", plane=plane, settings=FAST_DIR)
        await source.start()
        stack.push_async_callback(source.stop)
        await source.wait_watching(timeout_ms=int(TIMEOUT_S * 1000))
        runner, port = await start_admin(admin_app(plane, server), "127.0.0.1", 0)
        stack.push_async_callback(runner.cleanup)
        ca = Authority("turnout injector CA")
        cert, key = serving_leaf(ca, INJECTOR_DNS)
        (tmp / "injector").mkdir()
        inj_runner, inj_port = await start_injector(cert, key, tmp / "injector")
        stack.push_async_callback(inj_runner.cleanup)
        c = Cluster(
            fake=fake,
            kubeconfig=write_kubeconfig(tmp / "kubeconfig", fake.url),
            directory=tmp / "manifests",
            server=server,
            admin=f"127.0.0.1:{port}",
            switch=switch,
            ca=ca,
            injector=f"127.0.0.1:{inj_port}",
        )
        install(c, identity_files(tmp / "identity"), cert, key)
        try:
            yield c
        finally:
            for client in c.clients:
                await client.stop()
