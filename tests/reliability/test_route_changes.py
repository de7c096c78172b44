"""Route changes under load, through the whole pipeline: route file -> DirectorySource ->
AdsServer -> proxy (XdsSource) -> real backends. Zero failed requests, the last good change
is what the proxy routes by, and an invalid change is never applied.

```
20 requesters (half with x-canary: true) ──> proxy ──> web-v1 / web-v2 / web-v3
write_atomic(routes.yaml) x 100 ──> InProcessPlane (debounce 20 ms) ──ADS──┘
```
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import bounded, service_yaml
from tests.reliability.plane import (
    HOST,
    InProcessPlane,
    Load,
    route_yaml,
    running_proxy,
    services_yaml,
    until,
    write_atomic,
)
from turnout.proxy.runner import Proxy

CHANGES = 100


@dataclass
class Rig:
    plane: InProcessPlane
    proxy: Proxy
    load: Load
    routes: Path
    backends: Mapping[str, Backend]

    def applied(self) -> bool:
        """The proxy runs the control plane's current version."""
        return self.proxy.version == str(self.plane.version)

    async def change(self, text: str) -> None:
        """Write the route file and wait until the directory source has loaded it."""
        assert self.plane.source is not None
        changes = self.plane.source.status.changes
        write_atomic(self.routes, text)
        source = self.plane.source
        await until(lambda: source.status.changes > changes, timeout_s=5, what="the reload")


@contextlib.asynccontextmanager
async def open_rig(
    tmp_path: Path, routes_text: Callable[[Mapping[str, Backend]], str] | None = None
) -> AsyncIterator[Rig]:
    """Backends v1..v3, the plane, the proxy and the load; `routes_text(backends)` is the
    first routes.yaml (then services.yaml holds only `web` and `web-v3`)."""
    async with AsyncExitStack() as stack:
        backends = {}
        for name in ("v1", "v2", "v3"):
            backends[name] = await Backend(name).start()
            stack.push_async_callback(backends[name].stop)
        routes = tmp_path / "routes.yaml"
        if routes_text is None:
            (tmp_path / "services.yaml").write_text(services_yaml(backends))
            write_atomic(routes, route_yaml({"v1": 100, "v2": 0}))
        else:
            (tmp_path / "services.yaml").write_text(services_yaml({"v3": backends["v3"]}))
            write_atomic(routes, routes_text(backends))
        plane = await InProcessPlane(tmp_path).start()
        stack.push_async_callback(plane.stop)
        proxy = await stack.enter_async_context(running_proxy(plane.port))
        load = await stack.enter_async_context(
            Load(proxy.port_of(proxy.servers[0]), workers=20).running()
        )
        await until(lambda: load.settled_on("v1"), timeout_s=5, what="traffic on v1")
        yield Rig(plane=plane, proxy=proxy, load=load, routes=routes, backends=backends)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with open_rig(tmp_path) as r:
        yield r


def nth_change(i: int) -> tuple[str, str, str]:
    """Change `i` (1..): weights alternate all-v2 / all-v1, the canary rule is there for
    i % 4 in (2, 3); returns (route YAML, backend of plain requests, of canary requests)."""
    plain = "v2" if i % 2 else "v1"
    canary = i % 4 in (2, 3)
    weights = {"v1": 0, "v2": 100} if plain == "v2" else {"v1": 100, "v2": 0}
    return route_yaml(weights, canary=canary), plain, "v3" if canary else plain


async def settled(rig: Rig, plain: str, canary: str) -> float:
    rig.load.mark()
    return await until(
        lambda: (
            rig.applied()
            and rig.load.settled_on(plain)
            and rig.load.settled_on(canary, canary=True)
        ),
        timeout_s=10,
        what=f"plain -> {plain}, canary -> {canary}",
    )


@bounded(40)
async def test_100_route_changes_under_load_fail_no_request(rig: Rig) -> None:
    first_version = rig.plane.version
    seen: set[str] = set()
    for i in range(1, CHANGES + 1):
        text, plain, canary = nth_change(i)
        await rig.change(text)
        assert rig.plane.source is not None and rig.plane.source.status.applied
        seen.add(rig.proxy.version or "")
    await settled(rig, plain, canary)
    assert rig.plane.version == first_version + CHANGES  # every change was a new table
    assert rig.load.failed == 0, rig.load.errors
    assert {b for (_, b) in rig.load.backends} == {"v1", "v2", "v3"}
    print(
        f"\nroute changes: {CHANGES} changes published (versions {first_version + 1}.."
        f"{rig.plane.version}), proxy applied >= {len(seen)} of them; {rig.load.sent}"
        f" requests, {rig.load.failed} failed; answers {dict(rig.load.backends)}"
    )


