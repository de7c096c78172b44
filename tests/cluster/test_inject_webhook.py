"""The injector webhook for real: AdmissionReview v1 over HTTPS to `mesh serve --injector`
(certificates made here, the client verifying against their CA), the JSONPatch applied by an
RFC 6902 applier of the tests' own, and the result compared with `mesh inject --manual`."""

from __future__ import annotations

import asyncio
import io
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.certs import Authority
from tests.cluster.jsonpatch_apply import apply_patch
from tests.cluster.webhook_support import (
    SERVICE_NAME,
    Injector,
    injector_url,
    mk_pod,
    start_serve,
    stop_serve,
    write_certs,
)
from turnout.cli.main import main
from turnout.cluster import names
from turnout.cluster.inject.webhook import InjectorWebhook, WebhookSettings

Obj = dict[str, Any]


def manual(pod: Obj, tmp_path: Path) -> Obj:
    path = tmp_path / f"pod-{uuid.uuid4().hex}.yaml"
    path.write_text(yaml.safe_dump(pod))
    out = io.StringIO()
    assert main(["inject", "--manual", str(path)], stdout=out, stderr=io.StringIO()) == 0
    return yaml.safe_load(out.getvalue())  # type: ignore[no-any-return]


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
