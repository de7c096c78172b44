"""The Kubernetes source against `FakeApiServer` (see k8s_fake.py: a fake of the API server,
because none can run here), through the real `kubernetes` client.

Backoff waits go through an injected sleep that records each wait and sleeps 1/100 of it,
so a `Retry-After: 2` is asserted exactly and costs 20 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.engine.sources.k8s_fake import FakeApiServer, ServedKind
from turnout.engine import ir
from turnout.engine.compile import compile_table
from turnout.engine.diagnostics import Diagnostic, Severity
from turnout.engine.model import HTTPRoute, Resources
from turnout.engine.sources.k8s import (
    WATCHED_KINDS,
    KubernetesSettings,
    KubernetesSource,
)

OURS = "turnout.dev/gateway-controller"
OTHER = "example.com/other-controller"
SERVED = {
    k.key: ServedKind(k.group, k.version, k.plural, k.kind, k.namespaced) for k in WATCHED_KINDS
}
SETTINGS = KubernetesSettings(
    debounce_s=0.05,
    request_timeout_s=5,
    connect_timeout_s=2,
    watch_timeout_s=30,
    inactivity_timeout_s=10,
    attempts=4,
    missing_kind_retry_s=10,
)
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- builders


def mk_route(
    ns: str, name: str, backends: dict[str, int], *, parent: str = "web"
) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": parent, "port": 80}],
            "rules": [
                {"backendRefs": [{"name": b, "port": 80, "weight": w} for b, w in backends.items()]}
            ],
        },
    }


def mk_service(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }


def every_kind(ns: str = "shop") -> list[dict[str, Any]]:
    gw = "gateway.networking.k8s.io"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        mk_service(ns, "web"),
        mk_service(ns, "web-canary"),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "web-tls", "namespace": ns},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "", "tls.key": ""},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "web-abc",
                "namespace": ns,
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": ["10.0.0.1"],
                    "conditions": {"ready": True},
                    "targetRef": {"kind": "Pod", "name": "web-1", "namespace": ns},
                }
            ],
            "ports": [{"name": "http", "port": 8080}],
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": ns, "labels": {"app": "web"}},
            "spec": {"serviceAccountName": "web", "containers": [{"name": "app", "image": "w"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1"},  # a real Pod always has one
        },
        mk_route(ns, "web", {"web": 90, "web-canary": 10}),
        {
            "apiVersion": f"{gw}/v1",
            "kind": "GRPCRoute",
            "metadata": {"name": "rpc", "namespace": ns},
            "spec": {
                "parentRefs": [{"group": "", "kind": "Service", "name": "web", "port": 80}],
                "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
            },
        },
        {
            "apiVersion": f"{gw}/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "turnout"},
            "spec": {"controllerName": OURS},
        },
        {
            "apiVersion": f"{gw}/v1",
            "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": ns},
            "spec": {
                "gatewayClassName": "turnout",
                "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}],
            },
        },
        {
            "apiVersion": f"{gw}/v1beta1",
            "kind": "ReferenceGrant",
            "metadata": {"name": "grant", "namespace": ns},
            "spec": {
                "from": [{"group": gw, "kind": "HTTPRoute", "namespace": "other"}],
                "to": [{"group": "", "kind": "Service"}],
            },
        },
        {
            "apiVersion": "policy.turnout.dev/v1alpha1",
            "kind": "FaultInjection",
            "metadata": {"name": "slow", "namespace": ns},
            "spec": {"abort": {"httpStatus": 503, "percentage": 10}},
        },
        {
            "apiVersion": "gateway.networking.x-k8s.io/v1alpha1",
            "kind": "XBackendTrafficPolicy",
            "metadata": {"name": "budget", "namespace": ns},
            "spec": {
                "targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
                "retryConstraint": {"budget": {"percent": 10}},
            },
        },
        {
            "apiVersion": "split.smi-spec.io/v1alpha1",
            "kind": "TrafficSplit",
            "metadata": {"name": "split", "namespace": ns},
            "spec": {"service": "web", "backends": [{"service": "web", "weight": "100"}]},
        },
        {
            "apiVersion": "specs.smi-spec.io/v1alpha4",
            "kind": "HTTPRouteGroup",
            "metadata": {"name": "group", "namespace": ns},
            "spec": {"matches": [{"name": "all", "pathRegex": "/.*"}]},
        },
        *policy_kinds(ns),
    ]


def policy_kinds(ns: str) -> list[dict[str, Any]]:
    """One object of each authorization kind (Linkerd and Istio)."""
    linkerd, istio = "policy.linkerd.io", "security.istio.io"

    def obj(api: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": api,
            "kind": kind,
            "metadata": {"name": "p", "namespace": ns},
            "spec": spec,
        }

    return [
        obj(
            f"{linkerd}/v1beta3",
            "Server",
            {"podSelector": {"matchLabels": {"app": "web"}}, "port": 8080},
        ),
        obj(
            f"{linkerd}/v1beta1",
            "ServerAuthorization",
            {"server": {"name": "p"}, "client": {"unauthenticated": True}},
        ),
        obj(
            f"{linkerd}/v1alpha1",
            "AuthorizationPolicy",
            {
                "targetRef": {"group": linkerd, "kind": "Server", "name": "p"},
                "requiredAuthenticationRefs": [
                    {"group": linkerd, "kind": "MeshTLSAuthentication", "name": "p"}
                ],
            },
        ),
        obj(f"{linkerd}/v1alpha1", "MeshTLSAuthentication", {"identities": ["*"]}),
        obj(f"{linkerd}/v1alpha1", "NetworkAuthentication", {"networks": [{"cidr": "0.0.0.0/0"}]}),
        obj(f"{istio}/v1", "AuthorizationPolicy", {"action": "DENY", "rules": [{}]}),
        obj(f"{istio}/v1", "PeerAuthentication", {"mtls": {"mode": "STRICT"}}),
        obj(f"{istio}/v1", "RequestAuthentication", {"jwtRules": [{"issuer": "https://id"}]}),
    ]


def weights(resources: Resources, name: str) -> list[int]:
    (route,) = [r for r in resources.of(HTTPRoute) if r.obj.name == name]
    return [b.weight for b in route.obj.spec.rules[0].backend_refs]


def name_of(raw: Mapping[str, object]) -> object:
    meta = raw["metadata"]
    return meta.get("name") if isinstance(meta, dict) else None


def route_names(resources: Resources) -> set[str]:
    return {r.obj.name for r in resources.of(HTTPRoute)}


# --------------------------------------------------------------------------- harness


class ScaledSleep:
    """Records every backoff wait and sleeps 1/100 of it."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(seconds / 100)


