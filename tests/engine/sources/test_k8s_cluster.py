"""What a real API server showed (issue 14 §1), each held by the fake's matching behaviour
(`k8s_fake_rules.py`): null lists, start-up 503/429 and outages, CRDs installed later,
loopback endpoint addresses, RBAC with exactly the controller's rules."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.config import ConfigException

from tests.engine.sources.k8s_fake import CRD, FakeApiServer
from tests.engine.sources.k8s_fake_rules import FakeInvalid, Target, crd_object, forbidden_message
from tests.engine.sources.test_k8s import (
    SERVED,
    SETTINGS,
    ScaledSleep,
    Snapshots,
    every_kind,
    mk_route,
    mk_service,
    running,
    weights,
)
from turnout.cli.main import main
from turnout.engine.model import EndpointSlice
from turnout.engine.plane import ControlPlane
from turnout.engine.sources.k8s import KubernetesSource, start_kubernetes_source
from turnout.engine.sources.k8s.rbac import controller_rules

NS = "shop"


def mk_slice(name: str, addresses: list[str] | None, *, address_type: str = "IPv4") -> Any:
    endpoints = None if addresses is None else [{"addresses": [a]} for a in addresses]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080}] if addresses else None,
    }


@pytest.fixture
async def fake() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(SERVED.values()) as api:
        yield api


# --------------------------------------------------------------------------- null lists


async def test_a_slice_of_a_service_scaled_to_zero_comes_back_null_and_is_accepted(
    fake: FakeApiServer,
) -> None:
    stored = fake.apply(mk_slice("web-zero", []))
    assert (stored["endpoints"], stored["ports"]) == (None, None)  # as the real server stores it
    async with running(fake) as (_, snaps):
        resources, diags = await snaps.next()
    (sl,) = resources.of(EndpointSlice)
    assert (sl.obj.endpoints, sl.obj.ports) == ([], [])
    assert [d for d in diags if d.file.startswith("k8s:EndpointSlice")] == []


def test_mesh_validate_accepts_a_slice_as_kubectl_get_prints_it(tmp_path: Path) -> None:
    path = tmp_path / "slice.yaml"
    path.write_text(yaml.safe_dump(mk_slice("web-zero", None)))
    out, err = io.StringIO(), io.StringIO()
    assert main(["validate", "-f", str(path)], stdout=out, stderr=err) == 0, err.getvalue()


async def test_pods_as_a_cluster_serves_them_are_accepted_and_their_status_churn_is_quiet(
    fake: FakeApiServer,
) -> None:
    """A real cluster's Pods carry a status that changes all the time; only a Pod's
    service account matters, so a status change must not recompile the cluster."""
    pod = next(o for o in every_kind(NS) if o["kind"] == "Pod")
    fake.apply(pod)
    async with running(fake) as (source, snaps):
        resources, diags = await snaps.next()
        assert [o.obj.kind for o in resources.objects] == ["Pod"]
        assert [d for d in diags if d.file.startswith("k8s:Pod")] == []
        path = "/api/v1/pods"
        for phase in ("Pending", "Running", "Succeeded"):
            fake.apply(pod | {"status": {"phase": phase}})
        await asyncio.sleep(0.3)  # the MODIFIED events arrive; no snapshot may follow
        assert snaps.queue.empty()
        assert fake.count("GET", path, watch=True) == 1
        fake.apply(pod | {"spec": {**pod["spec"], "serviceAccountName": "other"}})
        await snaps.next()
    assert source.latest is not None


# --------------------------------------------------------------------------- outages


async def test_a_starting_api_server_is_probed_until_it_answers_then_changes_arrive_at_once(
    fake: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    """503 "before all known HTTP paths have been installed", then 429 "storage is
    (re)initializing" (Retry-After: 1): probed with a capped, jittered backoff, never a
    blind cooldown, however many tries it takes."""
    caplog.set_level(logging.WARNING, "turnout.engine.sources.k8s")
    fake.apply(mk_route(NS, "web", {"web": 1}))
    fake.start_up(unavailable_s=0.8, initializing_s=0.3)
    sleep = ScaledSleep()  # 1/100: 0.8 s of 503s is 80 s of the source's backoff
    settings = dataclasses.replace(SETTINGS, backoff_max_s=2.0)
    async with running(fake, sleep=sleep, settings=settings) as (_, snaps):
        resources, _ = await snaps.next(lambda r: bool(r.objects), timeout=5)
        assert weights(resources, "web") == [1]
        # An outage while running: every watch drops and every request gets a 503.
        fake.start_up(unavailable_s=0.5, initializing_s=0)
        fake.close_watches()
        await asyncio.sleep(0.6)
        fake.apply(mk_route(NS, "web", {"web": 2}))  # right after the server is back
        loop = asyncio.get_running_loop()
        back = loop.time()
        resources, _ = await snaps.next(lambda r: weights(r, "web") == [2], timeout=3)
        assert loop.time() - back < 0.5
    assert "before all known HTTP paths" in caplog.text
    assert "storage is (re)initializing" in caplog.text
    assert len(sleep.waits) > 2 * SETTINGS.attempts  # it kept probing past its attempts
    cap = settings.backoff_max_s * (1 + settings.jitter)
    assert max(sleep.waits) <= cap  # Retry-After 1 is under the cap; no 30 s cooldown


async def test_credentials_that_fail_to_refresh_are_retried_not_fatal(fake: FakeApiServer) -> None:
    """An exec plugin or the in-cluster token file refreshed per request may fail once; the
    kind must list when it works again (a crashed kind task never let /ready turn true)."""
    fake.apply(mk_route(NS, "web", {"web": 1}))
    api = fake.api_client()
    calls = {"n": 0}

    def refresh(cfg: Any) -> None:
        calls["n"] += 1
        if calls["n"] <= 5:
            raise ConfigException("exec: executable aws failed with exit code 1")

    api.configuration.api_key = {"authorization": "Bearer token"}
    api.configuration.refresh_api_key_hook = refresh
    snaps = Snapshots()
    source = KubernetesSource(api, on_snapshot=snaps, settings=SETTINGS, sleep=ScaledSleep())
    try:
        async with source:
            resources, _ = await snaps.next(lambda r: bool(r.objects))
    finally:
        api.close()  # type: ignore[no-untyped-call]
    assert weights(resources, "web") == [1]


# --------------------------------------------------------------------------- CRDs


async def test_a_crd_installed_after_start_up_is_listed_at_once_and_its_removal_seen(
    fake: FakeApiServer,
) -> None:
    fault = SERVED["FaultInjection"]
    fake.uninstall(fault)
    fake.apply(mk_route(NS, "web", {"web": 1}))
    fi = next(o for o in every_kind(NS) if o["kind"] == "FaultInjection")
    # The fallback poll would take 1000 s (10 s scaled): only the CRD watch can be in time.
    settings = dataclasses.replace(SETTINGS, missing_kind_retry_s=1000)
    async with running(fake, settings=settings) as (_, snaps):
        _, diags = await snaps.next()
        assert "KindNotInstalled" in {d.reason for d in diags}
        path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        assert fake.count("GET", path, watch=True) >= 1
        fake.apply(crd_object(fault))
        fake.apply(fi)
        _, diags = await snaps.next(
            lambda r: any(o.obj.kind == "FaultInjection" for o in r.objects), timeout=2
        )
        assert "KindNotInstalled" not in {d.reason for d in diags}
        fake.delete(CRD, "", f"{fault.plural}.{fault.group}")
        _, diags = await snaps.next(
            lambda r: not any(o.obj.kind == "FaultInjection" for o in r.objects), timeout=2
        )
    assert "KindNotInstalled" in {d.reason for d in diags}


# --------------------------------------------------------------------------- admission


def test_the_fake_refuses_loopback_addresses_in_ip_slices_as_the_server_does() -> None:
    fake = FakeApiServer(SERVED.values())
    with pytest.raises(FakeInvalid) as caught:
        fake.apply(mk_slice("web-a", ["10.0.0.1", "127.0.0.1"]))
    assert caught.value.status["code"] == 422
    assert caught.value.status["message"] == (
        'EndpointSlice.discovery.k8s.io "web-a" is invalid: endpoints[1].addresses[0]: Invalid'
        ' value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)'
    )
    with pytest.raises(FakeInvalid):
        fake.apply(mk_slice("web-b", ["::1"], address_type="IPv6"))
    fake.apply(mk_slice("web-c", ["localhost"], address_type="FQDN"))  # a host name: fine


# --------------------------------------------------------------------------- RBAC


@dataclasses.dataclass
class Serving:
    plane: ControlPlane
    source: Any


async def serve(fake: FakeApiServer) -> Serving:
    plane = ControlPlane(publish=lambda table, policy: 1)
    settings = dataclasses.replace(SETTINGS, denied_retry_s=0.2)
    source = await start_kubernetes_source(plane, fake.api_client(), settings=settings)
    return Serving(plane, source)


async def route_status(fake: FakeApiServer, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            st = fake.get(SERVED["HTTPRoute"], NS, "web").get("status") or {}
            if st.get("parents"):
                return dict(st["parents"][0])
            await asyncio.sleep(0.02)


async def test_exactly_the_controller_rules_are_enough(
    fake: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "turnout.engine.sources.k8s")
    for obj in every_kind(NS):
        fake.apply(obj)
    fake.enforce(controller_rules())
    served = await serve(fake)
    try:
        entry = await route_status(fake)
    finally:
        await served.source.stop()
    assert {c["type"]: c["status"] for c in entry["conditions"]}["Accepted"] == "True"
    assert fake.refusals == []
    assert "forbidden" not in caplog.text


async def test_a_missing_rule_is_one_error_naming_it_and_the_rest_is_served(
    fake: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    for obj in every_kind(NS):
        fake.apply(obj)
    rules = [r for r in controller_rules() if "faultinjections" not in r.resources]
    fake.enforce(rules)
    served = await serve(fake)
    path = "/apis/policy.turnout.dev/v1alpha1/faultinjections"
    try:
        entry = await route_status(fake)
        async with asyncio.timeout(5):
            while fake.count("GET", path) < 3:  # asked again (denied_retry_s), not fatal
                await asyncio.sleep(0.02)
    finally:
        await served.source.stop()
    assert {c["type"]: c["status"] for c in entry["conditions"]}["Accepted"] == "True"
    table = served.plane.table
    assert table is not None and table.parents
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert (
        'faultinjections.policy.turnout.dev is forbidden: User "system:serviceaccount:turnout:'
        'turnout-controller" cannot list resource "faultinjections" in API group'
        ' "policy.turnout.dev" at the cluster scope'
    ) in errors[0]
    assert (
        "the ClusterRole needs get, list, watch on faultinjections in policy.turnout.dev"
        in (errors[0])
    )


def test_a_refused_status_write_names_the_subresource() -> None:
    target = Target("gateway.networking.k8s.io", NS, "httproutes", "web", "status")
    assert forbidden_message("u", "update", target) == (
        'httproutes.gateway.networking.k8s.io "web" is forbidden: User "u" cannot update'
        ' resource "httproutes/status" in API group "gateway.networking.k8s.io" in the'
        ' namespace "shop"'
    )


# --------------------------------------------------------------------------- warnings


async def test_a_warning_is_logged_when_it_appears_or_changes_not_on_every_snapshot(
    fake: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "turnout.engine.plane")
    fake.apply(mk_service(NS, "web"))
    fake.apply(mk_route(NS, "web", {"nope": 1}))
    served = await serve(fake)

    def logged(name: str) -> int:
        return sum(f"Service {NS}/{name}" in r.getMessage() for r in caplog.records)

    try:
        async with asyncio.timeout(5):
            for i in range(3):  # other objects change: three more snapshots
                while served.plane.status.changes < i + 1:
                    await asyncio.sleep(0.01)
                fake.apply(mk_service(NS, f"other-{i}"))
            while served.plane.status.changes < 4:
                await asyncio.sleep(0.01)
            assert logged("nope") == 1
            fake.apply(mk_route(NS, "web", {"gone": 1}))  # the finding changes
            while not logged("gone"):
                await asyncio.sleep(0.01)
    finally:
        await served.source.stop()
    assert logged("nope") == 1
