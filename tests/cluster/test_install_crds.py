"""`mesh install --crds`: our CRDs on stdout (pure YAML), the Gateway API CRDs checked
against a cluster (the fake API server, reached through a kubeconfig) or, without one, how
to get them, on stderr; ``--skip-existing`` leaves out what another mesh installed."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.engine.sources.k8s_fake import FakeApiServer, ServedKind
from turnout.cli.main import main
from turnout.cluster import names
from turnout.cluster.install.crds import OWN_CRDS, STANDARD_INSTALL, gateway_api_kinds

Obj = dict[str, Any]
CRD = ServedKind(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False
)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def kubeconfig(tmp_path: Path, url: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": url}}],
                "users": [{"name": "me", "user": {"token": "t"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
                "current-context": "fake",
            }
        )
    )
    return str(path)


def crd(name: str, *versions: str, labels: dict[str, str] | None = None) -> Obj:
    plural, _, group = name.partition(".")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "group": group,
            "names": {"plural": plural},
            "versions": [{"name": v, "served": True, "storage": False} for v in versions],
        },
    }


async def install_crds(fake: FakeApiServer, tmp_path: Path, *flags: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(
        run, "install", "--crds", "--kubeconfig", kubeconfig(tmp_path, fake.url), *flags
    )


def test_without_a_cluster_stdout_is_our_crds_and_stderr_says_how_to_get_gateway_api() -> None:
    code, out, err = run("install", "--crds", "--ignore-cluster")
    assert code == 0
    objs = list(yaml.safe_load_all(out))
    assert {o["kind"] for o in objs} == {"CustomResourceDefinition"}
    shipped = {yaml.safe_load(p.read_text())["metadata"]["name"] for p in OWN_CRDS.glob("*.yaml")}
    assert {o["metadata"]["name"] for o in objs} == shipped
    assert all(o["metadata"]["labels"][names.PART_OF_LABEL] == "turnout" for o in objs)
    assert not any(o["spec"]["group"] == "gateway.networking.k8s.io" for o in objs)
    assert "were not checked (--ignore-cluster)" in err
    assert all(f"{k.kind} {k.version}" in err for k in gateway_api_kinds())
    assert f"kubectl apply --server-side -f {STANDARD_INSTALL}" in err
    assert all(line.startswith(("note: ", "warning: ")) for line in err.splitlines())


def test_an_unreachable_cluster_is_a_note_not_a_failure(tmp_path: Path) -> None:
    code, out, err = run(
        "install", "--crds", "--kubeconfig", kubeconfig(tmp_path, "http://127.0.0.1:1")
    )
    assert code == 0 and out.startswith("---\napiVersion: apiextensions.k8s.io/v1")
    assert "not checked (no cluster: http://127.0.0.1:1:" in err and STANDARD_INSTALL in err
    code, out, err = run(
        "install",
        "--crds",
        "--skip-existing",
        "--kubeconfig",
        kubeconfig(tmp_path, "http://127.0.0.1:1"),
    )
    assert (code, out) == (2, "") and "error: --skip-existing needs a cluster" in err


async def test_gateway_api_crds_at_the_watched_versions_are_confirmed(tmp_path: Path) -> None:
    async with FakeApiServer([CRD]) as fake:
        for k in gateway_api_kinds():
            fake.apply(crd(f"{k.plural}.{k.group}", "v1beta1", k.version))
        code, _, err = await install_crds(fake, tmp_path)
    assert code == 0
    assert err.count("note: ✔") == len(gateway_api_kinds()) and "×" not in err
    assert STANDARD_INSTALL not in err


async def test_missing_or_old_gateway_api_crds_are_named_with_the_way_to_get_them(
    tmp_path: Path,
) -> None:
    async with FakeApiServer([CRD]) as fake:
        fake.apply(crd("httproutes.gateway.networking.k8s.io", "v1beta1"))
        code, out, err = await install_crds(fake, tmp_path)
    assert code == 0 and yaml.safe_load_all(out)
    assert "note: × httproutes.gateway.networking.k8s.io serves v1beta1, Turnout watches v1" in err
    assert "note: × grpcroutes.gateway.networking.k8s.io is not installed" in err
    assert "(optional: retry budgets)" in err and STANDARD_INSTALL in err


async def test_skip_existing_leaves_out_the_crds_another_mesh_installed(tmp_path: Path) -> None:
    linkerd = "servers.policy.linkerd.io"
    ours = "faultinjections.policy.turnout.dev"
    async with FakeApiServer([CRD]) as fake:
        fake.apply(crd(linkerd, "v1beta3", labels={"linkerd.io/control-plane-ns": "linkerd"}))
        fake.apply(crd(ours, "v1alpha1", labels={names.PART_OF_LABEL: "turnout"}))
        _, plain, warned = await install_crds(fake, tmp_path)
        code, skipped, noted = await install_crds(fake, tmp_path, "--skip-existing")
    everything = [o["metadata"]["name"] for o in yaml.safe_load_all(plain)]
    assert linkerd in everything and ours in everything
    assert f"warning: CRD {linkerd} exists and was not installed by Turnout" in warned
    assert ours not in warned
    left = [o["metadata"]["name"] for o in yaml.safe_load_all(skipped)]
    assert code == 0 and left == [n for n in everything if n != linkerd]
    assert f"note: skipped CRD {linkerd}" in noted


@pytest.mark.parametrize("output", ["yaml", "json"])
def test_crds_print_as_yaml_or_one_json_list(output: str) -> None:
    code, out, _ = run("install", "--crds", "--ignore-cluster", "-o", output)
    assert code == 0
    if output == "json":
        doc = yaml.safe_load(out)
        assert doc["kind"] == "List" and len(doc["items"]) == len(list(OWN_CRDS.glob("*.yaml")))