class Snapshots:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[Resources, list[Diagnostic]]] = asyncio.Queue()

    def __call__(self, resources: Resources, diagnostics: Any) -> None:
        self.queue.put_nowait((resources, list(diagnostics)))

    async def next(
        self, until: Callable[[Resources], bool] = lambda r: True, timeout: float = 5.0
    ) -> tuple[Resources, list[Diagnostic]]:
        async with asyncio.timeout(timeout):
            while True:
                resources, diags = await self.queue.get()
                if until(resources):
                    return resources, diags


@pytest.fixture
async def fake() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(SERVED.values()) as api:
        yield api


@contextlib.asynccontextmanager
async def running(
    fake: FakeApiServer,
    *,
    sleep: ScaledSleep | None = None,
    settings: KubernetesSettings = SETTINGS,
) -> AsyncIterator[tuple[KubernetesSource, Snapshots]]:
    api = fake.api_client()
    snaps = Snapshots()
    source = KubernetesSource(
        api, on_snapshot=snaps, settings=settings, sleep=sleep or ScaledSleep()
    )
    try:
        async with source:
            yield source, snaps
    finally:
        api.close()  # type: ignore[no-untyped-call]


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- list + watch


async def test_initial_list_produces_a_snapshot_with_every_kind(fake: FakeApiServer) -> None:
    for obj in every_kind():
        fake.apply(obj)
    async with running(fake) as (source, snaps):
        resources, diags = await snaps.next()
        assert source.latest is not None
        unparsed = source.latest.unparsed
    assert [d for d in diags if d.severity is not Severity.INFO] == []
    assert {o.obj.kind for o in resources.objects} == {k.kind for k in WATCHED_KINDS if k.parse}
    policies = {o.obj.api_version for o in resources.objects if o.obj.kind == "AuthorizationPolicy"}
    assert policies == {"policy.linkerd.io/v1alpha1", "security.istio.io/v1"}
    assert {o.pos.file for o in resources.objects if o.obj.kind == "AuthorizationPolicy"} == {
        "k8s:AuthorizationPolicy/shop/p",
        "k8s:AuthorizationPolicy.security.istio.io/shop/p",
    }
    assert {"TrafficSplit", "HTTPRouteGroup"} <= {o.obj.kind for o in resources.objects}
    assert not unparsed.get("TrafficSplit") and not unparsed.get("HTTPRouteGroup")
    (route,) = resources.of(HTTPRoute)
    assert route.pos.file == "k8s:HTTPRoute/shop/web" and route.pos.doc_index == 0
    assert route.obj.generation == 1
    gwc = [o for o in resources.objects if o.obj.kind == "GatewayClass"]
    assert gwc[0].pos.file == "k8s:GatewayClass/turnout"
    # The snapshot is the compiler's whole input.
    assert [s.route.name for s in compile_table(resources).statuses] == ["rpc", "web"]


