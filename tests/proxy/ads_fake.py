"""A small but real grpc.aio ADS server (state of the world, v3) for the xDS client's tests.

```
set_snapshot(version, {type_url: {name: message}}) ──push──> every open stream, every
                                                              subscribed type not held
DiscoveryRequest ──recorded in .requests──> subscription update ──> response when the stream
                                                                    has not seen this version
                                                                    of this subscription yet
```

It answers like a SotW server: Listeners and Clusters are wildcards (empty `resource_names`),
RouteConfigurations and ClusterLoadAssignments only the names asked for (an empty list means
none). Each response has the snapshot version and a fresh nonce. ACKs and NACKs are recorded
and never answered; a request with a stale nonce is recorded and ignored. `hold(type_url)`
delays a type (to deliver dependencies out of order) until `release`. `stop()` and `start()`
again reuse the same port.

Not the product's control plane: no per-node views, no delta xDS, no flow control (a push
does not wait for the previous response to be ACKed).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2

from turnout.proxy.xds_resources import CLUSTER_TYPE, LISTENER_TYPE

log = logging.getLogger(__name__)

Snapshot = Mapping[str, Mapping[str, Any]]
"""type_url -> resource name -> message (`XdsResources.by_type_url()` has this shape)."""

_WILDCARD = frozenset({LISTENER_TYPE, CLUSTER_TYPE})


def is_ack(req: Any) -> bool:
    return bool(req.response_nonce) and not req.HasField("error_detail")


def is_nack(req: Any) -> bool:
    return bool(req.response_nonce) and req.HasField("error_detail")


@dataclass(slots=True)
class _Stream:
    peer: str
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    names: dict[str, frozenset[str] | None] = field(default_factory=dict)
    """type_url -> subscription (None = wildcard)."""
    sent: dict[str, tuple[str, frozenset[str] | None]] = field(default_factory=dict)
    """type_url -> (version, subscription) of the last response."""
    nonces: dict[str, str] = field(default_factory=dict)
    closed: bool = False


class FakeAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.port = 0
        self.version = ""
        self.snapshot: Snapshot = {}
        self.requests: list[Any] = []
        """Every DiscoveryRequest received, in order, across streams and restarts."""
        self.responses: list[Any] = []
        """Every DiscoveryResponse sent."""
        self.stale: list[Any] = []
        """The requests ignored because their nonce was stale."""
        self.streams_opened = 0
        self._held: set[str] = set()
        self._streams: list[_Stream] = []
        self._server: grpc.aio.Server | None = None
        self._changed = asyncio.Condition()
        self._nonces = itertools.count(1)

    # ---- lifecycle

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on 127.0.0.1 (port 0 the first time, then the same port again)."""
        server = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        """Close every stream (clients see UNAVAILABLE/CANCELLED) and the listening socket."""
        server, self._server = self._server, None
        for stream in self._streams:
            stream.closed = True
            stream.wakeup.set()
        if server is not None:
            await server.stop(grace=None)

    # ---- test controls

    def set_snapshot(self, version: str, snapshot: Snapshot) -> None:
        """Replace every resource and push it to the open streams."""
        self.version, self.snapshot = version, snapshot
        self._wake()

    def hold(self, *type_urls: str) -> None:
        """Send nothing of these types until `release`."""
        self._held.update(type_urls)

    def release(self, *type_urls: str) -> None:
        self._held.difference_update(type_urls)
        self._wake()

    def of_type(self, type_url: str, pred: Callable[[Any], bool] = lambda r: True) -> list[Any]:
        return [r for r in self.requests if r.type_url == type_url and pred(r)]

    async def wait_request(self, pred: Callable[[Any], bool], *, timeout_s: float = 5.0) -> Any:
        """The first recorded request (old or new) matching `pred`."""
        async with asyncio.timeout(timeout_s), self._changed:
            while True:
                for req in self.requests:
                    if pred(req):
                        return req
                await self._changed.wait()

    # ---- the service

    async def StreamAggregatedResources(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        stream = _Stream(peer=context.peer())
        self._streams.append(stream)
        self.streams_opened += 1
        reader = asyncio.create_task(self._read(request_iterator, stream), name="fake-ads-read")
        try:
            while not stream.closed:
                for response in self._due(stream):
                    self.responses.append(response)
                    yield response
                stream.wakeup.clear()
                if not stream.closed and not self._due_any(stream):
                    await stream.wakeup.wait()
        finally:
            reader.cancel()
            await asyncio.wait({reader}, timeout=1.0)
            self._streams.remove(stream)

    async def _read(self, request_iterator: AsyncIterator[Any], stream: _Stream) -> None:
        try:
            async for req in request_iterator:
                await self._record(req)
                t = req.type_url
                if req.response_nonce and req.response_nonce != stream.nonces.get(t):
                    self.stale.append(req)
                    continue  # stale: the server has sent a newer response since
                names = frozenset(req.resource_names)
                stream.names[t] = None if t in _WILDCARD and not names else names
                if not req.response_nonce:
                    stream.sent.pop(t, None)  # a new subscription: always answer it
                stream.wakeup.set()
        finally:
            stream.closed = True
            stream.wakeup.set()

    async def _record(self, req: Any) -> None:
        async with self._changed:
            self.requests.append(req)
            self._changed.notify_all()

    def _due_any(self, stream: _Stream) -> bool:
        return any(self._is_due(stream, t) for t in stream.names)

    def _is_due(self, stream: _Stream, type_url: str) -> bool:
        if type_url in self._held or not self.version:
            return False
        return stream.sent.get(type_url) != (self.version, stream.names[type_url])

    def _due(self, stream: _Stream) -> list[Any]:
        out = []
        for t, names in list(stream.names.items()):
            if not self._is_due(stream, t):
                continue
            resources = self.snapshot.get(t, {})
            chosen = (
                sorted(resources) if names is None else sorted(n for n in names if n in resources)
            )
            nonce = str(next(self._nonces))
            packed = []
            for name in chosen:
                a = any_pb2.Any()
                a.Pack(resources[name])
                packed.append(a)
            out.append(
                discovery_pb2.DiscoveryResponse(
                    version_info=self.version, resources=packed, type_url=t, nonce=nonce
                )
            )
            stream.sent[t] = (self.version, names)
            stream.nonces[t] = nonce
        return out

    def _wake(self) -> None:
        for stream in self._streams:
            stream.wakeup.set()
