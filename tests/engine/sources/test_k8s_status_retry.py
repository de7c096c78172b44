"""Status write-back that recovers on its own, against `FakeApiServer` (k8s_fake.py): a
refused (403) or failing (503) status write is retried with backoff until it lands, with no
route change; the periodic resync puts back a status someone else overwrote; and while
idle it sends nothing and writes nothing (no resourceVersion moves)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.engine.sources.k8s_fake import FakeApiServer
from tests.engine.sources.test_k8s import (
    OTHER_ENTRY,
    OURS,
    SERVED,
    SETTINGS,
    every_kind,
    mk_route,
)
from tests.proxy.e2e.harness import bounded
from turnout.engine.plane import ControlPlane
from turnout.engine.sources.k8s import KubernetesSource, start_kubernetes_source

FAST = dataclasses.replace(SETTINGS, backoff_base_s=0.05, backoff_max_s=0.2, status_resync_s=30)
STATUS = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web/status"


@pytest.fixture
async def fake() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(SERVED.values()) as api:
        for obj in every_kind():
            api.apply(obj)
        yield api


@contextlib.asynccontextmanager
async def serving(
    fake: FakeApiServer, settings: Any = FAST
) -> AsyncIterator[tuple[ControlPlane, KubernetesSource]]:
    plane = ControlPlane(publish=lambda table, policy: 1)
    api = fake.api_client()
    try:
        source = await start_kubernetes_source(plane, api, settings=settings)
        try:
            yield plane, source
        finally:
            await source.stop()
    finally:
        api.close()  # type: ignore[no-untyped-call]


def ours(fake: FakeApiServer) -> dict[str, Any] | None:
    parents = (fake.get(SERVED["HTTPRoute"], "shop", "web").get("status") or {}).get("parents")
    return next((p for p in parents or () if p["controllerName"] == OURS), None)


def observed(fake: FakeApiServer) -> int | None:
    entry = ours(fake)
    return None if entry is None else int(entry["conditions"][0]["observedGeneration"])


async def until(check: Any) -> None:
    while not check():
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    ("status", "times"),
    [pytest.param(403, 3, id="forbidden"), pytest.param(503, 6, id="unavailable")],
)
@bounded(20)
async def test_a_failed_status_write_is_retried_until_it_lands_without_a_route_change(
    fake: FakeApiServer, status: int, times: int
) -> None:
    async with serving(fake) as (plane, source):
        await until(lambda: observed(fake) == 1)
        changes = plane.status.changes
        fake.fail("PUT", STATUS, status=status, times=times)  # the permission goes, then returns
        fake.apply(mk_route("shop", "web", {"web": 50, "web-canary": 50}))  # generation 2
        started = time.monotonic()
        await until(lambda: observed(fake) == 2)
        took = time.monotonic() - started
        assert plane.status.changes == changes + 1  # one compile: the retries are not compiles
        await until(lambda: not source.status.pending)
    answers = [c.status for c in fake.calls if c.method == "PUT" and c.path == STATUS]
    assert answers[-(times + 1) :] == [status] * times + [200]
    # 503s are retried inside the request first (api.py), 403s only by the status retries.
    assert took < 3.0, f"status reached observedGeneration 2 after {took:.2f}s"


@bounded(20)
async def test_the_periodic_resync_puts_back_a_status_someone_else_overwrote(
    fake: FakeApiServer,
) -> None:
    async with serving(fake, dataclasses.replace(FAST, status_resync_s=0.1)) as (plane, _):
        await until(lambda: observed(fake) == 1)
        changes = plane.status.changes
        # Another writer replaces the whole status (a status-only change: no snapshot).
        route = mk_route("shop", "web", {"web": 90, "web-canary": 10})
        fake.apply(route | {"status": {"parents": [OTHER_ENTRY]}})
        assert ours(fake) is None
        await until(lambda: observed(fake) == 1)
        parents = fake.get(SERVED["HTTPRoute"], "shop", "web")["status"]["parents"]
        assert [p["controllerName"] for p in parents] == [OTHER_ENTRY["controllerName"], OURS]
        assert plane.status.changes == changes


@bounded(20)
async def test_idle_resyncs_send_no_request_and_move_no_resource_version(
    fake: FakeApiServer,
) -> None:
    async with serving(fake, dataclasses.replace(FAST, status_resync_s=0.05)) as (_, source):
        await until(lambda: observed(fake) == 1)
        await asyncio.sleep(0.3)  # the watch events of our own writes arrive
        revision, calls, rounds = fake.revision, len(fake.calls), source.status.rounds
        await until(lambda: source.status.rounds >= rounds + 5)
        assert fake.revision == revision
        assert [(c.method, c.path) for c in fake.calls[calls:]] == []
