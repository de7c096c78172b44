"""What the `mesh check` tests share: a fake API server holding what `mesh install` creates, a
real control plane (as `mesh serve` runs it, in process) and the real injector webhook behind
the API server's proxy, and `mesh check` run as the command line runs it.

```
mesh check (a thread: its own loop) ──kubeconfig──> ClusterFakeApiServer ──proxy──> admin :N
                                                     │ objects: mesh install's      /ready
                                                     │ install_objects + own_crds   /debug/proxies
                                                     └──proxy──> InjectorWebhook (HTTPS) /ready
AdsServer <──ADS── XdsClient / `mesh proxy --pod web-1` (real clients, node ids as mesh proxy sends)
```

The control plane's objects are what `mesh install` renders (`install_objects`, with a
status a running cluster would add); the Gateway API CRDs (not ours to ship), the workload
pods and the routes are built by small builders (`mk_crd`, `mk_pod`, `mk_http_route`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime as dt
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.certs import Authority
from tests.engine.server.ads_kit import FAST, Tables, split
from tests.engine.sources.k8s_fake_cluster import ClusterFakeApiServer
from turnout.cli.main import main
from turnout.cluster import names
from turnout.cluster.check.control_plane import STANDARD_GATEWAY_KINDS
from turnout.cluster.inject.webhook import InjectorWebhook
from turnout.cluster.install.crds import own_crds
from turnout.cluster.install.render import install_objects
from turnout.cluster.install.values import Values
from turnout.cluster.install.webhook import ServingCert, serving_cert_for
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


# ---------------------------------------------------------------- objects, as install makes them


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mk_namespace(name: str, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "annotations": dict(annotations)},
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
class Leader:
    """The control plane's leader election as its admin port shows it (`admin.Leadership`):
    the test says whether this replica leads."""

    leading: bool = True

    def describe(self) -> dict[str, object]:
        holder = f"{names.CONTROLLER}-0" if self.leading else f"{names.CONTROLLER}-gone"
        return {
            "lease": f"{NS}/{names.LEASE}",
            "identity": f"{names.CONTROLLER}-0",
            "leading": self.leading,
            "holder": holder,
            "transitions": 0,
        }


@dataclass
class Cluster:
    fake: ClusterFakeApiServer
    kubeconfig: Path
    directory: Path
    server: AdsServer
    admin: str
    switch: Switch
    leader: Leader
    cert: ServingCert
    """The injector's CA and serving certificate, as `mesh install` made them."""
    injector: str = ""
    deployment: dict[str, Any] = field(default_factory=dict)
    """The controller Deployment `mesh install` rendered (without status)."""
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


async def start_injector(cert: ServingCert, tmp: Path) -> InjectorWebhook:
    """The real injector webhook (`mesh serve --injector`) serving `cert`, as mounted from
    the turnout-injector-tls Secret at --injector-cert-dir."""
    tmp.mkdir(exist_ok=True)
    (tmp / "tls.crt").write_bytes(cert.tls_crt)
    (tmp / "tls.key").write_bytes(cert.tls_key)
    injector = InjectorWebhook(tmp)
    await injector.start("127.0.0.1", 0)
    return injector


def controller_pod(deployment: dict[str, Any], *, ready: bool = True) -> dict[str, Any]:
    """The pod the controller Deployment runs (its template), Running and Ready."""
    template = deployment["spec"]["template"]
    pod = mk_pod(
        f"{names.CONTROLLER}-0",
        ns=NS,
        labels=dict(template["metadata"]["labels"]),
        containers=tuple(c["name"] for c in template["spec"]["containers"]),
        ready=ready,
        annotations=dict(template["metadata"].get("annotations") or {}),
    )
    pod["spec"] = copy.deepcopy(template["spec"])
    return pod


def with_status(deployment: dict[str, Any], *, ready: int) -> dict[str, Any]:
    out = copy.deepcopy(deployment)
    want = out["spec"]["replicas"]
    out["status"] = {"replicas": want, "readyReplicas": ready, "availableReplicas": ready}
    return out


def with_ca_bundle(c: Cluster, ca_pem: bytes) -> None:
    """The installed webhook configuration, with another caBundle."""
    kind = next(k for k in c.fake.served.values() if k.kind == "MutatingWebhookConfiguration")
    mwc = c.fake.get(kind, "", names.WEBHOOK_CONFIGURATION)
    mwc["webhooks"][0]["clientConfig"]["caBundle"] = b64(ca_pem)
    c.fake.apply(mwc)


def install(c: Cluster, identity: dict[str, bytes]) -> None:
    """What `mesh install --crds` and `mesh install` print, applied (their own renderer, the
    Gateway API CRDs Turnout does not ship by hand), with the controller running."""
    fake = c.fake
    for crd in [*own_crds(), *(mk_crd(k) for k in STANDARD_GATEWAY_KINDS)]:
        fake.apply(crd)
    for obj in install_objects(Values(), identity=identity, cert=c.cert):
        if obj["kind"] == "Deployment":
            c.deployment = obj
            obj = with_status(obj, ready=1)
        fake.apply(obj)
    fake.apply(controller_pod(c.deployment))
    fake.apply(mk_namespace(APP_NS, **{names.INJECT_ANNOTATION: "enabled"}))
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
        leader = Leader()
        app = admin_app(plane, server, leadership=leader)
        runner, port = await start_admin(app, "127.0.0.1", 0)
        stack.push_async_callback(runner.cleanup)
        cert = serving_cert_for(Values(), now=dt.datetime.now(dt.UTC))
        injector = await start_injector(cert, tmp / "injector")
        stack.push_async_callback(injector.stop)
        c = Cluster(
            fake=fake,
            kubeconfig=write_kubeconfig(tmp / "kubeconfig", fake.url),
            directory=tmp / "manifests",
            server=server,
            admin=f"127.0.0.1:{port}",
            switch=switch,
            leader=leader,
            cert=cert,
            injector=f"127.0.0.1:{injector.port}",
        )
        install(c, identity_files(tmp / "identity"))
        try:
            yield c
        finally:
            for client in c.clients:
                await client.stop()
