"""Gateway status write-back against `FakeApiServer` (k8s_fake.py), through the real
`kubernetes` client: only Gateways of our GatewayClass, our condition types merged in place
(the CRD's `Pending` defaults replaced, other types kept), listeners replaced, addresses
kept, `lastTransitionTime` kept while status and reason hold, 409 retried."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.engine.sources.k8s_fake import FakeApiServer
from tests.engine.sources.test_k8s import OTHER, OURS, SERVED, SETTINGS, T0, Clock, writer
from tests.proxy.e2e.harness import bounded
from turnout.engine import ir
from turnout.engine.compile import compile_table
from turnout.engine.diagnostics import SourcePos
from turnout.engine.model import Document, parse_documents
from turnout.engine.plane import ControlPlane
from turnout.engine.sources.k8s import start_kubernetes_source
from turnout.engine.sources.k8s.status import merge_gateway_status

GW = "gateway.networking.k8s.io/v1"
PENDING = {
    "conditions": [
        {
            "type": t,
            "status": "Unknown",
            "reason": "Pending",
            "message": "Waiting for controller",
            "lastTransitionTime": "1970-01-01T00:00:00Z",
        }
        for t in ("Accepted", "Programmed")
    ]
}
"""The Gateway CRD's `status` default."""
GW_PATH = "/apis/gateway.networking.k8s.io/v1/namespaces/edge/gateways/gw/status"


@pytest.fixture
async def fake() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(SERVED.values(), status_defaults={"Gateway": PENDING}) as api:
        yield api


def mk_class(name: str = "turnout", controller: str = OURS) -> dict[str, Any]:
    return {
        "apiVersion": GW,
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": controller},
    }


def mk_gateway(cls: str = "turnout", *, port: int = 80) -> dict[str, Any]:
    listeners = [
        {"name": "http", "protocol": "HTTP", "port": port},
        {"name": "tcp", "protocol": "TCP", "port": 9000},
    ]
    return {
        "apiVersion": GW,
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "edge"},
        "spec": {"gatewayClassName": cls, "listeners": listeners},
    }


def mk_route(name: str) -> dict[str, Any]:
    return {
        "apiVersion": GW,
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "edge"},
        "spec": {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}],
            "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
        },
    }


def compiled(*objects: dict[str, Any]) -> ir.GatewayStatus:
    """The Gateway status the compiler gives `objects`."""
    docs = [Document(pos=SourcePos("k8s", i), raw=o) for i, o in enumerate(objects)]
    resources, diags = parse_documents(docs)
    assert not diags
    (st,) = compile_table(resources).gateway_statuses
    return st


def stored(fake: FakeApiServer) -> dict[str, Any]:
    return fake.get(SERVED["Gateway"], "edge", "gw")


def conditions(entry: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in entry["conditions"]}


# --------------------------------------------------------------------------- merge (pure)


def test_merge_replaces_pending_defaults_in_place_and_keeps_other_types_and_addresses() -> None:
    st = compiled(mk_class(), mk_gateway(), mk_route("a"))
    foreign = {"type": "example.com/Audit", "status": "True", "reason": "Seen", "message": ""}
    old = {
        "conditions": [PENDING["conditions"][0], foreign, PENDING["conditions"][1]],
        "addresses": [{"type": "IPAddress", "value": "10.0.0.9"}],
    }
    new = merge_gateway_status(old, st, now="2024-05-01T12:00:00Z")
    assert [c["type"] for c in new["conditions"]] == ["Accepted", "example.com/Audit", "Programmed"]
    assert new["conditions"][1] == foreign
    assert conditions(new) == {
        "Accepted": ("True", "ListenersNotValid"),
        "example.com/Audit": ("True", "Seen"),
        "Programmed": ("True", "Programmed"),
    }
    assert new["addresses"] == old["addresses"]
    http, tcp = new["listeners"]
    assert (http["name"], http["attachedRoutes"], tcp["attachedRoutes"]) == ("http", 1, 0)
    assert http["supportedKinds"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"},
        {"group": "gateway.networking.k8s.io", "kind": "GRPCRoute"},
    ]
    assert conditions(tcp)["Accepted"] == ("False", "UnsupportedProtocol")
    assert {c["observedGeneration"] for c in new["conditions"][::2]} == {1}
    assert {c["lastTransitionTime"] for c in http["conditions"]} == {"2024-05-01T12:00:00Z"}


def test_merge_keeps_transition_times_while_status_and_reason_hold() -> None:
    one = compiled(mk_class(), mk_gateway(), mk_route("a"))
    two = compiled(mk_class(), mk_gateway(), mk_route("a"), mk_route("b"))
    first = merge_gateway_status({}, one, now="2024-05-01T12:00:00Z")
    second = merge_gateway_status(first, two, now="2024-05-01T13:00:00Z")
    assert second["listeners"][0]["attachedRoutes"] == 2
    times = {c["lastTransitionTime"] for li in second["listeners"] for c in li["conditions"]}
    assert times == {"2024-05-01T12:00:00Z"}
    assert merge_gateway_status(second, two, now="2024-05-01T14:00:00Z") == second


