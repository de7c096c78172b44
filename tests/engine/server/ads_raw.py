"""A bare ADS client for tests: one grpc.aio stream, requests written by hand, responses
read one at a time (no proxy logic), so a test sees exactly what the server sends.

```
async with RawAds(address, node_id="shop/p", metadata={...}) as ads:
    await ads.subscribe(POLICY_TYPE_URL)          # empty names = wildcard
    resp = await ads.next()                        # a DiscoveryResponse (bounded wait)
    await ads.ack(resp)
    await ads.quiet(0.3)                           # asserts nothing else arrives
```
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import grpc.aio
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import json_format, struct_pb2
from xds.type.v3 import typed_struct_pb2

TIMEOUT_S = 10.0


class RawAds:
    def __init__(
        self, address: str, *, node_id: str, metadata: Mapping[str, object] | None = None
    ) -> None:
        self._address = address
        self._node = base_pb2.Node(id=node_id, cluster="test")
        if metadata:
            meta = struct_pb2.Struct()
            meta.update(dict(metadata))
            self._node.metadata.CopyFrom(meta)
        self._queue: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()
        self._channel: grpc.aio.Channel | None = None
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._responses: asyncio.Queue[discovery_pb2.DiscoveryResponse | None] = asyncio.Queue()
        self.received: list[discovery_pb2.DiscoveryResponse] = []

    async def __aenter__(self) -> RawAds:
        self._channel = grpc.aio.insecure_channel(self._address)
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self._channel)
        self._call = stub.StreamAggregatedResources(self._requests())
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        # One reader for the stream's life: a timed-out `read()` would cancel the call.
        try:
            async for resp in self._call:
                self._responses.put_nowait(resp)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        finally:
            self._responses.put_nowait(None)

    async def __aexit__(self, *exc: object) -> None:
        self._queue.put_nowait(None)
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            await asyncio.wait({self._reader}, timeout=TIMEOUT_S)
        if self._channel is not None:
            await self._channel.close()

    async def _requests(self) -> Any:
        first = True
        while True:
            req = await self._queue.get()
            if req is None:
                return
            if first:
                req.node.CopyFrom(self._node)
                first = False
            yield req

    async def subscribe(self, type_url: str, names: Sequence[str] = ()) -> None:
        self._queue.put_nowait(
            discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=list(names))
        )

    async def ack(self, resp: discovery_pb2.DiscoveryResponse, names: Sequence[str] = ()) -> None:
        self._queue.put_nowait(
            discovery_pb2.DiscoveryRequest(
                type_url=resp.type_url,
                version_info=resp.version_info,
                response_nonce=resp.nonce,
                resource_names=list(names),
            )
        )

    async def next(self, timeout_s: float = TIMEOUT_S) -> discovery_pb2.DiscoveryResponse:
        async with asyncio.timeout(timeout_s):
            resp = await self._responses.get()
        assert resp is not None, "the server ended the stream"
        self.received.append(resp)
        return resp

    async def quiet(self, seconds: float) -> None:
        """Nothing arrives for `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                resp = await self._responses.get()
        except TimeoutError:
            return
        assert resp is not None, "the server ended the stream"
        raise AssertionError(f"unexpected response: type={resp.type_url} v={resp.version_info}")


def typed_structs(resp: discovery_pb2.DiscoveryResponse) -> dict[str, tuple[str, dict[str, Any]]]:
    """A policy response's resources: value `name` -> (TypedStruct type_url, value as data)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for any_msg in resp.resources:
        ts = typed_struct_pb2.TypedStruct()
        assert any_msg.Unpack(ts), any_msg.type_url
        value = json_format.MessageToDict(ts.value)
        out[value["name"]] = (ts.type_url, value)
    return out
