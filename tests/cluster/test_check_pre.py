"""`mesh check --pre` against the fake API server: the version, the permissions (real
SelfSubjectAccessReviews answered by a rule set), an existing namespace, the Gateway API CRDs;
and the errors before any request (a kubeconfig that cannot be read, flags that clash)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster.check_kit import NS, mk_crd, mk_namespace, write_kubeconfig
from tests.engine.sources.k8s_fake_cluster import ClusterFakeApiServer
from tests.proxy.e2e.harness import bounded, dead_port
from turnout.cli.main import main
from turnout.cluster.check.pre import GATEWAY_API_KINDS, INSTALLED_KINDS
from turnout.engine.sources.k8s.rbac import Rule


@pytest.fixture
async def fake() -> AsyncIterator[ClusterFakeApiServer]:
    async with ClusterFakeApiServer() as api:
        for spec in GATEWAY_API_KINDS:
            api.apply(mk_crd(spec))
        yield api


async def check(kubeconfig: Path, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["check", "--pre", "--kubeconfig", str(kubeconfig), *args]
    code = await asyncio.to_thread(main, argv, stdout=out, stderr=err)
    return code, out.getvalue() + err.getvalue()


@bounded(20)
async def test_a_cluster_ready_for_turnout_passes_every_pre_check(
    fake: ClusterFakeApiServer, tmp_path: Path
) -> None:
    code, out = await check(write_kubeconfig(tmp_path / "kc", fake.url))
    assert code == 0, out
    assert out.splitlines()[:4] == [
        "kubernetes-api",
        "--------------",
        "√ can initialize the client",
        "√ can query the Kubernetes API",
    ]
    for kind in INSTALLED_KINDS:
        assert f"√ can create {kind.kind}" in out
    assert "√ control plane namespace does not already exist" in out
    assert "√ Gateway API CRDs are installed" in out
    reviews = fake.count("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
    assert reviews == len(INSTALLED_KINDS)


@bounded(20)
async def test_missing_permissions_an_old_server_and_what_only_warns(
    fake: ClusterFakeApiServer, tmp_path: Path
) -> None:
    kc = write_kubeconfig(tmp_path / "kc", fake.url)
    # a namespace admin: everything but the cluster-scoped RBAC kinds, and no --ha
    fake.access_rules = (
        Rule(("", "apps", "apiextensions.k8s.io", "admissionregistration.k8s.io"), ("*",), ("*",)),
    )
    fake.apply(mk_namespace(NS))
    crd_kind = next(k for k in fake.served.values() if k.plural == "customresourcedefinitions")
    fake.delete(crd_kind, "", "httproutes.gateway.networking.k8s.io")
    code, out = await check(kc, "-o", "json")
    assert code == 1, out
    data = json.loads(out)
    checks = {c["description"]: c for cat in data["categories"] for c in cat["checks"]}
    assert checks["can create ClusterRoles"]["result"] == "error"
    assert checks["can create ClusterRoles"]["error"] == "not allowed to create clusterroles"
    assert "cluster-admin" in checks["can create ClusterRoles"]["hint"]
    assert checks["can create ClusterRoleBindings"]["result"] == "error"
    assert checks["can create PodDisruptionBudgets"]["result"] == "warning"
    assert checks["can create Deployments"]["result"] == "success"
    ns = checks["control plane namespace does not already exist"]
    assert (ns["result"], ns["error"]) == ("warning", f'namespace "{NS}" already exists')
    gw = checks["Gateway API CRDs are installed"]
    assert (
        gw["result"] == "warning"
        and gw["error"] == "not installed: httproutes.gateway.networking.k8s.io"
    )
    assert "standard-install.yaml" in gw["hint"] and "http" not in gw["hint"]

    fake.access_rules = None
    code, out = await check(kc)
    assert code == 0, out  # warnings only
    assert "‼ Gateway API CRDs are installed" in out and out.rstrip().endswith("√")

    fake.version = {"major": "1", "minor": "27+", "gitVersion": "v1.27.9-eks"}
    code, out = await check(kc)
    assert code == 1
    assert (
        "× is running the minimum Kubernetes API version\n    Kubernetes is on version v1.27.9-eks, older than 1.29\n"
        in out
    )


@bounded(20)
async def test_no_api_server_or_no_kubeconfig_stops_at_the_first_category(tmp_path: Path) -> None:
    code, out = await check(write_kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{dead_port()}"))
    assert code == 1
    assert out.splitlines()[2:5] == [
        "√ can initialize the client",
        "× can query the Kubernetes API",
        out.splitlines()[4],
    ]
    assert "Connection refused" in out.splitlines()[4] or "refused" in out
    assert "kubernetes-version" not in out

    code, out = await check(tmp_path / "missing")
    assert code == 1 and "× can initialize the client" in out and "--kubeconfig" in out


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("--proxy",), id="pre-and-proxy"),
        pytest.param(("--injector-url", "https://x:1"), id="injector-with-pre"),
        pytest.param(("--wait", "soon"), id="bad-duration"),
    ],
)
def test_flags_that_do_not_fit_are_usage_errors(args: tuple[str, ...], tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["check", "--pre", *args], stdout=out, stderr=err) == 2
    assert err.getvalue().startswith("error: ") and err.getvalue().count("\n") == 1
    out, err = io.StringIO(), io.StringIO()
    assert main(["check", "--injector-url", "http://x:1"], stdout=out, stderr=err) == 2
    assert "want https://HOST:PORT" in err.getvalue()
