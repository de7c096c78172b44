"""The ADS client against a real grpc.aio server (`ads_fake.FakeAds`) on 127.0.0.1.

Resources come from the engine: a small manifest is compiled (`compile_files`) and translated
(`translate`), so these tests also check that what the control plane will serve is what the
proxy accepts. Every test is bounded by `asyncio.timeout`; none sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.engine.server.ads_kit import backends, comeback
from tests.proxy.ads_fake import FakeAds, Snapshot, is_ack, is_nack
from turnout.engine.pipeline import compile_files
from turnout.engine.xds import translate
from turnout.proxy import Forward, RequestInfo, RuntimeTable
from turnout.proxy.xds_client import (
    NodeInfo,
    XdsClient,
    XdsSettings,
    XdsState,
    backoff_delay,
)
from turnout.proxy.xds_resources import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    LOAD_ASSIGNMENT_TYPE,
    ROUTE_CONFIGURATION_TYPE,
    TYPE_URLS,
)

TIMEOUT_S = 5.0
WEB = "web.shop.svc.cluster.local:80"
WEB_V2 = "web-v2.shop.svc.cluster.local:80"
NODE = NodeInfo(
    id="sidecar~10.0.0.7~client-1~shop", cluster="client", namespace="shop", workload="client"
)
FAST = XdsSettings(
    backoff_base_ms=20,
    backoff_max_ms=200,
    connect_timeout_ms=2_000,
    send_timeout_ms=2_000,
    idle_timeout_ms=10_000,
    dependency_timeout_ms=5_000,
    stop_timeout_ms=2_000,
    delta=False,  # FakeAds speaks state of the world (test_delta_falls_back_to_sotw: delta)
)

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: shop}}
spec:
  ports: [{{name: http, port: 80, appProtocol: http}}]
"""
ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: shop}}
spec:
  parentRefs: [{{group: "", kind: Service, name: web, port: 80}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /v2}}}}]
    backendRefs: [{{name: {v2}, port: 80}}]
  - backendRefs: [{{name: web, port: 80}}]