async def test_a_weight_change_on_the_watch_publishes_a_new_snapshot(fake: FakeApiServer) -> None:
    for obj in every_kind():
        fake.apply(obj)
    async with running(fake) as (source, snaps):
        first, _ = await snaps.next()
        assert weights(first, "web") == [90, 10]
        listed_rv = source.resource_version("HTTPRoute")
        fake.apply(mk_route("shop", "web", {"web": 50, "web-canary": 50}))
        second, _ = await snaps.next()
    assert weights(second, "web") == [50, 50]
    watches = [q for m, p, q in fake.requests if p.endswith("/httproutes") and "watch" in q]
    assert watches[0]["allowWatchBookmarks"] == "true"
    assert watches[0]["resourceVersion"] == listed_rv


async def test_bookmarks_advance_the_resource_version(fake: FakeApiServer) -> None:
    fake.apply(mk_route("shop", "web", {"web": 1}))
    async with running(fake) as (source, snaps):
        await snaps.next()
        before = source.resource_version("HTTPRoute")
        for i in range(3):
            fake.apply(mk_service("shop", f"svc-{i}"))  # other collections move the revision
        fake.bookmark()
        await eventually(lambda: source.resource_version("HTTPRoute") == str(fake.revision))
        assert int(str(before)) < fake.revision
        fake.close_watches()  # the next watch starts from the bookmark's version
        await eventually(
            lambda: (
                fake.count("GET", "/apis/gateway.networking.k8s.io/v1/httproutes", watch=True) == 2
            )
        )
    last = [q for m, p, q in fake.requests if p.endswith("/httproutes") and "watch" in q][-1]
    assert last["resourceVersion"] == str(fake.revision)


async def test_gone_resource_version_triggers_a_relist_and_loses_no_event(
    fake: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "turnout.engine.sources.k8s")
    path = "/apis/gateway.networking.k8s.io/v1/httproutes"
    fake.apply(mk_route("shop", "web", {"web": 90, "canary": 10}))
    fake.apply(mk_route("shop", "old", {"web": 1}))
    async with running(fake) as (_, snaps):
        first, _ = await snaps.next()
        assert route_names(first) == {"web", "old"}
        fake.hold_watches()
        fake.close_watches()  # the connection drops; changes happen while nobody watches
        fake.apply(mk_route("shop", "web", {"web": 0, "canary": 100}))
        fake.delete(SERVED["HTTPRoute"], "shop", "old")
        fake.apply(mk_route("shop", "new", {"web": 1}))
        fake.compact()  # ... and the history that held them is gone: 410 on the next watch
        fake.release_watches()
        last, _ = await snaps.next(lambda r: route_names(r) == {"web", "new"})
        assert fake.count("GET", path, watch=False) == 2
    assert weights(last, "web") == [0, 100]
    assert "watch expired kind=HTTPRoute" in caplog.text


