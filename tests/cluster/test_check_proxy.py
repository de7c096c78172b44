"""`mesh check --proxy -n shop`: a real `mesh proxy --pod web-1` and real ADS clients on the
control plane, the pods in the fake API server; SYNCED, then STALE by a NACK, a proxy gone,
a pod created without its proxy, and `--wait` riding out a proxy that connects late."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from tests.cluster.check_kit import APP_NS, Cluster, mk_pod, running_cluster
from tests.engine.server.ads_kit import split
from tests.proxy.e2e.harness import bounded
from turnout.cluster import names
from turnout.cluster.inject.settings import DEFAULT_INJECT_SETTINGS
from turnout.cluster.inject.sidecar import inject_pod

PROXY = ("--proxy", "-n", APP_NS)


def lines_under(out: str, description: str) -> list[str]:
    lines = out.splitlines()
    at = lines.index(description)
    return [line.strip() for line in lines[at + 1 :] if line.startswith("    ")][:3]


async def start_mesh_proxy(c: Cluster, pod: str) -> asyncio.subprocess.Process:
    """`mesh proxy` exactly as the sidecar runs (but for the addresses)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "turnout.cli", "proxy", "--xds", c.xds, "-n", APP_NS),
        *("--workload", "deployment/web", "--pod", pod, "--outbound", "127.0.0.1:0"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


@bounded(40)
async def test_a_real_mesh_proxy_is_matched_to_its_pod_and_synced(tmp_path: Path) -> None:
    async with running_cluster(tmp_path) as c:
        c.fake.apply(mk_pod("web-1"))
        proc = await start_mesh_proxy(c, "web-1")
        try:
            await c.until(lambda: c.synced("web-1"))
            code, out = await c.check(*PROXY, "-o", "wide")
            assert code == 0, out
            assert "√ data plane proxies are on the current config version" in out
            table = out.split("Status check results are √\n\n")[1].splitlines()
            assert table[0].split() == [
                "NAME",
                "CDS",
                "LDS",
                "EDS",
                "RDS",
                "POLICY",
                "CONTROL",
                "PLANE",
                "VERSION",
            ]
            assert table[1].split() == [
                "web-1.shop",
                "SYNCED",
                "SYNCED",
                "SYNCED",
                "SYNCED",
                "IGNORED",  # no --identity: the proxy asks for no policy
                f"{names.CONTROLLER}-0",
                "1",
            ]

            code, out = await c.check(*PROXY, "-o", "json")
            [row] = json.loads(out)["proxies"]
            assert row["name"] == "web-1.shop" and row["node_id"] == "shop/deployment/web/web-1"
            assert (
                row["connected"] is True and row["version"] == 1 and row["sync"]["RDS"] == "SYNCED"
            )
        finally:
            proc.terminate()
            await proc.wait()
        await c.until(lambda: not c.server.status().streams)
        code, out = await c.check(*PROXY)
        assert code == 1
        assert "× data plane proxies are connected to the control plane" in out
        assert (
            lines_under(out, "× data plane proxies are connected to the control plane")[0]
            == "pod/web-1: no ADS stream to the control plane"
        )


@bounded(40)
async def test_a_nacked_change_is_stale_until_a_good_one_and_a_pod_without_its_proxy_fails(
    tmp_path: Path,
) -> None:
    async with running_cluster(tmp_path) as c:
        c.fake.apply(mk_pod("api-1"))
        c.client("api-1", workload="deployment/api")
        await c.until(lambda: c.synced("api-1"))
        code, out = await c.check(*PROXY, "--control-plane", c.admin)  # the admin port, directly
        assert code == 0, out

        c.switch.bad = True  # the next table's routes carry a regex our proxy rejects
        (c.directory / "web.yaml").write_text(split(50, 50))
        await c.until(lambda: any(s.nacks for s in c.server.status().streams))
        code, out = await c.check(*PROXY)
        assert code == 1, out
        [why, hint] = lines_under(out, "× data plane proxies are on the current config version")[:2]
        assert why.startswith(
            "pod/api-1: RDS STALE (control plane version 2); RDS version 2 rejected: "
        )
        assert "NACK" in hint
        code, out = await c.check(*PROXY, "-o", "wide")
        row = next(line for line in out.splitlines() if line.startswith("api-1.shop"))
        assert row.split()[1:5] == ["SYNCED", "SYNCED", "SYNCED", "STALE"]  # CDS LDS EDS RDS

        c.switch.bad = False
        (c.directory / "web.yaml").write_text(split(60, 40))
        code, out = await c.check(*PROXY, "--wait", "10s")  # until the good table is ACKed
        assert code == 0, out

        c.fake.apply(mk_pod("legacy-1", containers=("app",)))  # the namespace asks for injection
        c.fake.apply(
            mk_pod(
                "batch-1", containers=("app",), annotations={names.INJECT_ANNOTATION: "disabled"}
            )
        )
        code, out = await c.check(*PROXY)
        assert code == 1
        assert (
            lines_under(out, "× each meshed pod has a proxy")[0]
            == f"pod/legacy-1 has no {names.PROXY_CONTAINER} container"
        )
        assert "batch-1" not in out


@bounded(40)
async def test_wait_retries_until_a_late_proxy_is_synced(tmp_path: Path) -> None:
    async with running_cluster(tmp_path) as c:
        c.fake.apply(mk_pod("web-2"))
        checking = asyncio.create_task(c.check(*PROXY, "--wait", "15s"))
        await c.until(
            lambda: c.fake.count("GET", f"/api/v1/namespaces/{APP_NS}/pods") >= 2
        )  # it failed once
        c.client("web-2")
        code, out = await checking
        assert code == 0, out


def injected(name: str, *, native: bool) -> dict[str, Any]:
    """A pod as the injector writes it (`inject_pod`), then Running with every container
    Ready, as the kubelet reports it."""
    notes = {names.PROXY_NATIVE_SIDECAR: "true"} if native else {}
    pod = mk_pod(name, containers=("app",), annotations=notes)
    pod, _ = inject_pod(pod, workload="deployment/web", settings=DEFAULT_INJECT_SETTINGS)
    spec = pod["spec"]
    pod["status"]["containerStatuses"] = [
        {"name": c["name"], "ready": True} for c in spec["containers"]
    ]
    pod["status"]["initContainerStatuses"] = [
        {"name": c["name"], "ready": c.get("restartPolicy") == "Always"}
        for c in spec["initContainers"]
    ]
    return pod


@bounded(40)
async def test_pods_the_injector_wrote_are_meshed_with_or_without_a_native_sidecar(
    tmp_path: Path,
) -> None:
    async with running_cluster(tmp_path) as c:
        for name, native in (("web-3", False), ("web-4", True)):
            c.fake.apply(injected(name, native=native))
            c.client(name)
        await c.until(lambda: c.synced("web-3") and c.synced("web-4"))
        code, out = await c.check(*PROXY, "-o", "json")
        assert code == 0, out
        rows = {r["pod"]: r for r in json.loads(out)["proxies"]}
        assert set(rows) == {"web-3", "web-4"}
        assert all(r["proxy"] and r["ready"] and r["connected"] for r in rows.values())
