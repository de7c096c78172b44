"""`mesh upgrade` against the fake API server holding what `mesh install` printed: the same
objects for the same values, but the cluster's trust anchor and injector certificate kept
(so running proxies and the API server's caBundle stay valid); no Turnout, one line, exit 2."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from tests.cluster import kubectl
from tests.cluster.check_kit import write_kubeconfig
from tests.engine.sources.k8s_fake_cluster import ClusterFakeApiServer
from turnout.cli.main import main
from turnout.cluster import names
from turnout.engine.sources.k8s.rbac import Rule

Obj = kubectl.Obj


async def mesh(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(main, list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def by_name(objs: list[Obj]) -> dict[tuple[str, str], Obj]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


async def test_upgrade_keeps_the_trust_anchor_and_the_webhook_certificate(tmp_path: Path) -> None:
    async with ClusterFakeApiServer() as fake:
        config = str(write_kubeconfig(tmp_path / "kubeconfig", fake.url))
        code, manifest, _ = await mesh("install")
        assert code == 0
        kubectl.apply(fake, manifest)
        installed = by_name(list(kubectl.documents(manifest)))
        code, again, err = await mesh("install")
        assert code == 0
        fresh = by_name(list(kubectl.documents(again)))
        secret = ("Secret", names.IDENTITY_SECRET)
        assert fresh[secret]["data"] != installed[secret]["data"], "install makes a new anchor"

        code, text, err = await mesh("upgrade", "--kubeconfig", config, "--ha")
        assert code == 0, err
        assert err.startswith("note: trust anchor and injector certificate kept"), err
        upgraded = by_name(list(kubectl.documents(text)))
        for key in (secret, ("Secret", names.INJECTOR_TLS_SECRET)):
            assert upgraded[key]["data"] == installed[key]["data"]
        hook = ("MutatingWebhookConfiguration", names.WEBHOOK_CONFIGURATION)
        assert upgraded[hook] == installed[hook], "the same caBundle"
        assert set(upgraded) == set(installed) | {("PodDisruptionBudget", names.CONTROLLER)}
        assert upgraded[("Deployment", names.CONTROLLER)]["spec"]["replicas"] == 3
        kubectl.apply(fake, text)  # and it applies

        # a Secret written before the Secret carried ca.crt: the caBundle is the CA
        kind = kubectl.served_kind(fake, installed[("Secret", names.INJECTOR_TLS_SECRET)])
        tls = fake.get(kind, names.NAMESPACE, names.INJECTOR_TLS_SECRET)
        del tls["data"]["ca.crt"]
        fake.apply(tls)
        code, text, err = await mesh("upgrade", "--kubeconfig", config, "-o", "json")
        assert code == 0, err
        assert by_name(list(kubectl.documents(text)))[hook] == installed[hook]


async def test_no_turnout_or_no_access_is_one_line_and_exit_2(tmp_path: Path) -> None:
    async with ClusterFakeApiServer() as fake:
        config = str(write_kubeconfig(tmp_path / "kubeconfig", fake.url))
        code, out, err = await mesh("upgrade", "--kubeconfig", config)
        assert (code, out) == (2, "")
        assert err == (
            "error: Secret turnout/turnout-identity not found: Turnout is not installed in"
            " namespace turnout (mesh install | kubectl apply -f -)\n"
        )
        code, manifest, _ = await mesh("install")
        kubectl.apply(fake, manifest)
        fake.enforce([Rule(("",), ("pods",), ("get",))], user="system:serviceaccount:x:me")
        code, out, err = await mesh("upgrade", "--kubeconfig", config)
        assert (code, out) == (2, "")
        assert err.startswith("error: cannot read Secret turnout/turnout-identity: GET ")
        assert "HTTP 403" in err and "forbidden" in err and len(err.splitlines()) == 1, err
        code, out, err = await mesh("upgrade", "--kubeconfig", str(tmp_path / "none"))
        assert (code, out) == (2, "")
        assert err.startswith("error: cannot read Secret turnout/turnout-identity: ")


async def test_an_identity_secret_that_is_no_identity_directory_is_named(tmp_path: Path) -> None:
    async with ClusterFakeApiServer() as fake:
        config = str(write_kubeconfig(tmp_path / "kubeconfig", fake.url))
        code, manifest, _ = await mesh("install")
        (secret,) = [
            o
            for o in kubectl.apply(fake, manifest)
            if (o["kind"], o["metadata"]["name"]) == ("Secret", names.IDENTITY_SECRET)
        ]
        data = secret["data"]
        data["issuer.crt"], data["anchor.crt"] = data["anchor.crt"], data["issuer.crt"]
        fake.apply(secret)
        code, out, err = await mesh("upgrade", "--kubeconfig", config)
        assert (code, out) == (2, "")
        assert err.startswith("error: Secret turnout/turnout-identity: "), err
        del secret["data"]["token.key"]
        fake.apply(secret)
        code, out, err = await mesh("upgrade", "--kubeconfig", config)
        assert err == "error: Secret turnout/turnout-identity has no token.key\n"
