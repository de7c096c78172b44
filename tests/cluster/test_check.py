"""`mesh check` against a fake API server holding what `mesh install` creates, with the real
control plane (in process, as `mesh serve` runs it) behind the API server's proxy: green,
then each piece broken in turn, each with its × (or ‼) line, its explanation and the exit code."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from tests.certs import Authority
from tests.cluster.check_kit import (
    APP_NS,
    INJECTOR_DNS,
    NS,
    Cluster,
    controller_pod,
    identity_files,
    mk_crd,
    mk_http_route,
    mk_secret,
    running_cluster,
    serving_leaf,
    with_ca_bundle,
    with_status,
)
from tests.proxy.e2e.harness import bounded
from turnout.cluster import names
from turnout.cluster.install.crds import own_crds
from turnout.engine.config import POLICY_GROUP
from turnout.engine.sources.k8s.kinds import ROUTE_KINDS, WATCHED_KINDS

CATEGORIES = [
    "kubernetes-api",
    "kubernetes-version",
    "turnout-existence",
    "turnout-crds",
    "turnout-identity",
    "turnout-webhooks-and-apisvc-tls",
    "turnout-status",
]
FAULT_INJECTION = next(k for k in WATCHED_KINDS if k.group == POLICY_GROUP)
HTTP_ROUTE = ROUTE_KINDS["HTTPRoute"]


def block(out: str, description: str) -> list[str]:
    """The line of `description` and the indented lines under it."""
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line[2:] == description)
    under = [line.strip() for line in lines[at + 1 :]]
    n = next(
        (i for i, line in enumerate(lines[at + 1 :]) if not line.startswith("    ")), len(under)
    )
    return [lines[at], *under[:n]]


async def failing(c: Cluster, description: str, *args: str) -> list[str]:
    code, out = await c.check(*args)
    assert code == 1, out
    assert out.rstrip().endswith("Status check results are ×"), out
    got = block(out, description)
    assert got[0] == f"× {description}", out
    assert len(got) >= 3, f"a × has its error and its explanation: {got}"
    return got


@bounded(40)
async def test_a_healthy_install_is_all_green_in_every_output(tmp_path: Path) -> None:
    async with running_cluster(tmp_path) as c:
        code, out = await c.check()
        assert code == 0, out
        assert "×" not in out and "‼" not in out, out
        assert out.rstrip().endswith("Status check results are √")
        heads = [
            line
            for i, line in enumerate(out.splitlines())
            if out.splitlines()[i + 1 : i + 2] == ["-" * len(line)] and line
        ]
        assert heads == CATEGORIES

        code, out = await c.check("-o", "short")
        assert (code, out) == (0, "Status check results are √\n")

        code, out = await c.check("-o", "json")
        data = json.loads(out)
        assert code == 0 and data["success"] is True
        assert [cat["categoryName"] for cat in data["categories"]] == CATEGORIES
        check = data["categories"][2]["checks"][1]
        assert check == {
            "description": "control plane pods are ready",
            "hint": "",
            "error": "",
            "result": "success",
        }


@bounded(40)
async def test_each_broken_control_plane_piece_is_a_cross_with_its_explanation(
    tmp_path: Path,
) -> None:
    async with running_cluster(tmp_path) as c:
        fake = c.fake
        crd_kind = next(k for k in fake.served.values() if k.plural == "customresourcedefinitions")
        fake.delete(crd_kind, "", f"{FAULT_INJECTION.plural}.{POLICY_GROUP}")
        got = await failing(c, "Turnout CustomResourceDefinitions exist")
        assert got[1] == f"{FAULT_INJECTION.plural}.{POLICY_GROUP} not found"
        assert "mesh install --crds" in got[2]
        fake.apply(next(crd for crd in own_crds() if crd["spec"]["group"] == POLICY_GROUP))

        fake.apply(mk_crd(HTTP_ROUTE, versions=("v1beta1",)))  # an old Gateway API release
        got = await failing(c, "Gateway API CustomResourceDefinitions exist")
        assert got[1] == "httproutes.gateway.networking.k8s.io does not serve v1 (serves v1beta1)"
        fake.apply(mk_crd(HTTP_ROUTE))
        servers = next(k for k in WATCHED_KINDS if k.kind == "Server")  # Linkerd's, before v1beta3
        fake.apply(mk_crd(servers, versions=("v1beta1", "v1beta2")))
        got = await failing(c, "CustomResourceDefinitions serve the versions Turnout watches")
        assert (
            got[1] == "servers.policy.linkerd.io does not serve v1beta3 (serves v1beta1, v1beta2)"
        )
        fake.apply(mk_crd(servers))

        fake.apply(with_status(c.deployment, ready=0))
        fake.apply(controller_pod(c.deployment, ready=False))
        got = await failing(c, "control plane pods are ready")
        assert got[1:3] == [
            f"deployment/{names.CONTROLLER} in namespace {NS}: 0/1 replicas ready",
            f"pod/{names.CONTROLLER}-0 is not ready (phase Running)",
        ]
        fake.apply(with_status(c.deployment, ready=1))
        fake.apply(controller_pod(c.deployment))

        fake.unforward(NS, names.ADMIN_SERVICE, names.ADMIN_PORT)  # no endpoints behind the Service
        got = await failing(c, "control plane is serving a table")
        assert got[1].startswith(f"service/{names.ADMIN_SERVICE}:{names.ADMIN_PORT} /ready: 503")
        code, out = await c.check("--control-plane", c.admin)  # asked directly, it answers
        assert code == 0, out
        fake.forward(NS, names.ADMIN_SERVICE, names.ADMIN_PORT, f"http://{c.admin}")

        route = mk_http_route("web")
        route["spec"]["rules"][0]["backendRefs"][0]["port"] = 8080  # generation 2, status of 1
        fake.apply(route)
        got = await failing(c, "route status is up to date")
        assert got[1] == "httproute/shop/web (generation 2): status observedGeneration 1"
        fake.apply(mk_http_route("api", generation_seen=None))
        got = await failing(c, "route status is up to date")
        assert (
            f"httproute/{APP_NS}/api (generation 1): no status from turnout.dev/gateway-controller"
            in got
        )

        code, out = await c.check("-o", "json")
        data = json.loads(out)
        assert code == 1 and data["success"] is False
        [bad] = [
            ch for cat in data["categories"] for ch in cat["checks"] if ch["result"] == "error"
        ]
        assert (
            bad["description"] == "route status is up to date"
            and bad["hint"]
            and "generation 2" in bad["error"]
        )


@bounded(40)
async def test_the_status_lease_must_have_a_live_holder_and_one_replica_lead(
    tmp_path: Path,
) -> None:
    async with running_cluster(tmp_path) as c:
        now = dt.datetime.now(dt.UTC)
        lease: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": names.LEASE, "namespace": NS},
            "spec": {
                "holderIdentity": f"{names.CONTROLLER}-0",
                "leaseDurationSeconds": 15,
                "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            },
        }
        c.fake.apply(lease)
        code, out = await c.check()
        assert code == 0 and "√ a leader holds the status Lease" in out, out
        lease["spec"]["renewTime"] = (now - dt.timedelta(minutes=5)).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"
        )
        c.fake.apply(lease)
        got = await failing(c, "a leader holds the status Lease")
        assert got[1].startswith(
            f"lease/{names.LEASE} held by {names.CONTROLLER}-0 was not renewed since"
        )

        c.leader.leading = False  # the replica lost the Lease (and nobody else has it)
        got = await failing(c, "a control plane replica leads status writing")
        assert got[1] == f"no replica leads (of {names.CONTROLLER}-0)"
        c.leader.leading = True

        # a request the user may not make: a × in the category that needed it, and no more
        c.fake.fail("GET", f"/apis/apps/v1/namespaces/{NS}/deployments", status=403)
        got = await failing(c, "can read what this category checks")
        assert got[1].startswith(f"GET /apis/apps/v1/namespaces/{NS}/deployments/")
        assert "injected 403" in got[1] and "kubectl auth can-i" in got[2]
        code, out = await c.check("-o", "short")
        assert code == 1 and out.startswith("turnout-status\n")  # only the stale Lease is left


@bounded(40)
async def test_the_identity_issuer_expiring_expired_or_from_another_anchor(tmp_path: Path) -> None:
    async with running_cluster(tmp_path) as c:
        now = dt.datetime.now(dt.UTC)
        soon = identity_files(tmp_path / "soon", now=now - dt.timedelta(days=335))  # 30 days left
        c.fake.apply(mk_secret(names.IDENTITY_SECRET, soon))
        code, out = await c.check()
        assert code == 0, out  # a warning does not fail the check
        got = block(out, "issuer cert is valid for at least 60 days")
        assert got[0] == "‼ issuer cert is valid for at least 60 days"
        assert (
            "issuer sha256=" in got[1]
            and " expires " in got[1]
            and "mesh identity rotate --issuer" in got[2]
        )

        expired = identity_files(tmp_path / "expired", now=now - dt.timedelta(days=400))
        c.fake.apply(mk_secret(names.IDENTITY_SECRET, expired))
        got = await failing(c, "issuer cert is within its validity period")
        assert " expired " in got[1]

        other = identity_files(tmp_path / "other")
        c.fake.apply(
            mk_secret(
                names.IDENTITY_SECRET,
                {**other, "issuer.crt": soon["issuer.crt"], "issuer.key": soon["issuer.key"]},
            )
        )
        got = await failing(c, "issuer cert is issued by the trust anchor")
        assert got[1].endswith("is signed by no trusted anchor")

        c.fake.apply(mk_secret(names.IDENTITY_SECRET, {**other, "issuer.key": soon["issuer.key"]}))
        got = await failing(c, "certificate config is valid")
        assert (
            got[1]
            == f"secret/{names.IDENTITY_SECRET} in namespace {NS}: issuer.key: does not belong to issuer.crt"
        )


@bounded(40)
async def test_the_injector_certificate_must_be_the_ca_bundles_and_the_injector_reachable(
    tmp_path: Path,
) -> None:
    async with running_cluster(tmp_path) as c:
        code, out = await c.check("--injector-url", f"https://{c.injector}")
        assert code == 0, out  # verified against the caBundle under turnout-injector.turnout.svc

        stranger = Authority("someone else's CA")
        cert, key = serving_leaf(stranger, INJECTOR_DNS)
        c.fake.apply(
            mk_secret(
                names.INJECTOR_TLS_SECRET,
                {"tls.crt": cert, "tls.key": key},
                type_="kubernetes.io/tls",
            )
        )
        got = await failing(c, "injector webhook has valid cert")
        assert "is not signed by the webhook's caBundle" in got[1]

        with_ca_bundle(c, stranger.ca_pem)  # the caBundle no longer names what is served
        got = await failing(
            c, "injector webhook is reachable", "--injector-url", f"https://{c.injector}"
        )
        assert got[1].startswith(f"https://{c.injector}/ready: certificate not trusted")
        with_ca_bundle(c, c.cert.ca_crt)

        c.fake.unforward(NS, names.INJECTOR_SERVICE, 443)
        got = await failing(c, "injector webhook is reachable")
        assert got[1] == (
            f"service/{names.INJECTOR_SERVICE}:443 /ready: 503 no endpoints available for"
            f' service "{names.INJECTOR_SERVICE}"'
        )
        assert "--injector" in got[2]
