"""The ADS server serves grpcio xDS servers their Listener (A36) by name, built from the
node's namespace and labels and the published policy; a PERMISSIVE port is logged with its
explanation once; a new policy is a new version and a new Listener. A raw ADS stream on
127.0.0.1 (grpc.aio) plays the grpcio server's xDS client."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator

import grpc.aio
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2

from turnout.engine.ir import RouteTable, SourceRef
from turnout.engine.ir_policy import PeerAuthn, PolicyTable
from turnout.engine.server import AdsServer, ServerSettings
from turnout.engine.xds import LISTENER_TYPE
from turnout.engine.xds.grpc_security import SERVER_LISTENER_TEMPLATE

NAME = SERVER_LISTENER_TEMPLATE % "127.0.0.1:50051"
STRICT = PeerAuthn(
    name="istio/peerauthentication/shop/strict",
    source=SourceRef(kind="PeerAuthentication", namespace="shop", name="strict"),
    namespace="shop",
    selector=None,
    mode="STRICT",
)


@pytest.fixture
async def ads() -> AsyncIterator[AdsServer]:
    srv = AdsServer(settings=ServerSettings(stop_grace_ms=0))
    await srv.start("127.0.0.1", 0)
    try:
        yield srv
    finally:
        await srv.stop()


def request(nonce: str = "", version: str = "") -> discovery_pb2.DiscoveryRequest:
    meta = struct_pb2.Struct()
    meta.update({"namespace": "shop", "workload": "deployment/echo", "labels": {"app": "echo"}})
    return discovery_pb2.DiscoveryRequest(
        node=base_pb2.Node(id="grpc~shop~deployment/echo", metadata=meta),
        type_url=LISTENER_TYPE,
        resource_names=[NAME],
        response_nonce=nonce,
        version_info=version,
    )


def listener_of(response: discovery_pb2.DiscoveryResponse) -> listener_pb2.Listener:
    [packed] = response.resources
    out = listener_pb2.Listener()
    packed.Unpack(out)
    return out


async def test_server_listener_by_name_warning_then_strict_on_a_new_policy(
    ads: AdsServer, caplog: pytest.LogCaptureFixture
) -> None:
    ads.publish(RouteTable(), PolicyTable())
    requests: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()

    async def outgoing() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while (req := await requests.get()) is not None:
            yield req

    caplog.set_level(logging.WARNING, logger="turnout.engine.server.ads")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ads.port}") as channel:
        stream = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
            outgoing()
        )
        await requests.put(request())
        async with asyncio.timeout(5):
            first = await stream.read()
        listener = listener_of(first)
        assert listener.name == NAME
        assert listener.address.socket_address.port_value == 50051
        assert not listener.filter_chains[0].HasField("transport_socket")  # PERMISSIVE
        [warning] = [r.getMessage() for r in caplog.records if "PERMISSIVE" in r.getMessage()]
        assert "port 50051" in warning and "STRICT" in warning and NAME in warning
        await requests.put(request(first.nonce, first.version_info))  # ACK
        ads.publish(
            RouteTable(), dataclasses.replace(PolicyTable(), peer_authentications=(STRICT,))
        )
        async with asyncio.timeout(5):
            second = await stream.read()
        assert second.version_info == "2"
        assert listener_of(second).filter_chains[0].HasField("transport_socket")  # STRICT
        await requests.put(None)
