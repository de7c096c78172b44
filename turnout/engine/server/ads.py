"""`AdsServer`: the AggregatedDiscoveryService (state of the world, v3) on grpc.aio.

```
publish(table, policy) ── both equal to the current ones? ── yes ──> nothing (same version)
                        │ no
                        v
        current = Snapshot(version + 1, table, policy); wake every stream   (latest value only)
        (heap_settle_ms: gc.freeze now; unfreeze, collect once, freeze, that long after)

per stream (one grpc handler + one guarded reader task "ads-read <peer>"):
  reader: context.read() ─> StreamState.on_request ─> log ACK/NACK ─> wake the stream
          (not for a delta ACK that leaves its type synced to the current table)
  writer loop:  clear wakeup ─> snapshot = current ─> view = snapshot.view(namespace)
                ─> StreamState.due(snapshot, view) ─> context.write (bounded) ─> wait wakeup
  write watchdog (one task per server, every send_timeout / 2): a stream whose write has
                waited longer than send_timeout is closed (its writer task is cancelled)
```

One watchdog rather than an `asyncio.timeout` around each write: a publish writes to every
stream, and a timer per write (created, pushed on the loop's heap, cancelled) cost ~20 µs per
stream of the fan-out; the watchdog costs two attribute stores per write. A client that stops
reading is closed between send_timeout and 1.5 x send_timeout after its write began.

A stream reads `current` only when it wakes, so one that is slow (or still waiting for an
ACK) jumps straight to the newest table: intermediate versions are skipped, never queued
(`coalesceUpdates` in envoyproxy/gateway). Views are translated once per namespace per
version (`snapshots.py`); what a stream is sent, ACKed and NACKed is `streams.py`. The
authorization policy (`policy`, a `PolicyTable`) travels in the same snapshot and is served as
`POLICY_TYPE_URL` (Turnout's TypedStructs, `engine.xds.policy`) to the clients that subscribe
to it: a policy-only change is a new version, and a client of LDS/RDS/CDS/EDS only is sent
nothing for it (its resources did not change).

A NACK is logged at warning level once per (node, type, version) with the client's reason,
and the rejected content is not sent again; the stream waits for a newer table. Responses
sent, ACKs and NACKs are counted by type URL where they happen (`AdsMetrics`); connected
clients by node are counted when scraped.

`DeltaAggregatedResources` (incremental xDS, our proxy's default) runs the same loops with a
`DeltaStreamState` (`delta_streams.py`): only resources whose version changed, and the names
that went away, are sent. Other services can share the port (`handlers`: `mesh serve
--identity-dir` adds the identity service, `certify.py`). Deliberately not here: TLS, resource
TTLs, and where tables come from (`engine.sources`).
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import socket
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import grpc
import grpc.aio
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from turnout.engine.errors import ControlPlaneError
from turnout.engine.ir import RouteTable
from turnout.engine.ir_policy import PolicyTable
from turnout.engine.metrics import Family, Gauge
from turnout.engine.server.ads_status import AdsMetrics, ServerStatus, StreamStatus
from turnout.engine.server.delta_streams import DeltaStreamState
from turnout.engine.server.encoded import serialize
from turnout.engine.server.settings import ServerSettings
from turnout.engine.server.snapshots import (
    Snapshot,
    Translator,
    View,
    default_translator,
    with_server_listeners,
)
from turnout.engine.server.streams import StreamState, kind_of
from turnout.engine.xds import LISTENER_TYPE
from turnout.engine.xds.cache import ResourceCache

log = logging.getLogger(__name__)

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
MAX_NACKS_REMEMBERED = 10_000
"""(node, type, version) NACKs already logged at warning level; the memory is bounded."""


def ensure_free(host: str, port: int) -> None:
    """Raise `OSError` (EADDRINUSE) when something already listens on `host:port`.

    SO_REUSEADDR as servers set it, so a port whose old connections linger in TIME_WAIT (a
    restart on the same port) is free; port 0 is always free."""
    if port == 0:
        return
    for family, kind, proto, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(addr)


class _Stream:
    def __init__(self, peer: str, *, delta: bool = False) -> None:
        self.state: StreamState | DeltaStreamState = (
            DeltaStreamState(peer=peer) if delta else StreamState(peer=peer)
        )
        self.wakeup = asyncio.Event()
        self.writing_since = 0.0
        """Loop time the current write began; 0 = not writing (the write watchdog)."""
        self.writer: asyncio.Task[Any] | None = None
        self.stalled = False
        """The watchdog cancelled `writer`: its client did not read within the timeout."""


def _create_guarded_task(coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
    """A named task whose crash or unexpected end is logged (kopf's `create_guarded_task`)."""

    async def guard() -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.error("task crashed task=%s", name, exc_info=True)
            raise

    return asyncio.create_task(guard(), name=name)


class AdsServer:
    """Serves the latest published `RouteTable` to every ADS client, per node namespace."""

    def __init__(
        self,
        *,
        settings: ServerSettings | None = None,
        translator: Translator = default_translator,
        handlers: Sequence[grpc.GenericRpcHandler] = (),
    ) -> None:
        self._settings = settings or ServerSettings()
        self._handlers_extra = tuple(handlers)
        """More services on the same port (the identity service, `certify.py`)."""
        self._translator = translator
        self._cache = ResourceCache()
        """Packed resources by parent and cluster, across snapshots (`engine.xds.cache`)."""
        self._current: Snapshot | None = None
        self._streams: set[_Stream] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        """grpc's handler task of each open stream (`stop` waits for their cleanup)."""
        self._server: grpc.aio.Server | None = None
        self._nacks = 0
        self._nacks_logged: set[tuple[str, str, str]] = set()
        self.metrics = AdsMetrics()
        self._settle: asyncio.TimerHandle | None = None
        self._watchdog: asyncio.Task[None] | None = None
        """The pending `settle_heap` (`ServerSettings.heap_settle_ms`)."""
        self.on_streams_changed: Callable[[], None] | None = None
        """Called when a stream identifies itself or an identified stream closes: what
        `status()` lists changed (the Prometheus targets file, `targets.py`)."""
        self.port = 0
        """Bound port after `start` (useful with port 0)."""

    # ---- tables

    def publish(self, table: RouteTable, policy: PolicyTable | None = None) -> int:
        """Make `table` (and its authorization `policy`; None = no policy resources) the
        current one and push it; returns its version. A table and policy equal to the
        current ones are not a new version (nothing is pushed)."""
        current = self._current
        if current is not None and current.table == table and current.policy == policy:
            log.debug("table unchanged, not published version=%d", current.version)
            return current.version
        version = 1 if current is None else current.version + 1
        if current is not None:
            current.previous = None  # keep one snapshot back, not the chain
        self._cache.prune(table)
        self._current = Snapshot(
            version=version,
            table=table,
            policy=policy,
            translator=self._translator,
            cache=self._cache,
            previous=current,
        )
        log.info(
            "table published version=%d parents=%d clusters=%d policy_servers=%s streams=%d",
            version,
            len(table.parents),
            len(table.clusters),
            "-" if policy is None else len(policy.servers),
            len(self._streams),
        )
        for stream in self._streams:
            stream.wakeup.set()
        if self._settings.heap_settle_ms:
            self._freeze_heap()
        return version

    def _freeze_heap(self) -> None:
        gc.freeze()
        if self._settle is not None:
            return  # settles after the first unsettled publish, not pushed back by others
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._settle = loop.call_later(self._settings.heap_settle_ms / 1000, self.settle_heap)

    def settle_heap(self) -> None:
        """Collect the previous tables' cycles once, then freeze what is left."""
        self._settle = None
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    @property
    def version(self) -> int:
        """Version of the current table; 0 = nothing published yet."""
        return 0 if self._current is None else self._current.version

    @property
    def table(self) -> RouteTable | None:
        return None if self._current is None else self._current.table

    @property
    def policy(self) -> PolicyTable | None:
        """The authorization policy being served; None = none."""
        return None if self._current is None else self._current.policy

    def status(self) -> ServerStatus:
        return ServerStatus(
            version=self.version,
            streams=tuple(
                StreamStatus(
                    peer=s.state.peer,
                    node_id=s.state.node_id,
                    namespace=s.state.namespace,
                    acked=s.state.acked(),
                    subscriptions=s.state.subscriptions(),
                    nacks=tuple(s.state.nacks()),
                    workload=s.state.workload,
                    pod=s.state.pod,
                    admin=s.state.admin,
                    labels=dict(s.state.labels),
                    sent=s.state.sent(),
                    sync=s.state.sync(str(self.version)),
                    protocol="delta" if isinstance(s.state, DeltaStreamState) else "sotw",
                )
                for s in sorted(self._streams, key=lambda s: s.state.peer)
            ),
            nacks=self._nacks,
        )

    def metric_families(self) -> list[Family]:
        """Connected clients by node (counted now), then the counters."""
        clients: dict[tuple[str, ...], float] = {}
        for s in self._streams:
            if s.state.node_id:  # a stream counts once its client said who it is
                key = (s.state.node_id,)
                clients[key] = clients.get(key, 0) + 1
        connected = Gauge(
            "turnout_xds_connected_clients",
            "Open ADS streams, by the node id their client sent.",
            ("node",),
            clients,
        )
        m = self.metrics
        return [connected, m.pushes, m.acks, m.nacks]

    # ---- lifecycle

    async def start(self, host: str, port: int) -> int:
        """Listen on `host:port` (0 = any free port); returns the bound port."""
        if self._server is not None:
            raise RuntimeError("ads server already started")
        s = self._settings
        server = grpc.aio.server(
            options=[
                ("grpc.keepalive_time_ms", s.keepalive_ms),
                ("grpc.keepalive_timeout_ms", s.keepalive_timeout_ms),
                ("grpc.max_receive_message_length", s.max_message_bytes),
                ("grpc.max_send_message_length", s.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ]
        )
        _add_ads(_Servicer(self), server)
        if self._handlers_extra:
            server.add_generic_rpc_handlers(self._handlers_extra)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            # grpc's own bind failure is a C-core log line on stderr plus a vague error;
            # a port already taken is the common case and gets a clear one-line error.
            ensure_free(host, port)
            self.port = server.add_insecure_port(address)
        except OSError as exc:
            why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise ControlPlaneError(f"cannot listen on {address}: {why or exc}") from exc
        except RuntimeError as exc:
            raise ControlPlaneError(f"cannot listen on {address}: {exc}") from exc
        await server.start()
        self._server = server
        self._watchdog = _create_guarded_task(self._watch_writes(), name="ads-write-watchdog")
        log.info("ads server listening address=%s:%d", host, self.port)
        return self.port

    async def stop(self) -> None:
        """Close every stream and the listening socket (bounded); idempotent."""
        if self._settle is not None:
            self._settle.cancel()
            self._settle = None
        server, self._server = self._server, None
        if server is None:
            return
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        s = self._settings
        try:
            async with asyncio.timeout(s.stop_timeout_ms / 1000):
                await server.stop(grace=s.stop_grace_ms / 1000)
                # grpc has cancelled the handlers; let them log and clean up before we return.
                for task in list(self._handlers):
                    task.cancel()
                if self._handlers:
                    await asyncio.wait(self._handlers)
        except TimeoutError:
            log.error("ads server did not stop in time streams=%d", len(self._streams))
        log.info("ads server stopped version=%d", self.version)

    async def __aenter__(self) -> AdsServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ---- one stream

    async def serve_stream(
        self, context: grpc.aio.ServicerContext[Any, Any], *, delta: bool = False
    ) -> None:
        """One ADS stream, state of the world or (`delta`) incremental, until it ends."""
        stream = _Stream(context.peer(), delta=delta)
        self._streams.add(stream)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        stream.writer = handler
        log.info("ads stream opened peer=%s", stream.state.peer)
        reader = _create_guarded_task(
            self._read_loop(context, stream), name=f"ads-read {stream.state.peer}"
        )
        try:
            await self._write_loop(context, stream, reader)
        finally:
            self._streams.discard(stream)
            if stream.state.node_id:
                self._streams_changed()
            if handler is not None:
                self._handlers.discard(handler)
            reader.cancel()
            await asyncio.wait({reader}, timeout=self._settings.stop_timeout_ms / 1000)
            log.info(
                "ads stream closed peer=%s node=%s delta=%s acked=%s",
                stream.state.peer,
                stream.state.node_id,
                delta,
                stream.state.acked(),
            )

    async def _write_loop(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        stream: _Stream,
        reader: asyncio.Task[None],
    ) -> None:
        loop = asyncio.get_running_loop()
        while not reader.done():
            stream.wakeup.clear()
            snapshot = self._current
            if snapshot is not None and stream.state.node_id:
                for response in await self._responses(snapshot, stream.state):
                    stream.writing_since = loop.time()
                    try:
                        await context.write(response)
                    except asyncio.CancelledError:
                        if stream.stalled:
                            log.warning(
                                "ads client not reading, closing its stream peer=%s node=%s",
                                stream.state.peer,
                                stream.state.node_id,
                            )
                        raise
                    stream.writing_since = 0.0
                    self.metrics.pushes.inc(response.type_url)
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug(
                            "ads response sent peer=%s type=%s version=%s nonce=%s resources=%d",
                            stream.state.peer,
                            kind_of(response.type_url),
                            snapshot.version_info,
                            response.nonce,
                            len(response.resources),
                        )
            if not reader.done():
                await stream.wakeup.wait()  # set by requests, publish() and the reader's end

    async def _watch_writes(self) -> None:
        """Every send_timeout / 2: cancel the writer of each stream whose write began more
        than send_timeout ago (its client does not read)."""
        timeout_s = self._settings.send_timeout_ms / 1000
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(timeout_s / 2)
            late = loop.time() - timeout_s
            for stream in self._streams:
                since = stream.writing_since
                if since and since < late and not stream.stalled and stream.writer is not None:
                    stream.stalled = True
                    stream.writer.cancel()

    async def _responses(
        self, snapshot: Snapshot, state: StreamState | DeltaStreamState
    ) -> list[Any]:
        if isinstance(state, DeltaStreamState):
            built = await snapshot.built(state.namespace)
            return [] if built is None else state.due(snapshot, built)
        view = await snapshot.view(state.namespace)
        if view is None:
            return []
        return state.due(snapshot, self._with_servers(snapshot, view, state))

    def _with_servers(self, snapshot: Snapshot, view: View, state: StreamState) -> View:
        """The view plus the server Listeners a grpcio xDS server on this stream asked for;
        a PERMISSIVE port's warning is logged once per stream and listener."""
        servers = snapshot.server_listeners(
            state.subscribed_names(LISTENER_TYPE), namespace=state.namespace, labels=state.labels
        )
        for name, server in servers.items():
            if server.warning and name not in state.warned:
                state.warned.add(name)
                log.warning("%s node=%s listener=%s", server.warning, state.node_id, name)
        return with_server_listeners(view, servers)

    async def _read_loop(
        self, context: grpc.aio.ServicerContext[Any, Any], stream: _Stream
    ) -> None:
        try:
            while True:
                req = await context.read()  # cancelled by serve_stream when the stream ends
                if req is grpc.aio.EOF:
                    log.debug("ads client half-closed peer=%s", stream.state.peer)
                    return
                self._on_request(stream, req)
        finally:
            stream.wakeup.set()

    def _streams_changed(self) -> None:
        if self.on_streams_changed is not None:
            try:
                self.on_streams_changed()
            except Exception:  # a listener's bug must not end a stream
                log.exception("on_streams_changed failed")

    def _on_request(self, stream: _Stream, req: Any) -> None:
        state = stream.state
        known = bool(state.node_id)
        verdict = state.on_request(req)
        if not known and state.node_id:
            log.info(
                "ads client identified peer=%s node=%s namespace=%s workload=%s admin=%s",
                state.peer,
                state.node_id,
                state.namespace,
                state.workload,
                state.admin or "-",
            )
            self._streams_changed()
        if log.isEnabledFor(logging.DEBUG):  # the arguments cost, per ACK of every stream
            names = (
                len(req.resource_names)
                if isinstance(state, StreamState)
                else len(req.resource_names_subscribe) + len(req.resource_names_unsubscribe)
            )
            log.debug(
                "ads request peer=%s type=%s nonce=%s names=%d verdict=%s",
                state.peer,
                kind_of(req.type_url),
                req.response_nonce,
                names,
                verdict.kind,
            )
        if verdict.kind == "ack":
            self.metrics.acks.inc(req.type_url)
        if verdict.nack is not None:
            self._nacks += 1
            self.metrics.nacks.inc(req.type_url)
            nack = verdict.nack
            key = (state.node_id, nack.type_url, nack.version)
            level = logging.DEBUG if key in self._nacks_logged else logging.WARNING
            if len(self._nacks_logged) >= MAX_NACKS_REMEMBERED:
                self._nacks_logged.clear()
            self._nacks_logged.add(key)
            log.log(
                level,
                "ads update rejected (NACK), not resending it; waiting for a newer table "
                "node=%s namespace=%s type=%s version=%s reason=%s",
                state.node_id,
                state.namespace,
                kind_of(nack.type_url),
                nack.version,
                nack.reason,
            )
        elif verdict.kind == "unknown":
            log.debug("ads request of a type we do not serve type_url=%s", req.type_url)
        current = self._current
        if (
            verdict.kind == "ack"
            and current is not None
            and isinstance(state, DeltaStreamState)
            and state.settled(req.type_url, current.version_info)
        ):
            return  # the ACK of the current table: nothing new is due (one wakeup fewer)
        stream.wakeup.set()


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, server: AdsServer) -> None:
        self._server = server

    async def StreamAggregatedResources(
        self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        # grpc cancels this task when the client goes away; serve_stream cleans up.
        await self._server.serve_stream(context)

    async def DeltaAggregatedResources(
        self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        await self._server.serve_stream(context, delta=True)


def _add_ads(servicer: _Servicer, server: grpc.aio.Server) -> None:
    """`add_AggregatedDiscoveryServiceServicer_to_server` with our response serializer:
    responses may be `Encoded` bytes shared between streams (`encoded.py`)."""
    handlers = {
        "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
            servicer.StreamAggregatedResources,
            request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
            response_serializer=serialize,
        ),
        "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
            servicer.DeltaAggregatedResources,
            request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
            response_serializer=serialize,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(ADS_SERVICE, handlers),))
    server.add_registered_method_handlers(ADS_SERVICE, handlers)


Server = AdsServer
"""Alias: `turnout.engine.server.Server`."""
