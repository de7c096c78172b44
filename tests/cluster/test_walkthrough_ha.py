"""The walkthrough with `mesh install --ha`: three real `mesh serve` replicas from the
rendered Deployment (its args exactly, `--leader-elect` included), one Lease holder that
`mesh check` sees as the one replica leading; the leader stops (a rolling update): another
takes the Lease and writes the next route's status. See test_walkthrough.py for the rest."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from tests.cluster import kubectl
from tests.cluster.check_kit import mk_crd
from tests.cluster.controller_kit import (
    SA_TOKEN,
    controller_account,
    find,
    lease_holder,
    ready_deployment,
    start_replica,
    wire_services,
)
from tests.cluster.emojivoto import APP, HASH, redirect_route
from tests.cluster.test_walkthrough import mesh
from tests.cluster.walkthrough_kit import ADMIN_TOKEN, MeshFake, kubeconfig, until
from tests.proxy.e2e.harness import bounded
from turnout.cluster import names
from turnout.cluster.check.control_plane import STANDARD_GATEWAY_KINDS
from turnout.engine.config import CONTROLLER_NAME

pytestmark = pytest.mark.slow

STATUS_PATH = f"/apis/gateway.networking.k8s.io/v1/namespaces/{APP}/httproutes/web-redirect/status"


@bounded(40)
async def test_three_replicas_one_leader_and_a_successor(tmp_path: Path) -> None:
    t0 = time.monotonic()
    async with MeshFake() as fake, contextlib.AsyncExitStack() as stack:
        admin = str(kubeconfig(tmp_path / "admin", fake.url, token=ADMIN_TOKEN, user="admin"))
        for spec in STANDARD_GATEWAY_KINDS:
            fake.apply(mk_crd(spec))
        code, crds, err = await mesh("install", "--crds", "--ignore-cluster")
        kubectl.apply(fake, crds)
        code, manifest, err = await mesh("install", "--ha")
        assert code == 0, err
        installed = kubectl.apply(fake, manifest)
        deploy = find(installed, "Deployment", names.CONTROLLER)
        assert deploy["spec"]["replicas"] == 3
        assert (
            find(installed, "PodDisruptionBudget", names.CONTROLLER)["spec"]["maxUnavailable"] == 1
        )

        sa_config = controller_account(fake, installed, tmp_path)
        replicas = await asyncio.gather(
            *(
                start_replica(fake, installed, tmp_path, suffix=f"{HASH}-{s}", sa_config=sa_config)
                for s in ("a1b2c", "d3e4f", "g5h6i")
            )
        )
        for r in replicas:
            stack.push_async_callback(r.process.stop)
        ready_deployment(fake, installed, 3)
        wire_services(fake, installed, replicas[0])
        by_name = {r.name: r for r in replicas}
        leader = by_name[await until("a Lease holder", lambda: lease_holder(fake))]
        started = time.monotonic() - t0

        code, out, err = await mesh("check", "--kubeconfig", admin)
        assert code == 0, out + err
        assert "√ a control plane replica leads status writing" in out, out
        assert "√ a leader holds the status Lease" in out, out

        # only the leader writes status
        fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP}})
        fake.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web-svc", "namespace": APP},
                "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80}]},
            }
        )
        route_kind = kubectl.served_kind(fake, redirect_route("/x"))

        def observed(generation: int) -> bool:
            route = fake.get(route_kind, APP, "web-redirect")
            parents = (route.get("status") or {}).get("parents") or []
            ours = [p for p in parents if p.get("controllerName") == CONTROLLER_NAME]
            return bool(ours) and all(
                c.get("observedGeneration") == generation for c in ours[0]["conditions"]
            )

        fake.apply(redirect_route("/one"))
        await until("the leader writes the status", lambda: observed(1))

        # the leader's pod goes (a rolling update): it gives the Lease up, another takes it
        assert await leader.process.stop() == 0
        fake.delete(
            kubectl.served_kind(fake, leader.pod), leader.pod["metadata"]["namespace"], leader.name
        )
        successor = await until(
            "a successor", lambda: (h := lease_holder(fake)) not in (None, leader.name) and h
        )
        assert successor in by_name
        handover = time.monotonic() - t0
        fake.apply(redirect_route("/two"))
        await until("the successor writes the status", lambda: observed(2))
        writes = [c for c in fake.calls if c.path == STATUS_PATH and c.method in ("PUT", "PATCH")]
        assert writes and all(c.token == SA_TOKEN for c in writes)
        assert fake.refusals == [], fake.refusals
        print(f"ha walkthrough: replicas up {started:.2f}s, handover at {handover:.2f}s, "
              f"done {time.monotonic() - t0:.2f}s")  # fmt: skip