async def test_retry_after_on_429_is_honoured(
    fake: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake.apply(mk_route("shop", "web", {"web": 1}))
    fake.fail("GET", "/httproutes", status=429, retry_after="2")
    sleep = ScaledSleep()
    async with running(fake, sleep=sleep) as (_, snaps):
        resources, _ = await snaps.next()
    assert route_names(resources) == {"web"}
    assert len(sleep.waits) == 1
    assert 2.0 <= sleep.waits[0] <= 2.0 * (1 + SETTINGS.jitter)
    assert "attempt #2/4" in caplog.text


async def test_server_errors_back_off_exponentially_then_succeed(fake: FakeApiServer) -> None:
    fake.apply(mk_route("shop", "web", {"web": 1}))
    fake.fail("GET", "/httproutes", status=503, times=3)
    sleep = ScaledSleep()
    async with running(fake, sleep=sleep) as (_, snaps):
        resources, _ = await snaps.next()
    assert route_names(resources) == {"web"}
    base = SETTINGS.backoff_base_s
    expected = (base, 2 * base, 4 * base)
    assert len(sleep.waits) == 3
    assert all(
        b <= w <= b * (1 + SETTINGS.jitter) for w, b in zip(sleep.waits, expected, strict=True)
    )


async def test_an_error_410_event_on_a_live_watch_triggers_a_relist(fake: FakeApiServer) -> None:
    path = "/apis/gateway.networking.k8s.io/v1/httproutes"
    fake.apply(mk_route("shop", "web", {"web": 1}))
    async with running(fake) as (_, snaps):
        await snaps.next()
        await eventually(lambda: fake.count("GET", path, watch=True) == 1)
        fake.expire_watches()
        await eventually(lambda: fake.count("GET", path, watch=False) == 2)
        fake.apply(mk_route("shop", "web", {"web": 7}))
        resources, _ = await snaps.next()
    assert weights(resources, "web") == [7]


async def test_a_silent_watch_is_reopened_and_every_line_pushes_the_timeout_back(
    fake: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    path = "/apis/gateway.networking.k8s.io/v1/httproutes"
    fake.apply(mk_route("shop", "web", {"web": 1}))
    settings = dataclasses.replace(SETTINGS, inactivity_timeout_s=0.4)
    async with running(fake, settings=settings) as (_, snaps):
        await snaps.next()
        await eventually(lambda: fake.count("GET", path, watch=True) == 1)
        for _ in range(8):  # 0.8 s of bookmarks every 0.1 s: twice the timeout, no reopen
            fake.bookmark()
            await asyncio.sleep(0.1)
        assert fake.count("GET", path, watch=True) == 1
        await eventually(lambda: fake.count("GET", path, watch=True) == 2)  # then silence
    assert "watch inactive" in caplog.text


async def test_a_kind_that_is_not_installed_does_not_stop_the_others(
    fake: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    fault = SERVED["FaultInjection"]
    fake.uninstall(fault)
    for obj in every_kind():
        if obj["kind"] != "FaultInjection":
            fake.apply(obj)
    path = "/apis/policy.turnout.dev/v1alpha1/faultinjections"
    async with running(fake) as (_, snaps):
        resources, diags = await snaps.next()
        assert weights(resources, "web") == [90, 10]
        assert [d.reason for d in diags] == ["KindNotInstalled"]
        await eventually(lambda: fake.count("GET", path) >= 3)  # retried slowly, not fatal
        fake.install(fault)
        fake.apply(next(o for o in every_kind() if o["kind"] == "FaultInjection"))
        _, diags = await snaps.next(
            lambda r: any(o.obj.kind == "FaultInjection" for o in r.objects)
        )
    assert diags == []
    assert caplog.text.count("kind not installed kind=FaultInjection") == 1


# --------------------------------------------------------------------------- status write-back


def mk_status(
    name: str,
    *,
    generation: int,
    accepted: tuple[bool, str] = (True, "Accepted"),
    message: str = "ok",
) -> ir.RouteStatus:
    ref = ir.ParentRefKey(group="", kind="Service", namespace="shop", name="web", port=80)
    conds = (
        ir.Condition(
            type="Accepted",
            status="True" if accepted[0] else "False",
            reason=accepted[1],
            message=message,
            observed_generation=generation,
        ),
        ir.Condition(
            type="ResolvedRefs",
            status="True",
            reason="ResolvedRefs",
            message="ok",
            observed_generation=generation,
        ),
    )
    return ir.RouteStatus(
        route=ir.SourceRef(kind="HTTPRoute", namespace="shop", name=name),
        generation=generation,
        parents=(ir.ParentStatus(parent_ref=ref, controller_name=OURS, conditions=conds),),
    )


OTHER_ENTRY = {
    "parentRef": {"group": "", "kind": "Service", "name": "web", "port": 80},
    "controllerName": OTHER,
    "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}],
}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@contextlib.asynccontextmanager
async def writer(fake: FakeApiServer, clock: Clock) -> AsyncIterator[KubernetesSource]:
    """A source that is not started: status writes need no watches."""
    api = fake.api_client()
    source = KubernetesSource(
        api, on_snapshot=lambda r, d: None, settings=SETTINGS, sleep=ScaledSleep(), clock=clock
    )
    try:
        yield source
    finally:
        await source.stop()
        api.close()  # type: ignore[no-untyped-call]


def stored_parents(fake: FakeApiServer, name: str) -> list[dict[str, Any]]:
    return list(fake.get(SERVED["HTTPRoute"], "shop", name)["status"]["parents"])


async def test_status_write_replaces_our_entries_and_keeps_other_controllers(
    fake: FakeApiServer,
) -> None:
    fake.apply(mk_route("shop", "web", {"web": 1}) | {"status": {"parents": [OTHER_ENTRY]}})
    fake.apply(mk_route("shop", "web", {"web": 2}))  # a spec change: generation 2
    assert fake.get(SERVED["HTTPRoute"], "shop", "web")["metadata"]["generation"] == 2
    async with writer(fake, Clock()) as source:
        (result,) = await source.write_route_status([mk_status("web", generation=2)])
    assert result.outcome == "written"
    other, ours = stored_parents(fake, "web")
    assert other == OTHER_ENTRY
    assert ours["controllerName"] == OURS
    # The spec's parentRef as written (no namespace: Flagger compares field by field).
    assert ours["parentRef"] == {"group": "", "kind": "Service", "name": "web", "port": 80}
    assert {c["type"]: c["observedGeneration"] for c in ours["conditions"]} == {
        "Accepted": 2,
        "ResolvedRefs": 2,
    }
    assert {c["lastTransitionTime"] for c in ours["conditions"]} == {"2024-05-01T12:00:00Z"}
    # status writes do not bump the generation
    assert fake.get(SERVED["HTTPRoute"], "shop", "web")["metadata"]["generation"] == 2


async def test_unchanged_status_is_not_written_again(fake: FakeApiServer) -> None:
    fake.apply(mk_route("shop", "web", {"web": 1}))
    clock = Clock()
    path = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web/status"
    async with writer(fake, clock) as source:
        assert [
            r.outcome for r in await source.write_route_status([mk_status("web", generation=1)])
        ] == ["written"]
        clock.now = T0.replace(hour=13)
        again = await source.write_route_status([mk_status("web", generation=1)])
    assert [r.outcome for r in again] == ["unchanged"]
    assert fake.count("PUT", path) == 1


async def test_transition_time_moves_only_when_status_or_reason_change(
    fake: FakeApiServer,
) -> None:
    fake.apply(mk_route("shop", "web", {"web": 1}))
    clock = Clock()
    async with writer(fake, clock) as source:
        await source.write_route_status([mk_status("web", generation=1)])
        clock.now = T0.replace(hour=13)
        await source.write_route_status([mk_status("web", generation=1, message="still ok")])
        (ours,) = stored_parents(fake, "web")
        accepted = ours["conditions"][0]
        assert (accepted["message"], accepted["lastTransitionTime"]) == (
            "still ok",
            "2024-05-01T12:00:00Z",
        )
        clock.now = T0.replace(hour=14)
        await source.write_route_status(
            [mk_status("web", generation=1, accepted=(False, "NoMatchingParent"))]
        )
    (ours,) = stored_parents(fake, "web")
    accepted, resolved = ours["conditions"]
    assert (accepted["status"], accepted["lastTransitionTime"]) == ("False", "2024-05-01T14:00:00Z")
    assert resolved["lastTransitionTime"] == "2024-05-01T12:00:00Z"


async def test_a_409_conflict_is_resolved_by_reading_again_and_retrying(
    fake: FakeApiServer,
) -> None:
    fake.apply(mk_route("shop", "web", {"web": 1}) | {"status": {"parents": []}})
    path = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web/status"

    def other_controller_writes() -> None:  # between our GET and our PUT
        fake.apply(mk_route("shop", "web", {"web": 1}) | {"status": {"parents": [OTHER_ENTRY]}})

    fake.before("PUT", path, other_controller_writes)
    async with writer(fake, Clock()) as source:
        (result,) = await source.write_route_status([mk_status("web", generation=1)])
    assert result.outcome == "written"
    assert fake.count("PUT", path) == 2
    assert [p["controllerName"] for p in stored_parents(fake, "web")] == [OTHER, OURS]


async def test_stale_and_missing_routes_are_not_written(fake: FakeApiServer) -> None:
    fake.apply(mk_route("shop", "web", {"web": 1}))
    fake.apply(mk_route("shop", "web", {"web": 2}))  # generation 2; the status is for 1
    async with writer(fake, Clock()) as source:
        got = await source.write_route_status(
            [mk_status("web", generation=1), mk_status("gone", generation=1)]
        )
    assert [r.outcome for r in got] == ["stale", "missing"]
    assert not [m for m, _, _ in fake.requests if m == "PUT"]


async def test_our_own_status_write_publishes_no_snapshot(fake: FakeApiServer) -> None:
    for obj in every_kind():
        fake.apply(obj)
    async with running(fake) as (source, snaps):
        resources, _ = await snaps.next()
        statuses = compile_table(resources).statuses
        got = await source.write_route_status(statuses)
        assert {r.outcome for r in got} == {"written"}
        await asyncio.sleep(0.3)  # the MODIFIED events arrive; no snapshot may follow
        assert snaps.queue.empty()
        again = await source.write_route_status(statuses)
    assert {r.outcome for r in again} == {"unchanged"}