# --------------------------------------------------------------------------- write-back


async def test_gateway_status_is_written_for_our_class(fake: FakeApiServer) -> None:
    fake.apply(mk_class())
    before = fake.apply(mk_gateway())
    assert before["status"] == PENDING  # the CRD default, as the API server stores it
    st = compiled(mk_class(), mk_gateway(), mk_route("a"))
    async with writer(fake, Clock()) as source:
        (result,) = await source.write_gateway_status([st])
    assert result.outcome == "written"
    after = stored(fake)
    assert conditions(after["status"]) == {
        "Accepted": ("True", "ListenersNotValid"),
        "Programmed": ("True", "Programmed"),
    }
    assert [li["attachedRoutes"] for li in after["status"]["listeners"]] == [1, 0]
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    assert after["metadata"]["generation"] == 1  # status writes never bump the generation
    assert after["spec"] == before["spec"]


async def test_gateways_of_another_class_or_an_unknown_class_are_not_written(
    fake: FakeApiServer,
) -> None:
    fake.apply(mk_class("other", OTHER))
    fake.apply(mk_gateway("other"))
    st = compiled(mk_class("other"), mk_gateway("other"))  # the compiler believed it ours
    async with writer(fake, Clock()) as source:
        (foreign,) = await source.write_gateway_status([st])
        fake.delete(SERVED["Gateway"], "edge", "gw")
        fake.apply(mk_gateway("ghost"))  # a class that does not exist
        (unknown,) = await source.write_gateway_status([st])
    assert (foreign.outcome, unknown.outcome) == ("not-ours", "not-ours")
    assert fake.count("PUT", GW_PATH) == 0
    assert stored(fake)["status"] == PENDING


async def test_an_unchanged_gateway_status_is_not_written_again(fake: FakeApiServer) -> None:
    fake.apply(mk_class())
    fake.apply(mk_gateway())
    st = compiled(mk_class(), mk_gateway())
    clock = Clock()
    async with writer(fake, clock) as source:
        await source.write_gateway_status([st])
        clock.now = T0.replace(hour=13)
        (again,) = await source.write_gateway_status([st])
    assert again.outcome == "unchanged"
    assert fake.count("PUT", GW_PATH) == 1


async def test_a_409_on_a_gateway_is_retried_and_keeps_the_other_writers_addresses(
    fake: FakeApiServer,
) -> None:
    fake.apply(mk_class())
    fake.apply(mk_gateway())
    addresses = [{"type": "IPAddress", "value": "10.0.0.9"}]

    def address_controller_writes() -> None:  # between our GET and our PUT
        fake.apply(mk_gateway() | {"status": {**PENDING, "addresses": addresses}})

    fake.before("PUT", GW_PATH, address_controller_writes)
    async with writer(fake, Clock()) as source:
        (result,) = await source.write_gateway_status([compiled(mk_class(), mk_gateway())])
    assert result.outcome == "written"
    assert fake.count("PUT", GW_PATH) == 2
    status = stored(fake)["status"]
    assert status["addresses"] == addresses
    assert conditions(status)["Accepted"] == ("True", "ListenersNotValid")


async def test_a_status_for_an_older_generation_is_stale(fake: FakeApiServer) -> None:
    fake.apply(mk_class())
    fake.apply(mk_gateway())
    st = compiled(mk_class(), mk_gateway())
    fake.apply(mk_gateway(port=8080))  # generation 2
    async with writer(fake, Clock()) as source:
        (result,) = await source.write_gateway_status([st])
    assert result.outcome == "stale"
    assert fake.count("PUT", GW_PATH) == 0


@contextlib.asynccontextmanager
async def serving(fake: FakeApiServer) -> AsyncIterator[ControlPlane]:
    plane = ControlPlane(publish=lambda table, policy: 1)
    api = fake.api_client()
    try:
        source = await start_kubernetes_source(plane, api, settings=SETTINGS)
        try:
            yield plane
        finally:
            await source.stop()
    finally:
        api.close()  # type: ignore[no-untyped-call]


async def until_listeners(fake: FakeApiServer, attached: list[int]) -> dict[str, Any]:
    while True:
        status = stored(fake).get("status") or {}
        if [li["attachedRoutes"] for li in status.get("listeners") or ()] == attached:
            return status
        await asyncio.sleep(0.02)


@bounded(20)
async def test_the_kubernetes_source_keeps_attached_routes_current(fake: FakeApiServer) -> None:
    fake.apply(mk_class())
    fake.apply(mk_gateway())
    fake.apply(mk_route("a"))
    async with serving(fake) as plane:
        await until_listeners(fake, [1, 0])
        changes = plane.status.changes
        fake.apply(mk_route("b"))
        status = await until_listeners(fake, [2, 0])
        assert conditions(status["listeners"][1])["Accepted"] == ("False", "UnsupportedProtocol")
        await asyncio.sleep(0.3)  # our own Gateway status write must not trigger a compile
        assert plane.status.changes == changes + 1
