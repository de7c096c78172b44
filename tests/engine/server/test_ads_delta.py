"""`AdsServer.DeltaAggregatedResources` against a raw grpcio delta stream (the xds-protos
stubs), on 127.0.0.1: what goes on the wire, ACKs, and a reconnect that says what it has."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc.aio
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from tests.engine.server.ads_kit import TIMEOUT_S, V2_LISTENER, WEB, split
from tests.engine.server.builders import compile_table
from turnout.engine.server import AdsServer
from turnout.engine.xds import LISTENER_TYPE, ROUTE_CONFIGURATION_TYPE

LDS, RDS = LISTENER_TYPE, ROUTE_CONFIGURATION_TYPE


class DeltaCall:
    def __init__(self, port: int) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        self.call = stub.DeltaAggregatedResources()
        self.first = True

    async def send(self, type_url: str, *names: str, nonce: str = "", **kw: Any) -> None:
        r = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url, resource_names_subscribe=names, response_nonce=nonce, **kw
        )
        if self.first:
            r.node.CopyFrom(base_pb2.Node(id="shop/delta"))
            r.node.metadata.update({"namespace": "shop"})
            self.first = False
        await self.call.write(r)

    async def read(self) -> Any:
        async with asyncio.timeout(TIMEOUT_S):
            return await self.call.read()

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close(grace=None)


async def test_delta_stream_sends_changes_only_and_honours_initial_versions(
    server: AdsServer, tmp_path: Path
) -> None:
    server.publish(compile_table(tmp_path, split(90, 10), name="a.yaml"))
    c = DeltaCall(server.port)
    try:
        await c.send(LDS)  # legacy wildcard
        lds = await c.read()
        assert lds.type_url == LDS and lds.system_version_info == "1"
        assert sorted(r.name for r in lds.resources) == [V2_LISTENER, WEB]
        await c.send(LDS, nonce=lds.nonce)
        await c.send(RDS, WEB)
        rds = await c.read()
        assert [r.name for r in rds.resources] == [WEB] and not rds.removed_resources
        await c.send(RDS, nonce=rds.nonce)
        server.publish(compile_table(tmp_path, split(50, 50), name="b.yaml"))
        change = await c.read()  # only web's routes changed: no LDS
        assert change.type_url == RDS and change.system_version_info == "2"
        assert [r.name for r in change.resources] == [WEB]
        assert change.resources[0].version != rds.resources[0].version
        await c.send(RDS, nonce=change.nonce)
        async with asyncio.timeout(TIMEOUT_S):
            while server.status().streams[0].acked.get("RDS") != "2":
                await asyncio.sleep(0.01)
        status = server.status().streams[0]
        assert status.subscriptions == {"LDS": ("*",), "RDS": (WEB,)}
        assert status.sync["RDS"] == "SYNCED"
        versions = {
            LDS: {r.name: r.version for r in lds.resources},
            RDS: {r.name: r.version for r in change.resources},
        }
    finally:
        await c.close()
    # Reconnect saying what we have: nothing is sent until something changes, and then only it.
    c = DeltaCall(server.port)
    try:
        await c.send(LDS, initial_resource_versions=versions[LDS])
        await c.send(RDS, WEB, initial_resource_versions=versions[RDS])
        async with asyncio.timeout(TIMEOUT_S):
            while not (server.status().streams and server.status().streams[0].subscriptions):
                await asyncio.sleep(0.01)
        server.publish(compile_table(tmp_path, split(40, 60), name="c.yaml"))
        first = await c.read()
        assert (first.type_url, first.system_version_info) == (RDS, "3")
        assert [r.name for r in first.resources] == [WEB]
    finally:
        await c.close()
