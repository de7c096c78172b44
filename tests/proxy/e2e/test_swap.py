"""Table swaps under load: in-flight and new requests never fail while tables change."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter

import pytest

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded
from tests.proxy.e2e.manifests import split
from turnout.proxy import runner


@bounded(20)
async def test_twenty_table_swaps_under_load_fail_no_request(lab: Lab) -> None:
    v1, v2, v3 = await lab.backend("v1"), await lab.backend("v2"), await lab.backend("v3")
    # Table A sends to v1 and v2, table B to v2 and v3: v1's cluster exists only in A and
    # v3's only in B, so every swap adds and removes a cluster while requests use it.
    services_a = {"web": [], "web-v1": [v1], "web-v2": [v2]}
    services_b = {"web": [], "web-v2": [v2], "web-v3": [v3]}
    table_a = lab.compile(services_a, split({"web-v1": 90, "web-v2": 10}))
    table_b = lab.compile(services_b, split({"web-v2": 10, "web-v3": 90}))
    mesh = await lab.mesh(services_a, split({"web-v1": 90, "web-v2": 10}))
    got: Counter[tuple[int, str]] = Counter()
    stop = asyncio.Event()

    async def worker(i: int) -> None:
        while not stop.is_set():
            if i % 2:
                status, headers, _ = await mesh.get("web", "/echo")
            else:
                status, headers, _ = await mesh.get("web", "/echo", method="POST", data=b"x" * 512)
            got[(status, headers.get("x-backend", ""))] += 1

    async def swapper() -> None:
        for i in range(20):
            await asyncio.sleep(0.1)
            mesh.apply(table_b if i % 2 == 0 else table_a, f"v{i + 1}")
        stop.set()

    async with asyncio.TaskGroup() as tg:
        for i in range(20):
            tg.create_task(worker(i))
        tg.create_task(swapper())

    statuses = Counter(status for status, _ in got.elements())
    assert statuses == {200: statuses.total()}, got
    assert {b for _, b in got} <= {"v1", "v2", "v3"}
    assert got[(200, "v1")] > 0 and got[(200, "v3")] > 0
    assert statuses.total() > 500


def _delayed(backend: str) -> str:
    return f"""
apiVersion: policy.turnout.dev/v1alpha1
kind: FaultInjection
metadata: {{name: hold, namespace: shop}}
spec: {{delay: {{fixedDelay: 300ms}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: shop}}
spec:
  parentRefs: [{{group: "", kind: Service, name: web, port: 80}}]
  rules:
  - filters:
    - type: ExtensionRef
      extensionRef: {{group: policy.turnout.dev, kind: FaultInjection, name: hold}}
    backendRefs: [{{name: {backend}, port: 80}}]
"""


@bounded(10)
async def test_a_request_finishes_on_its_table_when_a_swap_removes_its_backend(lab: Lab) -> None:
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, _delayed("web-v1"))
    table_b = lab.compile({"web": [], "web-v2": [v2]}, _delayed("web-v2"))
    with mesh.proxy.tap.subscribe() as sub:
        request = asyncio.create_task(mesh.get("web", "/echo"))
        event = await sub.get()  # the request reached the proxy: it is in its delay now
        assert event is not None and event.kind == "req"
        mesh.apply(table_b, "b")
        status, headers, _ = await request
    assert (status, headers.get("x-backend")) == (200, "v1")
    status, headers, _ = await mesh.get("web", "/echo")
    assert (status, headers.get("x-backend")) == (200, "v2")


@bounded(10)
async def test_a_burst_of_swaps_settles_the_heap_once_after_the_last(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full collection walks the whole heap: twenty swaps in a row pay for one, after
    the tables stop changing, and the old tables' objects are collected then."""
    settled: list[str | None] = []
    real = runner.settle_heap

    def counting() -> None:
        real()
        settled.append(mesh.proxy.version)

    monkeypatch.setattr(runner, "settle_heap", counting)
    monkeypatch.setattr(runner, "SETTLE_AFTER_S", 0.2)
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    services = {"web": [], "web-v1": [v1], "web-v2": [v2]}
    tables = [lab.compile(services, split({"web-v1": 100 - i, "web-v2": i})) for i in (0, 100)]
    mesh = await lab.mesh(services, split({"web-v1": 100, "web-v2": 0}))
    await asyncio.sleep(0.3)
    settled.clear()
    for i in range(20):
        mesh.apply(tables[i % 2], f"burst-{i}")
        await asyncio.sleep(0.02)
        assert settled == [], f"settled during the burst, after swap {i}"
    status, headers, _ = await mesh.get("web", "/echo")
    assert (status, headers.get("x-backend")) == (200, "v2")  # the last table serves at once
    await asyncio.sleep(0.4)
    assert settled == ["burst-19"]
    assert gc.get_freeze_count() > 0  # what is left of the tables is out of the collector's walk
