"""Leader election on a Lease (`lease.py`) against `FakeApiServer` (k8s_fake.py), in-process:
client-go's semantics with durations of a second or less. Two `mesh serve` processes
failing over are in test_k8s_failover.py."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.engine.sources.k8s_fake import LEASES, FakeApiServer
from tests.proxy.e2e.harness import bounded
from turnout.engine.sources.k8s.lease import LeaderElector, LeaseSettings

D, RENEW, RETRY = 1, 0.6, 0.1
"""Lease duration, renew deadline, retry period (seconds) of these tests."""
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
PATH = "/apis/coordination.k8s.io/v1/namespaces/turnout/leases/turnout-controller"


@pytest.fixture
async def fake() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer([LEASES]) as api:
        yield api


@contextlib.asynccontextmanager
async def electors(fake: FakeApiServer, *names: str) -> AsyncIterator[list[LeaderElector]]:
    clients = [fake.api_client() for _ in names]
    made = [
        LeaderElector(
            api,
            LeaseSettings(
                namespace="turnout",
                name="turnout-controller",
                identity=name,
                lease_duration_s=D,
                renew_deadline_s=RENEW,
                retry_period_s=RETRY,
            ),
        )
        for api, name in zip(clients, names, strict=True)
    ]
    try:
        yield made
    finally:
        for e in made:
            with contextlib.suppress(Exception):
                await e.stop(release=False)
        for api in clients:
            api.close()  # type: ignore[no-untyped-call]


def spec(fake: FakeApiServer) -> dict[str, Any]:
    return dict(fake.get(LEASES, "turnout", "turnout-controller")["spec"])


async def until(check: Any) -> float:
    """Seconds until `check()` held."""
    started = time.monotonic()
    while not check():
        await asyncio.sleep(0.005)
    return time.monotonic() - started


@bounded(15)
async def test_the_first_replica_creates_the_lease_and_the_other_waits_while_it_renews(
    fake: FakeApiServer,
) -> None:
    async with electors(fake, "a", "b") as (a, b):
        await a.start()
        await until(lambda: a.leading)
        got = spec(fake)
        assert got["holderIdentity"] == "a"
        assert (got["leaseDurationSeconds"], got["leaseTransitions"]) == (D, 0)
        assert MICRO_TIME.match(got["acquireTime"]) and MICRO_TIME.match(got["renewTime"])
        await b.start()
        renewed = got["renewTime"]
        await asyncio.sleep(1.5 * D)  # past one lease duration: b must still wait
        assert a.leading and not b.leading
        assert b.holder == "a"
        later = spec(fake)
        assert later["renewTime"] > renewed
        assert (later["acquireTime"], later["leaseTransitions"]) == (got["acquireTime"], 0)
        assert a.describe() == {
            "lease": "turnout/turnout-controller",
            "identity": "a",
            "leading": True,
            "holder": "a",
            "transitions": 0,
        }


@bounded(15)
async def test_a_leader_that_stops_renewing_is_replaced_after_the_lease_duration(
    fake: FakeApiServer,
) -> None:
    async with electors(fake, "a", "b") as (a, b):
        await a.start()
        await until(lambda: a.leading)
        await b.start()
        await asyncio.sleep(3 * RETRY)  # b has seen a's record
        elected: list[float] = []
        b.on_elected(lambda: elected.append(time.monotonic()))
        await a.stop(release=False)  # as a killed process: the Lease stays a's
        took = await until(lambda: b.leading)
        assert elected
        # Expiry counts from when b last saw the record change (at most one jittered retry
        # after a's last renewal), and b notices at its next jittered try.
        assert D - RETRY - 0.05 <= took <= D + 2 * (1 + 1.2) * RETRY + 0.2, took
        got = spec(fake)
        assert (got["holderIdentity"], got["leaseTransitions"]) == ("b", 1)
        assert got["acquireTime"] == got["renewTime"]


@bounded(15)
async def test_a_released_lease_is_taken_over_at_the_next_try(fake: FakeApiServer) -> None:
    async with electors(fake, "a", "b") as (a, b):
        await a.start()
        await until(lambda: a.leading)
        await b.start()
        await asyncio.sleep(2 * RETRY)
        await a.stop(release=True)
        assert not a.leading
        took = await until(lambda: b.leading)
        assert took <= (1 + 1.2) * RETRY + 0.1, took
        assert spec(fake)["holderIdentity"] == "b"


@bounded(15)
async def test_the_loser_of_a_race_gets_a_409_and_does_not_lead(fake: FakeApiServer) -> None:
    async with electors(fake, "a") as (a,):
        assert await a.try_acquire_or_renew()
        await a.stop(release=True)  # holderIdentity "": anyone may take it

        def b_is_faster() -> None:  # between a's GET and a's PUT
            fake.apply(
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": "turnout-controller", "namespace": "turnout"},
                    "spec": {**spec(fake), "holderIdentity": "b", "leaseDurationSeconds": D},
                }
            )

        fake.before("PUT", PATH, b_is_faster)
        client = fake.api_client()
        a2 = LeaderElector(client, a.settings)
        try:
            assert not await a2.try_acquire_or_renew()
            assert not a2.leading
            assert not await a2.try_acquire_or_renew()  # b holds it, unexpired
            assert a2.holder == "b"
        finally:
            await a2.stop(release=False)
            client.close()  # type: ignore[no-untyped-call]
        assert [c.status for c in fake.calls if c.method == "PUT"][-1] == 409


@bounded(15)
async def test_a_leader_cut_off_from_the_api_server_stops_leading_within_the_deadline(
    fake: FakeApiServer,
) -> None:
    async with electors(fake, "a") as (a,):
        await a.start()
        await until(lambda: a.leading)
        fake.fail("GET", PATH, status=503, times=1000)
        took = await until(lambda: not a.leading)
        assert took <= RENEW + 0.05, took
        assert spec(fake)["holderIdentity"] == "a"  # others wait out the lease duration


def test_settings_that_cannot_work_are_refused_as_client_go_does() -> None:
    base = LeaseSettings(namespace="n", name="l", identity="a")
    assert base.check() is None
    bad = [
        LeaseSettings(namespace="n", name="l", identity="a", renew_deadline_s=15),
        LeaseSettings(namespace="n", name="l", identity="a", retry_period_s=9),
        LeaseSettings(namespace="n", name="l", identity=""),
    ]
    assert [s.check() is not None for s in bad] == [True, True, True]