SCHEMA_ERROR = route_yaml({"v1": -5, "v2": 100})
"""weight < 0: the CRD schema's minimum."""
BAD_REGEX = route_yaml({"v1": 0, "v2": 100}, path_regex="/(unclosed")
"""Not a regular expression at all."""
NOT_RE2 = route_yaml({"v1": 0, "v2": 100}, path_regex="/a++b")
"""Python's `re` takes a possessive quantifier, RE2 (Envoy, grpcio) refuses it ("bad
repetition operator: ++"): the compiler checks regexes with RE2 itself, so it is refused."""


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        (SCHEMA_ERROR, "schema"),
        (BAD_REGEX, "regex"),
        (NOT_RE2, "RE2-only regex"),
    ],
    ids=["schema-error", "invalid-regex", "not-re2-regex"],
)
@bounded(20)
async def test_an_invalid_change_is_never_applied_and_the_next_valid_one_is(
    rig: Rig, bad: str, what: str
) -> None:
    await rig.change(route_yaml({"v1": 100, "v2": 0}, canary=True))
    await settled(rig, "v1", "v3")
    good_version, proxy_version = rig.plane.version, rig.proxy.version
    sent = rig.load.sent

    await rig.change(bad)
    assert rig.plane.source is not None
    status = rig.plane.source.status
    assert not status.applied
    [rejected] = status.rejected  # the route file, kept at its last good version
    assert rejected.kept and rejected.file == str(rig.routes), what
    assert [d for d in rejected.diagnostics if d.severity.value == "error"], what
    rig.load.mark()
    await until(
        lambda: rig.load.sent > sent + 500, timeout_s=10, what="500 requests after the change"
    )
    # Still the last good table, everywhere: server, proxy, traffic.
    assert rig.plane.version == good_version and rig.proxy.version == proxy_version
    assert rig.load.settled_on("v1") and rig.load.settled_on("v3", canary=True)

    await rig.change(route_yaml({"v1": 0, "v2": 100}))
    await settled(rig, "v2", "v2")
    assert rig.plane.version == good_version + 1
    assert rig.load.failed == 0, rig.load.errors
    print(f"\ninvalid change ({what}): {rig.load.sent} requests, {rig.load.failed} failed")


def comeback_routes(backends: Mapping[str, Backend], *, canary: bool, v1_on: str = "v1") -> str:
    """routes.yaml of the issue-11 sequence: web-v1 (its endpoint on backend `v1_on`), with
    `canary` also the web-v2 Service, and the route: all on v1, or, with `canary`, the
    Flagger step 0/100 to v2 when v1's endpoint has moved, else 100/0."""
    docs = [service_yaml(f"{HOST}-v1", [backends[v1_on]])]
    if canary:
        docs.append(service_yaml(f"{HOST}-v2", [backends["v2"]]))
    weights = {"v1": 100} if not canary else {"v1": 100, "v2": 0}
    if v1_on != "v1":
        weights = {"v1": 0, "v2": 100}
    return "\n---\n".join([*docs, route_yaml(weights)])


@bounded(30)
async def test_a_canary_service_that_comes_back_takes_its_step_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11 through the proxy: the canary's Service goes away and comes back in the
    change that also moves web-v1's endpoint and sends 100% to the canary. Each of web-v2's
    new resources (listener's route config, cluster's endpoints) is asked for while that
    type's response is on its way; the step must land by the normal path, without the
    proxy's 15 s "building anyway" (it used to keep all traffic on v1 for 15 s)."""
    caplog.set_level(logging.WARNING, logger="turnout.proxy.xds_client")
    async with open_rig(tmp_path, lambda b: comeback_routes(b, canary=True)) as rig:
        await rig.change(comeback_routes(rig.backends, canary=False))
        await settled(rig, "v1", "v1")
        await rig.change(comeback_routes(rig.backends, canary=True, v1_on="v3"))
        took = await settled(rig, "v2", "v2")
        assert rig.load.failed == 0, rig.load.errors
    assert "building anyway" not in caplog.text
    print(f"\ncanary back with a 0/100 step: traffic on v2 after {took * 1000:.0f} ms")