"""


def mk_manifest(*, v2: str = "web-v2", services: tuple[str, ...] = ("web", "web-v2")) -> str:
    """Service `web` with an HTTPRoute sending /v2 to `v2` and the rest to `web`."""
    docs = [SERVICE.format(name=s) for s in services] + [ROUTE.format(v2=v2)]
    return "---\n".join(docs)


def mk_snapshot(tmp_path: Path, manifest: str) -> dict[str, dict[str, Any]]:
    """Compile a manifest with the engine and translate it: {type_url: {name: message}}."""
    path = tmp_path / f"manifest-{abs(hash(manifest))}.yaml"
    path.write_text(manifest)
    compiled = compile_files([path])
    assert not compiled.diagnostics
    return translate(compiled.result.table).by_type_url()


def with_bad_regex(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """The same snapshot, its first `web` route matching an invalid regex."""
    out = {t: dict(named) for t, named in snapshot.items()}
    rc = copy.deepcopy(out[ROUTE_CONFIGURATION_TYPE][WEB])
    rc.virtual_hosts[0].routes[0].match.safe_regex.regex = "/v2/(["
    out[ROUTE_CONFIGURATION_TYPE][WEB] = rc
    return out


def with_missing_route_config(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """The same snapshot, the `web` listener naming a RouteConfiguration nobody serves."""
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2 as hcm_pb2,
    )

    out = {t: dict(named) for t, named in snapshot.items()}
    lst = copy.deepcopy(out[LISTENER_TYPE][WEB])
    hcm = hcm_pb2.HttpConnectionManager()
    lst.api_listener.api_listener.Unpack(hcm)
    hcm.rds.route_config_name = "nope"
    lst.api_listener.api_listener.Pack(hcm)
    out[LISTENER_TYPE][WEB] = lst
    return out


def backend(table: RuntimeTable, path: str) -> str:
    decision = table.decide(RequestInfo(method="GET", authority="web", path=path), listener=WEB)
    assert isinstance(decision.action, Forward), decision
    return decision.action.backends[0].cluster


class Tables:
    """The `on_table` callback: every (table, version) handed over, awaitable."""

    def __init__(self) -> None:
        self.seen: list[tuple[RuntimeTable, str]] = []
        self._queue: asyncio.Queue[tuple[RuntimeTable, str]] = asyncio.Queue()

    def __call__(self, table: RuntimeTable, version: str) -> None:
        self.seen.append((table, version))
        self._queue.put_nowait((table, version))

    async def next(self) -> tuple[RuntimeTable, str]:
        async with asyncio.timeout(TIMEOUT_S):
            return await self._queue.get()

    async def routing(self, path: str, to: str) -> tuple[RuntimeTable, str]:
        """The next table that sends `path` to cluster `to`. A snapshot's types arrive one by
        one, each may complete a table (LDS "2" + RDS "1" is a consistent table too), so the
        one a test wants can come after transitional ones."""
        while True:
            table, version = await self.next()
            if backend(table, path) == to:
                return table, version


async def until(cond: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        while not cond():
            await asyncio.sleep(0.01)


@pytest.fixture
async def ads() -> AsyncIterator[FakeAds]:
    fake = FakeAds()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def tables() -> Tables:
    return Tables()


@pytest.fixture
def v1(tmp_path: Path) -> dict[str, dict[str, Any]]:
    return mk_snapshot(tmp_path, mk_manifest())


def mk_client(ads: FakeAds, tables: Tables, settings: XdsSettings = FAST) -> XdsClient:
    return XdsClient(
        ads.target, node=NODE, on_table=tables, settings=settings, rng=random.Random(7)
    )


def acked(ads: FakeAds, version: str) -> set[str]:
    return {r.type_url for r in ads.requests if is_ack(r) and r.version_info == version}


async def test_delta_falls_back_to_sotw_on_unimplemented(
    ads: FakeAds, tables: Tables, v1: Snapshot, caplog: pytest.LogCaptureFixture
) -> None:
    ads.set_snapshot("1", v1)
    settings = dataclasses.replace(FAST, delta=True)
    async with asyncio.timeout(TIMEOUT_S), mk_client(ads, tables, settings) as client:
        _, version = await tables.next()
        assert version == "1" and client.status.attempt == 0
    assert "does not serve delta xDS, using state of the world" in caplog.text
    assert ads.streams_opened == 1  # the delta call never reached the SotW handler


async def test_initial_sync_builds_a_table_that_decides_requests(
    ads: FakeAds, tables: Tables, v1: Snapshot
) -> None:
    ads.set_snapshot("1", v1)
    async with asyncio.timeout(TIMEOUT_S), mk_client(ads, tables) as client:
        table, version = await tables.next()
        assert version == "1"
        assert backend(table, "/v2/cart") == "shop/web-v2:80"
        assert backend(table, "/cart") == "shop/web:80"
        await until(lambda: acked(ads, "1") == set(TYPE_URLS))
        assert client.ready and client.table is table
        status = client.status
        assert status.state is XdsState.STREAMING
        assert status.table_version == "1"
        assert dict(status.versions) == dict.fromkeys(TYPE_URLS, "1")
        assert (status.acks, status.nacks) == (4, 0)
    first = ads.requests[0]
    assert first.node.id == NODE.id and first.node.cluster == "client"
    assert dict(first.node.metadata) == {"namespace": "shop", "workload": "client"}
    assert not ads.of_type(LISTENER_TYPE, is_nack)
    assert client.status.state is XdsState.STOPPED


async def test_route_and_endpoint_subscriptions_follow_listeners_and_clusters(
    ads: FakeAds, tables: Tables, v1: Snapshot, tmp_path: Path
) -> None:
    ads.set_snapshot("1", v1)
    async with asyncio.timeout(TIMEOUT_S), mk_client(ads, tables):
        await tables.next()
        # The first requests are the wildcards; RDS and EDS are asked for once LDS and CDS
        # answered, by the names these carry.
        kinds = [r.type_url for r in ads.requests[:2]]
        assert kinds == [LISTENER_TYPE, CLUSTER_TYPE]
        rds = ads.of_type(ROUTE_CONFIGURATION_TYPE)[0]
        eds = ads.of_type(LOAD_ASSIGNMENT_TYPE)[0]
        assert not rds.response_nonce and sorted(rds.resource_names) == [WEB_V2, WEB]
        assert sorted(eds.resource_names) == ["shop/web-v2:80", "shop/web:80"]
        assert list(ads.of_type(LISTENER_TYPE)[0].resource_names) == []

        # web-v2 goes away: the subscriptions narrow to what is left.
        ads.set_snapshot("2", mk_snapshot(tmp_path, mk_manifest(v2="web", services=("web",))))
        table, version = await tables.routing("/v2/cart", "shop/web:80")
        assert version == "2"
        assert sorted(table.listeners) == [WEB]
        await until(lambda: acked(ads, "2") == set(TYPE_URLS))
        assert list(ads.of_type(ROUTE_CONFIGURATION_TYPE)[-1].resource_names) == [WEB]
        assert list(ads.of_type(LOAD_ASSIGNMENT_TYPE)[-1].resource_names) == ["shop/web:80"]
    assert not [r for r in ads.requests if is_nack(r)]


async def test_update_is_applied_and_acked_with_the_new_version(
    ads: FakeAds, tables: Tables, v1: Snapshot, tmp_path: Path
) -> None:
    ads.set_snapshot("1", v1)
    async with asyncio.timeout(TIMEOUT_S), mk_client(ads, tables) as client:
        await tables.next()
        ads.set_snapshot("2", mk_snapshot(tmp_path, mk_manifest(v2="web")))
        table, version = await tables.routing("/v2/cart", "shop/web:80")
        assert version == "2"
        assert len(tables.seen) == 2  # only RDS changed: LDS, CDS and EDS "2" are ACKed as is
        await ads.wait_request(
            lambda r: r.type_url == ROUTE_CONFIGURATION_TYPE and is_ack(r) and r.version_info == "2"
        )
        assert client.table is table
        assert client.status.table_version == "2"


async def test_bad_update_is_nacked_and_the_last_good_table_keeps_deciding(
    ads: FakeAds, tables: Tables, v1: Snapshot, tmp_path: Path
) -> None:
    ads.set_snapshot("1", v1)
    async with asyncio.timeout(TIMEOUT_S), mk_client(ads, tables) as client:
        good, _ = await tables.next()
        await until(lambda: acked(ads, "1") == set(TYPE_URLS))
        ads.set_snapshot("2", with_bad_regex(v1))
        nack = await ads.wait_request(is_nack)
        assert nack.type_url == ROUTE_CONFIGURATION_TYPE
        assert nack.version_info == "1"  # the previous version: nothing of "2" was applied
        rds_responses = [r for r in ads.responses if r.type_url == ROUTE_CONFIGURATION_TYPE]
        assert nack.response_nonce == rds_responses[-1].nonce
        message = nack.error_detail.message
        assert message.startswith(f'RouteConfiguration "{WEB}" virtual_hosts[0].routes[0]')
        assert "match.safe_regex.regex: invalid regex '/v2/(['" in message
        assert nack.error_detail.code == 3  # INVALID_ARGUMENT
        assert client.table is good
        assert backend(client.table, "/v2/cart") == "shop/web-v2:80"
        assert client.status.nacks == 1 and client.status.last_nack == message

        ads.set_snapshot("3", mk_snapshot(tmp_path, mk_manifest(v2="web")))
        table, version = await tables.routing("/v2/cart", "shop/web:80")
        assert version == "3" and client.table is table
        await until(lambda: ROUTE_CONFIGURATION_TYPE in acked(ads, "3"))
    assert len(tables.seen) == 2
    assert len([r for r in ads.requests if is_nack(r)]) == 1


async def test_listener_naming_a_missing_route_config_is_nacked_after_the_dependency_timeout(
    ads: FakeAds, tables: Tables, v1: Snapshot
) -> None:
    settings = XdsSettings(
        backoff_base_ms=20, backoff_max_ms=200, dependency_timeout_ms=200, delta=False
    )
    ads.set_snapshot("1", v1)
    async with asyncio.timeout(TIMEOUT_S), mk_client(ads, tables, settings) as client:
        good, _ = await tables.next()
        ads.set_snapshot("2", with_missing_route_config(v1))
        await ads.wait_request(
            lambda r: r.type_url == ROUTE_CONFIGURATION_TYPE and "nope" in r.resource_names
        )
        nack = await ads.wait_request(is_nack)
        assert nack.type_url == LISTENER_TYPE and nack.version_info == "1"
        assert 'RouteConfiguration "nope" not found' in nack.error_detail.message
        assert client.table is good
        # Rejected: the subscription goes back to what the last good listeners name.
        after = ads.requests.index(nack)
        await ads.wait_request(
            lambda r: (
                ads.requests.index(r) > after
                and r.type_url == ROUTE_CONFIGURATION_TYPE
                and sorted(r.resource_names) == [WEB_V2, WEB]
            )
        )
        # The fix equals the last good set: ACKed, no rebuild, no callback.
        ads.set_snapshot("3", v1)
        await until(
            lambda: (
                acked(ads, "3")
                == {LISTENER_TYPE, CLUSTER_TYPE, LOAD_ASSIGNMENT_TYPE, ROUTE_CONFIGURATION_TYPE}
            )
        )
        assert client.table is good and len(tables.seen) == 1
        assert client.status.table_version == "1"


async def test_dependencies_arriving_out_of_order_are_waited_for_not_nacked(
    ads: FakeAds, tables: Tables, v1: Snapshot
) -> None:
    ads.hold(ROUTE_CONFIGURATION_TYPE, LOAD_ASSIGNMENT_TYPE)
    ads.set_snapshot("1", v1)
    async with asyncio.timeout(TIMEOUT_S), mk_client(ads, tables) as client:
        await ads.wait_request(lambda r: r.type_url == ROUTE_CONFIGURATION_TYPE)
        await ads.wait_request(lambda r: r.type_url == LOAD_ASSIGNMENT_TYPE)
        ads.release(LOAD_ASSIGNMENT_TYPE)  # endpoints before routes
        await until(lambda: any(r.type_url == LOAD_ASSIGNMENT_TYPE for r in ads.responses))
        await asyncio.sleep(0.05)  # let the client read it: still incomplete
        assert not client.ready and not tables.seen
        # Received but incomplete: ACKed (the server hears our subscription), never NACKed,
        # and nothing is applied until the routes arrive.
        await until(lambda: acked(ads, "1") == {LISTENER_TYPE, CLUSTER_TYPE, LOAD_ASSIGNMENT_TYPE})
        assert not [r for r in ads.requests if is_nack(r)]
        assert not client.ready and client.status.versions == ()
        ads.release(ROUTE_CONFIGURATION_TYPE)
        table, version = await tables.next()
        assert version == "1" and backend(table, "/v2") == "shop/web-v2:80"
        await until(lambda: acked(ads, "1") == set(TYPE_URLS))
    assert not [r for r in ads.requests if is_nack(r)]


async def test_new_names_and_changed_content_in_one_update_never_wait_for_the_timer(
    ads: FakeAds, tables: Tables, tmp_path: Path
) -> None:
    """Issue 11's sequence against a server that ignores stale requests outright (as the xDS
    spec allows a server to): v3 brings `web-v2` back (a listener's route config and a
    cluster's endpoints to subscribe to) and changes `web`'s route config and endpoints, so
    each RDS/EDS request naming the new resources is stale on arrival. Only the answer to
    the RDS and EDS responses can carry those names: the client must give it at once, not
    hold it until the resources it has just asked for arrive (which would be never)."""
    patient = dataclasses.replace(FAST, dependency_timeout_ms=60_000)
    ads.set_snapshot("1", mk_snapshot(tmp_path, comeback(1)))
    async with asyncio.timeout(TIMEOUT_S), mk_client(ads, tables, patient) as client:
        await tables.next()
        ads.set_snapshot("2", mk_snapshot(tmp_path, comeback(2)))
        await until(lambda: acked(ads, "2") == set(TYPE_URLS))  # and narrowed to web only
        assert backends(tables.seen[-1][0]) == {"shop/web:80": 100}
        ads.set_snapshot("3", mk_snapshot(tmp_path, comeback(3)))
        table, version = await tables.next()
        while backends(table) != {"shop/web:80": 0, "shop/web-v2:80": 100}:
            table, version = await tables.next()
        assert version == "3"
        assert [e.port for e in table.clusters["shop/web-v2:80"].endpoints] == [8090]
        assert [e.port for e in table.clusters["shop/web:80"].endpoints] == [8081]
        assert client.status.dependency_timeouts == 0
        # The race did happen: requests naming the new resources were ignored as stale.
        assert {r.type_url for r in ads.stale if WEB_V2 in r.resource_names} == {
            ROUTE_CONFIGURATION_TYPE
        }
        assert [r for r in ads.stale if "shop/web-v2:80" in r.resource_names]
    assert not [r for r in ads.requests if is_nack(r)]


async def test_server_restart_reconnects_with_backoff_and_resyncs(
    ads: FakeAds, tables: Tables, v1: Snapshot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="turnout.proxy.xds_client")
    ads.set_snapshot("1", v1)
    v2 = mk_snapshot(tmp_path, mk_manifest(v2="web"))
    async with asyncio.timeout(TIMEOUT_S), mk_client(ads, tables) as client:
        good, _ = await tables.next()
        await ads.stop()
        await until(lambda: "reconnect attempt #2" in caplog.text)
        down = client.status
        assert down.state in (XdsState.BACKOFF, XdsState.CONNECTING) and down.attempt >= 2
        assert client.ready and client.table is good  # the last good table while disconnected
        assert "reconnect attempt #1 " in caplog.text
        ads.set_snapshot("2", v2)
        await ads.start()
        table, version = await tables.routing("/v2/x", "shop/web:80")
        assert version == "2" and client.table is table
        up = client.status
        assert up.state is XdsState.STREAMING and up.attempt == 0 and up.last_error
    assert ads.streams_opened == 2
    resumed = [r for r in ads.of_type(LISTENER_TYPE) if not r.response_nonce][1]
    assert resumed.version_info == "1" and resumed.node.id == NODE.id


async def test_stop_while_disconnected_ends_the_client_promptly(tables: Tables) -> None:
    fake = FakeAds()
    await fake.start()
    await fake.stop()  # nothing listens on this port any more
    async with asyncio.timeout(TIMEOUT_S):
        client = mk_client(fake, tables)
        client.start()
        await until(lambda: client.status.attempt >= 2)
        await client.stop()
        await client.stop()
    assert client.status.state is XdsState.STOPPED and not client.ready
    assert client.status.last_error is not None and "UNAVAILABLE" in client.status.last_error
    with pytest.raises(TimeoutError):
        await client.wait_ready(timeout_ms=10)


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [
        pytest.param(1, 0.25, 0.5, id="first-attempt-is-base"),
        pytest.param(3, 1.0, 2.0, id="doubles-each-attempt"),
        pytest.param(10, 15.0, 30.0, id="capped-at-max"),
        pytest.param(10_000, 15.0, 30.0, id="huge-attempt-stays-capped"),
    ],
)
def test_backoff_is_exponential_capped_and_jittered(attempt: int, low: float, high: float) -> None:
    rng = random.Random(1)
    delays = [backoff_delay(attempt, base_ms=500, max_ms=30_000, rng=rng) for _ in range(50)]
    assert all(low <= d <= high for d in delays)
    assert len(set(delays)) > 1


async def test_a_silent_stream_is_reopened_by_the_idle_watchdog(
    ads: FakeAds, tables: Tables, v1: Snapshot, caplog: pytest.LogCaptureFixture
) -> None:
    settings = XdsSettings(backoff_base_ms=20, backoff_max_ms=40, idle_timeout_ms=150, delta=False)
    ads.hold(*TYPE_URLS)  # the server accepts the stream and never answers
    ads.set_snapshot("1", v1)
    async with asyncio.timeout(TIMEOUT_S), mk_client(ads, tables, settings) as client:
        await until(lambda: ads.streams_opened >= 2)
        assert "receive: no progress within 150ms" in caplog.text
        assert not client.ready
        ads.release(*TYPE_URLS)
        _, version = await tables.next()
        assert version == "1"
