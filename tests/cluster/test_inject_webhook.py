"""The injector webhook for real: AdmissionReview v1 over HTTPS to `mesh serve --injector`
(certificates made here, the client verifying against their CA), the JSONPatch applied by an
RFC 6902 applier of the tests' own, and the result compared with `mesh inject --manual`."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import ssl
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.certs import Authority
from tests.cluster.jsonpatch_apply import apply_patch
from turnout.cli.main import main
from turnout.cluster import names
from turnout.cluster.inject.webhook import InjectorWebhook, WebhookSettings

Obj = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
SERVICE_NAME = f"{names.INJECTOR_SERVICE}.{names.NAMESPACE}.svc"
"""What the API server calls the webhook by, and so the name its certificate is for."""
TIMEOUT_S = 20.0


def write_certs(directory: Path, authority: Authority) -> None:
    leaf = authority.leaf(SERVICE_NAME)
    directory.mkdir(exist_ok=True)
    (directory / "tls.crt").write_bytes(leaf.chain_pem)
    (directory / "tls.key").write_bytes(leaf.key_pem)


def mk_pod(ns: str = "shop", *, annotations: Obj | None = None, host_network: bool = False) -> Obj:
    """A pod as a ReplicaSet of Deployment `web` creates it (no name yet, a generateName)."""
    meta: Obj = {
        "generateName": "web-5d4f8c7b9-",
        "namespace": ns,
        "labels": {"app": "web", "pod-template-hash": "5d4f8c7b9"},
        "annotations": {"example.com/owner~team": "a", **(annotations or {})},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-5d4f8c7b9",
                "controller": True,
            }
        ],
    }
    spec: Obj = {
        "serviceAccountName": "web",
        "containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": 8080}]}],
        "volumes": [{"name": "data", "emptyDir": {}}],
    }
    if host_network:
        spec["hostNetwork"] = True
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def mk_review(obj: Obj, *, kind: str = "Pod", operation: str = "CREATE") -> Obj:
    ns = obj["metadata"].get("namespace", "")
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": kind.lower() + "s"},
            "namespace": ns,
            "operation": operation,
            "object": obj,
        },
    }


def manual(pod: Obj, tmp_path: Path) -> Obj:
    path = tmp_path / f"pod-{uuid.uuid4().hex}.yaml"
    path.write_text(yaml.safe_dump(pod))
    out = io.StringIO()
    assert main(["inject", "--manual", str(path)], stdout=out, stderr=io.StringIO()) == 0
    return yaml.safe_load(out.getvalue())  # type: ignore[no-any-return]


class Injector:
    """A client of the webhook that checks the certificate against `ca_pem`."""

    def __init__(self, url: str, ca_pem: bytes) -> None:
        self.url = url
        self.ssl = ssl.create_default_context(cadata=ca_pem.decode())

    async def post(self, body: bytes | Obj) -> tuple[int, Any]:
        kwargs: Obj = {"data": body} if isinstance(body, bytes) else {"json": body}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.post(
                self.url + names.INJECTOR_PATH, ssl=self.ssl, server_hostname=SERVICE_NAME, **kwargs
            ) as resp,
        ):
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()

    async def review(self, obj: Obj, **kw: str) -> tuple[Obj, list[Obj] | None]:
        """The response, and the patch decoded (None: no patch)."""
        review = mk_review(obj, **kw)
        status, answer = await self.post(review)
        assert status == 200, answer
        assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
        response = answer["response"]
        assert response["uid"] == review["request"]["uid"] and response["allowed"] is True
        if "patch" not in response:
            return response, None
        assert response["patchType"] == "JSONPatch"
        return response, json.loads(base64.b64decode(response["patch"]))


async def start_serve(*argv: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("POD_NAMESPACE", names.PROXY_IMAGE_ENV)}
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "turnout", "serve", "--xds", "127.0.0.1:0", "--admin", "127.0.0.1:0",
        "--injector", "127.0.0.1:0", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(TIMEOUT_S):
        while not (lines and lines[-1].startswith("serving")):
            line = (await proc.stdout.readline()).decode()
            if not line:
                assert proc.stderr is not None
                raise AssertionError("mesh serve exited: " + (await proc.stderr.read()).decode())
            lines.append(line.strip())
    return proc, lines


async def stop_serve(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        async with asyncio.timeout(TIMEOUT_S):
            assert await proc.wait() == 0


def injector_url(lines: list[str]) -> str:
    (line,) = [x for x in lines if x.startswith("injector listening on ")]
    return "https://" + line.split()[3]


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    ca = Authority()
    write_certs(tmp_path / "certs", ca)
    return ca


def namespace_doc(name: str, inject: str | None) -> str:
    meta: Obj = {"name": name}
    if inject:
        meta["annotations"] = {names.INJECT_ANNOTATION: inject}
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})


async def test_the_webhook_patches_what_inject_manual_writes(
    tmp_path: Path, authority: Authority
) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "shop.yaml").write_text(namespace_doc("shop", "enabled"))
    proc, lines = await start_serve(
        "--dir", str(manifests), "--injector-cert-dir", str(tmp_path / "certs")
    )
    try:
        client = Injector(injector_url(lines), authority.ca_pem)
        async with (
            aiohttp.ClientSession() as session,
            session.get(client.url + "/ready", ssl=client.ssl, server_hostname=SERVICE_NAME) as r,
        ):
            assert r.status == 200

        # enabled on the namespace (read from the directory): patched, and the patch applied
        # is the pod `mesh inject --manual` prints
        pod = mk_pod()
        response, ops = await client.review(pod)
        assert ops is not None and "warnings" not in response
        assert {
            "op": "add",
            "path": "/metadata/annotations/turnout.dev~1injected",
            "value": "0.1.0",
        } in ops
        patched = apply_patch(pod, ops)
        assert patched == manual(pod, tmp_path)
        proxy = patched["spec"]["containers"][0]
        assert proxy["args"][proxy["args"].index("--workload") + 1] == "deployment/web"
        assert patched["spec"]["volumes"][0]["name"] == "data"
        # nothing of the pod is replaced: each addition is its own operation
        assert {op["op"] for op in ops} == {"add"}
        assert {"/spec/containers/0", "/spec/initContainers", "/spec/volumes/1"} <= {
            op["path"] for op in ops
        }

        # already injected: untouched
        assert (await client.review(patched))[1] is None
        # the pod's own annotation wins over its namespace's, both ways
        assert (await client.review(mk_pod(annotations={names.INJECT_ANNOTATION: "disabled"})))[
            1
        ] is None
        assert (await client.review(mk_pod("plain")))[1] is None
        enabled = mk_pod("plain", annotations={names.INJECT_ANNOTATION: "enabled"})
        assert (await client.review(enabled))[1] is not None
        # never: kube-system; hostNetwork (with a warning)
        system = mk_pod("kube-system", annotations={names.INJECT_ANNOTATION: "enabled"})
        assert (await client.review(system))[1] is None
        response, ops = await client.review(mk_pod(host_network=True))
        assert ops is None and '"hostNetwork: true"' in response["warnings"][0]
        # only Pod CREATE is looked at
        assert (await client.review(pod, kind="Deployment"))[1] is None
        assert (await client.review(pod, operation="UPDATE"))[1] is None
        # not an AdmissionReview at all: 400, nothing to echo
        assert (await client.post(b"{not json"))[0] == 400
        assert (await client.post({"request": {"object": {}}}))[0] == 400

        # the namespace's annotation is read again when the directory changes
        (manifests / "shop.yaml").write_text(namespace_doc("shop", "disabled"))
        assert (await client.review(mk_pod()))[1] is None
    finally:
        await stop_serve(proc)


async def test_a_new_certificate_is_served_without_a_restart(
    tmp_path: Path, authority: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    certs = tmp_path / "certs"
    webhook = InjectorWebhook(certs, webhook=WebhookSettings(reload_interval_s=0.02))
    port = await webhook.start("127.0.0.1", 0)
    try:
        url = f"https://127.0.0.1:{port}"
        assert (await Injector(url, authority.ca_pem).review(mk_pod()))[0]["allowed"]
        # a key that does not fit the certificate: logged, the old pair kept
        (certs / "tls.key").write_bytes(Authority().leaf(SERVICE_NAME).key_pem)
        async with asyncio.timeout(5):
            while "injector certificate kept" not in caplog.text:
                await asyncio.sleep(0.02)
        assert (await Injector(url, authority.ca_pem).review(mk_pod()))[0]["allowed"]
        # a whole new pair from another CA: new handshakes present it
        other = Authority("rotated CA")
        write_certs(certs, other)
        async with asyncio.timeout(5):
            while True:
                try:
                    await Injector(url, other.ca_pem).review(mk_pod())
                    break
                except aiohttp.ClientConnectorCertificateError:
                    await asyncio.sleep(0.02)
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await Injector(url, authority.ca_pem).review(mk_pod())
    finally:
        await webhook.stop()


def test_serve_injector_without_a_certificate_is_one_line_and_exit_2(tmp_path: Path) -> None:
    base = ["serve", "--dir", str(tmp_path), "--xds", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
    err = io.StringIO()
    assert main([*base, "--injector", "127.0.0.1:0"], stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue() == "error: --injector needs --injector-cert-dir (tls.crt, tls.key)\n"
    err = io.StringIO()
    argv = [*base, "--injector", "127.0.0.1:0", "--injector-cert-dir", str(tmp_path)]
    assert main(argv, stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue() == (
        f"error: --injector: cannot read {tmp_path}/tls.crt: No such file or directory\n"
    )
