"""A delta ADS client that gives the server no flow-control window (HTTP/2 SETTINGS initial
window 0, over a real socket with the `h2` library) never lets a response's write complete:
the server's write watchdog ends that stream's handler after `send_timeout_ms` (the stream
leaves the server's status), and the server keeps serving others. (grpc.aio itself then
sends no RST_STREAM while the write is pending in its core; the connection goes with
keepalive.)"""

from __future__ import annotations

import asyncio
import logging
import struct
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from tests.engine.server.ads_kit import TIMEOUT_S, split
from tests.engine.server.builders import compile_table
from tests.engine.server.test_ads_delta import LDS, DeltaCall
from turnout.engine.server import AdsServer, ServerSettings

METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"


def grpc_message(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


async def test_a_client_that_grants_no_window_is_closed_after_the_send_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = AdsServer(settings=ServerSettings(stop_grace_ms=0, send_timeout_ms=200))
    await server.start("127.0.0.1", 0)
    server.publish(compile_table(tmp_path, split(90, 10), name="a.yaml"))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
    )
    conn.initiate_connection()
    conn.send_headers(
        1,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", METHOD),
            (":authority", f"127.0.0.1:{server.port}"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
    )
    request = discovery_pb2.DeltaDiscoveryRequest(type_url=LDS)
    request.node.CopyFrom(base_pb2.Node(id="shop/stuck"))
    request.node.metadata.update({"namespace": "shop"})
    conn.send_data(1, grpc_message(request.SerializeToString()))
    writer.write(conn.data_to_send())
    events: list[h2.events.Event] = []

    async def read() -> None:
        while data := await reader.read(65536):
            events.extend(conn.receive_data(data))
            writer.write(conn.data_to_send())

    reading = asyncio.create_task(read())
    try:
        with caplog.at_level(logging.WARNING, logger="turnout.engine.server.ads"):
            async with asyncio.timeout(TIMEOUT_S):
                while not server.status().streams:  # the stream is open and identified
                    await asyncio.sleep(0.02)
                while server.status().streams:  # until the watchdog closes it
                    await asyncio.sleep(0.02)
        assert any(isinstance(e, h2.events.ResponseReceived) for e in events)
        assert not any(isinstance(e, h2.events.DataReceived) for e in events)  # window 0
        assert "ads client not reading, closing its stream" in caplog.text
        # The server still serves the next client.
        c = DeltaCall(server.port)
        try:
            await c.send(LDS)
            assert (await c.read()).type_url == LDS
        finally:
            await c.close()
    finally:
        reading.cancel()
        writer.close()
        await server.stop()
