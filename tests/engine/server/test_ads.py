"""`AdsServer` against our proxy's real ADS client (`XdsClient`), grpc.aio on 127.0.0.1:0.

Tables are compiled from small manifests with the engine, so what is served is what the
product serves. Every wait is bounded by `asyncio.timeout`; the only fixed waits are the
short "nothing else arrives" checks after a NACK and a no-op publish.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.engine.server.ads_kit import (
    FAST,
    QUIET_S,
    TIMEOUT_S,
    V2_LISTENER,
    WEB,
    WEB_V1,
    WEB_V2,
    Tables,
    backends,
    corrupting,
    node,
    split,
)
from tests.engine.server.builders import compile_table, manifest, mk_route, mk_service, weighted
from turnout.engine.ir import RouteTable
from turnout.engine.server import AdsServer, ServerSettings
from turnout.engine.xds import ROUTE_CONFIGURATION_TYPE
from turnout.proxy.xds_client import XdsClient


@pytest.fixture
async def connect(server: AdsServer) -> AsyncIterator[Callable[..., XdsClient]]:
    clients: list[XdsClient] = []

    def make(tables: Tables, *, ns: str = "shop", name: str = "client") -> XdsClient:
        client = XdsClient(
            f"127.0.0.1:{server.port}", node=node(ns, name), on_table=tables, settings=FAST
        )
        client.start()
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for c in clients:
            await c.stop()


async def test_initial_sync_serves_the_published_table(
    server: AdsServer, connect: Callable[..., XdsClient], tmp_path: Path
) -> None:
    assert server.publish(compile_table(tmp_path, split(90, 10))) == 1
    tables = Tables()
    connect(tables)
    table, version = await tables.next()
    assert version == "1"
    assert backends(table) == {WEB_V1: 90, WEB_V2: 10}
    [stream] = server.status().streams
    assert stream.namespace == "shop"
    assert stream.subscriptions["LDS"] == ("*",)
    assert stream.subscriptions["RDS"] == (V2_LISTENER, WEB)  # every Service has a listener


async def test_client_connected_before_the_first_table_gets_it_when_published(
    server: AdsServer, connect: Callable[..., XdsClient], tmp_path: Path
) -> None:
    tables = Tables()
    connect(tables)
    async with asyncio.timeout(TIMEOUT_S):
        while not server.status().streams:
            await asyncio.sleep(0.01)
    server.publish(compile_table(tmp_path, split(50, 50)))
    table, _ = await tables.next()
    assert backends(table) == {WEB_V1: 50, WEB_V2: 50}


async def test_weight_change_is_pushed_and_only_changed_types_are_resent(
    server: AdsServer, connect: Callable[..., XdsClient], tmp_path: Path
) -> None:
    server.publish(compile_table(tmp_path, split(90, 10)))
    tables = Tables()
    client = connect(tables)
    await tables.next()
    assert server.publish(compile_table(tmp_path, split(10, 90))) == 2
    table, version = await tables.next()
    assert version == "2"
    assert backends(table) == {WEB_V1: 10, WEB_V2: 90}
    # Only the RouteConfiguration changed: listeners, clusters and endpoints stay at "1".
    versions = {url.rsplit(".", 1)[-1]: v for url, v in client.status.versions}
    assert versions == {
        "Listener": "1",
        "RouteConfiguration": "2",
        "Cluster": "1",
        "ClusterLoadAssignment": "1",
    }


async def test_equal_table_is_not_a_new_version(
    server: AdsServer, connect: Callable[..., XdsClient], tmp_path: Path
) -> None:
    server.publish(compile_table(tmp_path, split(90, 10)))
    tables = Tables()
    client = connect(tables)
    await tables.next()
    acks = client.status.acks
    assert server.publish(compile_table(tmp_path, split(90, 10), name="again.yaml")) == 1
    await asyncio.sleep(QUIET_S)
    assert tables.seen == ["1"]
    assert client.status.acks == acks


async def test_slow_stream_skips_intermediate_versions(
    server: AdsServer, connect: Callable[..., XdsClient], tmp_path: Path
) -> None:
    server.publish(compile_table(tmp_path, split(90, 10)))
    tables = Tables()
    connect(tables)
    await tables.next()
    later = [compile_table(tmp_path, split(100 - w, w)) for w in (20, 30, 40)]
    for t in later:  # no await in between: the stream only ever sees the newest
        server.publish(t)
    table, version = await tables.next()
    assert version == "4"
    assert backends(table) == {WEB_V1: 60, WEB_V2: 40}
    assert tables.seen == ["1", "4"]


async def test_nack_is_logged_once_not_resent_and_a_newer_table_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad, fixed = (compile_table(tmp_path, split(100 - w, w)) for w in (10, 50, 70))
    srv = AdsServer(translator=corrupting(bad), settings=ServerSettings(stop_grace_ms=0))
    await srv.start("127.0.0.1", 0)
    tables = Tables()
    client = XdsClient(f"127.0.0.1:{srv.port}", node=node(), on_table=tables, settings=FAST)
    try:
        srv.publish(good)
        client.start()
        await tables.next()
        caplog.set_level(logging.WARNING, logger="turnout.engine.server")
        srv.publish(bad)
        async with asyncio.timeout(TIMEOUT_S):
            while srv.status().nacks == 0:
                await asyncio.sleep(0.01)
        await asyncio.sleep(QUIET_S)  # a resend loop would NACK again and again meanwhile
        assert srv.status().nacks == 1
        assert client.status.nacks == 1
        [stream] = srv.status().streams
        [nack] = stream.nacks
        assert nack.version == "2" and nack.type_url == ROUTE_CONFIGURATION_TYPE
        assert "regex" in nack.reason.lower() or "([" in nack.reason
        warnings = [
            r
            for r in caplog.records
            if r.name.startswith("turnout.engine.server") and "NACK" in r.getMessage()
        ]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
        assert "reason=" in warnings[0].getMessage() and "version=2" in warnings[0].getMessage()
        assert client.table is not None and backends(client.table) == {WEB_V1: 90, WEB_V2: 10}
        srv.publish(fixed)
        table, version = await tables.next()
        assert version == "3" and backends(table) == {WEB_V1: 30, WEB_V2: 70}
        async with asyncio.timeout(TIMEOUT_S):  # the ACK follows the table
            while srv.status().streams[0].nacks:
                await asyncio.sleep(0.01)
        assert srv.status().streams[0].acked["RDS"] == "3"
    finally:
        await client.stop()
        await srv.stop()


CONSUMER = mk_route(
    "web-canary",
    ns="client-a",
    parent="web",
    parent_ns="shop",
    rules="  - backendRefs: [{name: web-v2, namespace: shop, port: 80}]\n",
)


async def test_each_namespace_gets_its_consumer_view(
    server: AdsServer, connect: Callable[..., XdsClient], tmp_path: Path
) -> None:
    server.publish(compile_table(tmp_path, manifest(split(90, 10), CONSUMER)))
    producer, consumer = Tables(), Tables()
    connect(producer, ns="client-b", name="b")
    connect(consumer, ns="client-a", name="a")
    p_table, _ = await producer.next()
    c_table, _ = await consumer.next()
    assert backends(p_table) == {WEB_V1: 90, WEB_V2: 10}
    assert backends(c_table) == {WEB_V2: 1}
    subs = {s.namespace: s.subscriptions["RDS"] for s in server.status().streams}
    assert subs == {"client-a": (V2_LISTENER, WEB + "@client-a"), "client-b": (V2_LISTENER, WEB)}


async def test_subscriptions_widen_and_narrow_with_the_listeners(
    server: AdsServer, connect: Callable[..., XdsClient], tmp_path: Path
) -> None:
    server.publish(compile_table(tmp_path, split(90, 10)))
    tables = Tables()
    connect(tables)
    table, _ = await tables.next()
    assert set(table.listeners) == {WEB, V2_LISTENER}
    api = "api.shop.svc.cluster.local:80"
    wider = manifest(
        split(90, 10),
        mk_service("api"),
        mk_route("api", parent="api", rules=weighted(("api", 1))),
    )
    server.publish(compile_table(tmp_path, wider))
    table, _ = await tables.next()
    assert set(table.listeners) == {WEB, V2_LISTENER, api}
    [stream] = server.status().streams
    assert stream.subscriptions["RDS"] == (api, V2_LISTENER, WEB)
    assert "shop/api:80" in stream.subscriptions["EDS"]
    server.publish(compile_table(tmp_path, split(80, 20)))
    table, _ = await tables.next()
    assert set(table.listeners) == {WEB, V2_LISTENER}
    async with asyncio.timeout(TIMEOUT_S):
        while server.status().streams[0].subscriptions["RDS"] != (V2_LISTENER, WEB):
            await asyncio.sleep(0.01)
    assert "shop/api:80" not in server.status().streams[0].subscriptions["EDS"]


async def test_client_reconnects_and_resyncs_after_a_server_restart(
    tmp_path: Path,
) -> None:
    srv = AdsServer(settings=ServerSettings(stop_grace_ms=0))
    port = await srv.start("127.0.0.1", 0)
    tables = Tables()
    client = XdsClient(f"127.0.0.1:{port}", node=node(), on_table=tables, settings=FAST)
    try:
        srv.publish(compile_table(tmp_path, split(90, 10)))
        client.start()
        await tables.next()
        await srv.stop()
        srv = AdsServer(settings=ServerSettings(stop_grace_ms=0))
        await srv.start("127.0.0.1", port)
        srv.publish(compile_table(tmp_path, split(0, 100)))
        table, version = await tables.next()
        assert version == "1"  # a new server counts from 1; the content decides
        assert backends(table) == {WEB_V1: 0, WEB_V2: 100}
    finally:
        await client.stop()  # first: a client left reconnecting to nothing stops slowly
        await srv.stop()


async def test_heap_settle_freezes_at_publish_and_collects_old_cycles_once() -> None:
    """`heap_settle_ms`: a publish freezes the heap; the settle collects the cycles that
    were frozen alive and became garbage, then freezes again."""
    server = AdsServer(settings=ServerSettings(heap_settle_ms=60_000))
    try:
        gc.unfreeze()

        class Node:
            other: object = None

        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        server.publish(RouteTable(parents=(), clusters=()))
        assert gc.get_freeze_count() > 0 and server._settle is not None
        del a, b
        gc.collect()
        assert gone() is not None  # frozen: the collector does not see the cycle
        server.settle_heap()
        assert gone() is None and gc.get_freeze_count() > 0 and server._settle is None
    finally:
        await server.stop()
        gc.unfreeze()
