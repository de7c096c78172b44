"""ADS client (state of the world, v3, grpc.aio): xDS resources in, `RuntimeTable`s out.

```
                 start()
  IDLE ─────────────────────> CONNECTING ── first response ──> STREAMING
                                 ^    │ open/send/receive error,       │ error, EOF from the server,
                                 │    │ connect timeout                │ idle timeout (no response)
                                 │    v                                v
                                 └── BACKOFF <─────────────────────────┘
                    sleep min(max, base·2^(n-1)) jittered to [½, 1]; log "reconnect attempt #n"
  any state ── stop() ──> STOPPED           (the last good table survives every arrow)

per response (STREAMING), in `_Sync`, with no I/O:
  DiscoveryResponse ─decode─> candidate resources of its type, response pending (version, nonce)
      ├─ LDS changed: RDS names = listeners' rds names ─┐ widen/narrow: send a DiscoveryRequest
      ├─ CDS changed: EDS names = cluster names ────────┘ with the new resource_names
      └─ every named RouteConfiguration / Cluster / ClusterLoadAssignment present?
            no  ─> wait (no ACK, no NACK); after `dependency_timeout_ms` build anyway
            yes ─> RuntimeTable.from_xds(all candidates)
                     ok         ─> ACK every pending response, on_table(table, version)
                     TableError ─> NACK every pending response (previous version, nonce,
                                   error_detail = the TableError text); candidates revert to
                                   the last accepted set; the last good table keeps serving
```

Subscriptions: Listeners and Clusters are wildcards (empty `resource_names`), RouteConfigurations
and ClusterLoadAssignments are named by the candidate listeners and clusters. A response whose
content equals the accepted set is ACKed without rebuilding and `on_table` is not called.

Data flow: one session = one channel + one stream. A reader task decodes responses and runs
`_Sync` (synchronous, so a verdict is never interleaved with another response); requests go
through a queue to a single writer task (grpc allows one write at a time). grpc exceptions
are translated once, in `_grpc_errors`, into `XdsStreamError`. Every await has a deadline
(connect, send, an idle watchdog on reads, channel close) except the writer's queue read,
which the session cancels.

Deliberately not here: the delta protocol, per-resource ACKs (a table is all or nothing),
resource TTLs, and swapping the table into the request path (the callback's job, `runner.py`).
`from_xds` runs on the event loop: it is milliseconds for the tables we build.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2

from turnout.proxy import config
from turnout.proxy.errors import ProxyError, TableError
from turnout.proxy.table import RuntimeTable

log = logging.getLogger(__name__)

TYPE_PREFIX = "type.googleapis.com/"
LISTENER_TYPE = TYPE_PREFIX + "envoy.config.listener.v3.Listener"
ROUTE_CONFIGURATION_TYPE = TYPE_PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
LOAD_ASSIGNMENT_TYPE = TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
TYPE_URLS = (LISTENER_TYPE, ROUTE_CONFIGURATION_TYPE, CLUSTER_TYPE, LOAD_ASSIGNMENT_TYPE)
"""The four types we subscribe to, in request order (LDS, RDS, CDS, EDS); the proxy does not
import `turnout.engine`, so these repeat `turnout.engine.xds`'s constants."""

_MESSAGES: dict[str, Any] = {
    LISTENER_TYPE: listener_pb2.Listener,
    ROUTE_CONFIGURATION_TYPE: route_pb2.RouteConfiguration,
    CLUSTER_TYPE: cluster_pb2.Cluster,
    LOAD_ASSIGNMENT_TYPE: endpoint_pb2.ClusterLoadAssignment,
}
_KINDS = {
    LISTENER_TYPE: "Listener",
    ROUTE_CONFIGURATION_TYPE: "RouteConfiguration",
    CLUSTER_TYPE: "Cluster",
    LOAD_ASSIGNMENT_TYPE: "ClusterLoadAssignment",
}
_WILDCARD = frozenset({LISTENER_TYPE, CLUSTER_TYPE})

TableCallback = Callable[[RuntimeTable, str], None]
"""`on_table(table, version)`: called on the event loop with each new table and the
`version_info` of the response that completed it. It must not block; an exception it raises
is logged and does not stop the client."""


class XdsStreamError(ProxyError):
    """The ADS stream could not be opened or broke; every grpc error becomes one of these."""


class XdsState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    STREAMING = "streaming"
    BACKOFF = "backoff"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    """Who we are, sent as `DiscoveryRequest.node` on the first request of each stream."""

    id: str
    """Unique per proxy, e.g. ``sidecar~10.0.0.7~web-5d9f~shop.svc.cluster.local``."""
    cluster: str
    """Service cluster, e.g. the workload's Service name."""
    namespace: str
    """Kubernetes namespace of the workload (`metadata.namespace`); picks the consumer view."""
    workload: str
    """Workload name (`metadata.workload`), for the control plane's logs and status."""

    def to_proto(self) -> Any:
        node = base_pb2.Node(id=self.id, cluster=self.cluster, user_agent_name="turnout-proxy")
        node.metadata.update({"namespace": self.namespace, "workload": self.workload})
        return node


@dataclass(frozen=True, slots=True, kw_only=True)
class XdsSettings:
    """Timing of the ADS client; every field is in milliseconds except the message size."""

    backoff_base_ms: int = config.DEFAULT_XDS_BACKOFF_BASE_MS
    backoff_max_ms: int = config.DEFAULT_XDS_BACKOFF_MAX_MS
    connect_timeout_ms: int = config.DEFAULT_XDS_CONNECT_TIMEOUT_MS
    send_timeout_ms: int = config.DEFAULT_XDS_SEND_TIMEOUT_MS
    idle_timeout_ms: int = config.DEFAULT_XDS_IDLE_TIMEOUT_MS
    dependency_timeout_ms: int = config.DEFAULT_XDS_DEPENDENCY_TIMEOUT_MS
    keepalive_ms: int = config.DEFAULT_XDS_KEEPALIVE_MS
    keepalive_timeout_ms: int = config.DEFAULT_XDS_KEEPALIVE_TIMEOUT_MS
    stop_timeout_ms: int = config.DEFAULT_XDS_STOP_TIMEOUT_MS
    max_message_bytes: int = config.DEFAULT_XDS_MAX_MESSAGE_BYTES


@dataclass(frozen=True, slots=True, kw_only=True)
class XdsStatus:
    """A snapshot of the client for `/ready` and logs."""

    state: XdsState
    ready: bool
    """True once a table was built; stays true while disconnected (last good table)."""
    table_version: str | None
    """Version passed to `on_table` with the current table; None = no table yet."""
    versions: tuple[tuple[str, str], ...]
    """(type URL, last ACKed version) for the types ACKed at least once."""
    attempt: int
    """Reconnect attempt in progress or last made; 0 = none since the last healthy stream."""
    acks: int
    nacks: int
    last_error: str | None
    """Why the last stream ended; None = never ended."""
    last_nack: str | None
    """error_detail of the last NACK; None = none sent."""

    def summary(self) -> str:
        return (
            f"state={self.state.value} ready={self.ready} version={self.table_version}"
            f" acks={self.acks} nacks={self.nacks} attempt={self.attempt}"
        )


def backoff_delay(attempt: int, *, base_ms: int, max_ms: int, rng: random.Random) -> float:
    """Seconds to wait before reconnect `attempt` (1, 2, ...): capped exponential, jittered
    down to between half and all of it."""
    cap = min(max_ms, base_ms << min(max(attempt - 1, 0), 30))
    return cap * rng.uniform(0.5, 1.0) / 1000


@contextlib.contextmanager
def _grpc_errors(what: str, timeout_ms: int) -> Iterator[None]:
    """The one place grpc exceptions (and our deadlines) become `XdsStreamError`."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise XdsStreamError(f"{what}: {exc.code().name} {exc.details()}") from exc
    except (grpc.RpcError, grpc.aio.BaseError, asyncio.InvalidStateError) as exc:
        raise XdsStreamError(f"{what}: {exc!r}") from exc
    except TimeoutError as exc:
        raise XdsStreamError(f"{what}: no progress within {timeout_ms}ms") from exc


# --------------------------------------------------------------------------- resources


def _rds_names(listener: Any) -> set[str]:
    """RouteConfiguration names a Listener's connection managers ask for (best effort: what
    does not parse is reported by `RuntimeTable.from_xds`)."""
    if listener.HasField("api_listener"):
        anys = [listener.api_listener.api_listener]
    else:
        anys = [
            f.typed_config
            for chain in listener.filter_chains
            for f in chain.filters
            if f.name == config.HCM_FILTER
        ]
    out = set()
    for packed in anys:
        hcm = http_connection_manager_pb2.HttpConnectionManager()
        with contextlib.suppress(DecodeError):
            if packed.Unpack(hcm) and hcm.WhichOneof("route_specifier") == "rds":
                out.add(hcm.rds.route_config_name)
    return out


def _route_clusters(route_configs: Iterable[Any]) -> set[str]:
    """Cluster names the routes forward or mirror to."""
    out: set[str] = set()
    for rc in route_configs:
        for vh in rc.virtual_hosts:
            for r in vh.routes:
                if r.WhichOneof("action") != "route":
                    continue
                spec = r.route.WhichOneof("cluster_specifier")
                if spec == "cluster":
                    out.add(r.route.cluster)
                elif spec == "weighted_clusters":
                    out.update(c.name for c in r.route.weighted_clusters.clusters)
                out.update(m.cluster for m in r.route.request_mirror_policies)
    return out


def _decode(response: Any) -> dict[str, Any]:
    """name -> message of a response's resources, or `TableError`."""
    kind = _KINDS[response.type_url]
    out: dict[str, Any] = {}
    for i, packed in enumerate(response.resources):
        where = f'DiscoveryResponse {kind} "{response.version_info}"'
        if packed.type_url != response.type_url:
            raise TableError(where, f"resources[{i}].type_url", f"not a {kind}: {packed.type_url}")
        message = _MESSAGES[response.type_url]()
        try:
            packed.Unpack(message)
        except DecodeError as exc:
            raise TableError(where, f"resources[{i}]", f"cannot decode: {exc}") from exc
        name = message.cluster_name if response.type_url == LOAD_ASSIGNMENT_TYPE else message.name
        if name in out:
            raise TableError(f'{kind} "{name}"', "name", "duplicate in one response")
        out[name] = message
    return out


@dataclass(slots=True)
class _TypeState:
    type_url: str
    names: frozenset[str] | None
    """Subscription: None = wildcard (LDS, CDS), else the names wanted (RDS, EDS)."""
    accepted: dict[str, Any] = field(default_factory=dict)
    """Resources of the current table."""
    accepted_version: str | None = None
    """Version last ACKed; None = never."""
    candidate: dict[str, Any] = field(default_factory=dict)
    """Latest received view, what the next build uses."""
    nonce: str = ""
    """Nonce of the latest response of this stream."""
    pending: str | None = None
    """Version of the latest response not yet ACKed or NACKed; None = none."""
    sent_names: frozenset[str] | None = None
    """Subscription last sent on this stream; None = nothing sent yet."""

    def request(self, *, version: str, error: str | None = None) -> Any:
        req = discovery_pb2.DiscoveryRequest(
            version_info=version,
            type_url=self.type_url,
            response_nonce=self.nonce,
            resource_names=sorted(self.names or ()),
        )
        if error is not None:
            req.error_detail.CopyFrom(
                status_pb2.Status(
                    code=code_pb2.INVALID_ARGUMENT,
                    message=error[: config.MAX_XDS_ERROR_DETAIL_CHARS],
                )
            )
        return req


@dataclass(slots=True)
class _Outcome:
    requests: list[Any] = field(default_factory=list)
    """DiscoveryRequests to send, in order."""
    table: RuntimeTable | None = None
    """A new table to hand to `on_table`."""
    error: str | None = None
    """The NACK reason when the update was rejected."""
    waiting: list[str] = field(default_factory=list)
    """Dependencies still missing (the pending responses wait for them)."""
    acks: int = 0
    nacks: int = 0


class _Sync:
    """Resources, subscriptions and verdicts of the ADS session: pure, no I/O and no clock."""

    def __init__(self) -> None:
        self.types = {
            url: _TypeState(url, None if url in _WILDCARD else frozenset()) for url in TYPE_URLS
        }
        self.table: RuntimeTable | None = None
        self.table_version: str | None = None
        self.last_version = ""
        """Version of the latest response, the one `on_table` reports."""

    def start_stream(self) -> list[Any]:
        """Forget what an old stream left pending; the first requests of a new stream carry
        the accepted versions, so a server may skip what we already have."""
        for t in self.types.values():
            t.candidate, t.pending, t.nonce, t.sent_names = dict(t.accepted), None, "", None
        lds, cds = self.types[LISTENER_TYPE], self.types[CLUSTER_TYPE]
        wildcards = [t.request(version=t.accepted_version or "") for t in (lds, cds)]
        return wildcards + self._resubscribe()

    def on_response(self, response: Any) -> _Outcome:
        t = self.types.get(response.type_url)
        if t is None:
            log.warning("xds response of a type never asked for type_url=%s", response.type_url)
            return _Outcome()
        t.nonce = response.nonce
        try:
            resources = _decode(response)
        except TableError as exc:
            error = str(exc)
            return _Outcome(
                requests=[t.request(version=t.accepted_version or "", error=error)], error=error
            )
        if t.names is None:
            t.candidate = resources
        else:
            t.candidate.update((k, v) for k, v in resources.items() if k in t.names)
        t.pending = response.version_info
        self.last_version = response.version_info
        requests = self._resubscribe()
        outcome = self.settle(force=False)
        outcome.requests[:0] = requests
        return outcome

    def _resubscribe(self) -> list[Any]:
        """Point RDS at the candidate listeners' route configs and EDS at the candidate
        clusters; a request for each subscription that changed."""
        rds, eds = self.types[ROUTE_CONFIGURATION_TYPE], self.types[LOAD_ASSIGNMENT_TYPE]
        wanted = (
            (
                rds,
                frozenset(
                    n
                    for lst in self.types[LISTENER_TYPE].candidate.values()
                    for n in _rds_names(lst)
                ),
            ),
            (eds, frozenset(self.types[CLUSTER_TYPE].candidate)),
        )
        out = []
        for t, names in wanted:
            if names != t.names:
                log.debug("xds subscription type_url=%s names=%s", t.type_url, sorted(names))
                t.names = names
                t.candidate = {k: v for k, v in t.candidate.items() if k in names}
            # An empty first request would read as a wildcard: only send "none" to narrow.
            if names != t.sent_names and (names or t.sent_names):
                t.sent_names = names
                out.append(t.request(version=t.accepted_version or ""))
        return out

    def pending(self) -> bool:
        """Some response is neither ACKed nor NACKed (it waits for its dependencies)."""
        return any(t.pending is not None for t in self.types.values())

    def missing(self) -> list[str]:
        """What the candidate set still lacks, as `Kind "name"`."""
        lds, rds, cds, eds = (self.types[url] for url in TYPE_URLS)
        out = [
            f"{_KINDS[t.type_url]}s (first response)"
            for t in (lds, cds)
            if t.pending is None and t.accepted_version is None
        ]
        assert rds.names is not None and eds.names is not None
        out += [f'RouteConfiguration "{n}"' for n in sorted(rds.names - rds.candidate.keys())]
        routed = _route_clusters(rds.candidate.values()) - {config.INVALID_CLUSTER}
        out += [f'Cluster "{n}"' for n in sorted(routed - cds.candidate.keys())]
        out += [f'ClusterLoadAssignment "{n}"' for n in sorted(eds.names - eds.candidate.keys())]
        return out

    def settle(self, *, force: bool) -> _Outcome:
        """ACK or NACK the pending responses once the candidate set is complete (or, with
        `force`, as it is: a missing dependency then NACKs; the first LDS and CDS responses are
        always waited for, an empty table is no table)."""
        pending = [t for t in self.types.values() if t.pending is not None]
        if not pending:
            return _Outcome()
        missing = self.missing()
        first = [m for m in missing if m.endswith("(first response)")]
        if first or (missing and not force):
            return _Outcome(waiting=missing)
        if self.table is not None and all(t.candidate == t.accepted for t in self.types.values()):
            return _Outcome(requests=self._accept(pending), acks=len(pending))
        lds, rds, cds, eds = (self.types[url].candidate.values() for url in TYPE_URLS)
        try:
            table = RuntimeTable.from_xds(lds, rds, clusters=cds, load_assignments=eds)
        except TableError as exc:
            return self._reject(pending, str(exc))
        except Exception as exc:  # a bug in from_xds must not end the stream: NACK, keep serving
            log.error("runtime table build failed version=%s", self.last_version, exc_info=True)
            return self._reject(pending, f"internal error: {exc!r}")
        self.table, self.table_version = table, self.last_version
        return _Outcome(requests=self._accept(pending), table=table, acks=len(pending))

    def _accept(self, pending: list[_TypeState]) -> list[Any]:
        for t in self.types.values():
            t.accepted = dict(t.candidate)
        out = []
        for t in pending:
            assert t.pending is not None
            t.accepted_version, t.pending = t.pending, None
            out.append(t.request(version=t.accepted_version))
        return out

    def _reject(self, pending: list[_TypeState], error: str) -> _Outcome:
        out = []
        for t in pending:
            t.pending = None
            out.append(t.request(version=t.accepted_version or "", error=error))
        for t in self.types.values():
            t.candidate = dict(t.accepted)
        out += self._resubscribe()
        return _Outcome(requests=out, error=error, nacks=len(pending))


# --------------------------------------------------------------------------- client


class XdsClient:
    """Keeps a `RuntimeTable` in sync with an ADS server, forever, until `stop()`."""

    def __init__(
        self,
        target: str,
        *,
        node: NodeInfo,
        on_table: TableCallback,
        settings: XdsSettings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.target = target
        """``HOST:PORT`` of the ADS server (plaintext)."""
        self._node = node.to_proto()
        self._on_table = on_table
        self._settings = settings or XdsSettings()
        self._rng = rng or random.Random()
        self._sync = _Sync()
        self._task: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ready = asyncio.Event()
        self._state = XdsState.IDLE
        self._healthy = False
        self._attempt = 0
        self._acks = 0
        self._nacks = 0
        self._last_error: str | None = None
        self._last_nack: str | None = None

    # ---- public state

    @property
    def table(self) -> RuntimeTable | None:
        """The last good table; None until the first one."""
        return self._sync.table

    @property
    def ready(self) -> bool:
        return self._sync.table is not None

    @property
    def status(self) -> XdsStatus:
        return XdsStatus(
            state=self._state,
            ready=self.ready,
            table_version=self._sync.table_version,
            versions=tuple(
                (url, t.accepted_version)
                for url, t in self._sync.types.items()
                if t.accepted_version is not None
            ),
            attempt=self._attempt,
            acks=self._acks,
            nacks=self._nacks,
            last_error=self._last_error,
            last_nack=self._last_nack,
        )

    # ---- lifecycle

    def start(self) -> None:
        """Start the background task (needs a running loop)."""
        if self._task is not None:
            raise RuntimeError("xds client already started")
        self._task = asyncio.create_task(self._guarded_run(), name=f"xds-client {self.target}")

    async def stop(self) -> None:
        """Cancel the background task and wait for it (bounded); idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            _, running = await asyncio.wait({task}, timeout=self._settings.stop_timeout_ms / 1000)
            if running:
                log.error("xds client did not stop in time target=%s", self.target)
        self._disarm()
        self._state = XdsState.STOPPED

    async def wait_ready(self, *, timeout_ms: int) -> RuntimeTable:
        """The first table; `TimeoutError` when none comes within `timeout_ms`."""
        async with asyncio.timeout(timeout_ms / 1000):
            await self._ready.wait()
        assert self._sync.table is not None
        return self._sync.table

    async def __aenter__(self) -> XdsClient:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _guarded_run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            log.info("xds client stopped target=%s %s", self.target, self.status.summary())
            raise
        except Exception:
            log.error("xds client crashed target=%s", self.target, exc_info=True)
        else:
            log.error("xds client exited unexpectedly target=%s", self.target)
        finally:
            self._disarm()
            self._state = XdsState.STOPPED

    async def _run(self) -> None:
        s = self._settings
        while True:
            self._state, self._healthy = XdsState.CONNECTING, False
            try:
                await self._session()
            except XdsStreamError as exc:
                self._last_error = str(exc)
            except Exception as exc:  # a bug in a session: log it, reconnect, keep the table
                log.error("xds session failed target=%s", self.target, exc_info=True)
                self._last_error = f"internal error: {exc!r}"
            self._attempt = 1 if self._healthy else self._attempt + 1
            delay = backoff_delay(
                self._attempt, base_ms=s.backoff_base_ms, max_ms=s.backoff_max_ms, rng=self._rng
            )
            self._state = XdsState.BACKOFF
            log.warning(
                "xds stream down, reconnect attempt #%d in %.2fs target=%s ready=%s error=%s",
                self._attempt,
                delay,
                self.target,
                self.ready,
                self._last_error,
            )
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        """One channel and one stream, until it breaks (always raises)."""
        s = self._settings
        options = [
            ("grpc.keepalive_time_ms", s.keepalive_ms),
            ("grpc.keepalive_timeout_ms", s.keepalive_timeout_ms),
            ("grpc.max_receive_message_length", s.max_message_bytes),
            ("grpc.enable_retries", 0),
            # Our backoff decides when to reconnect: a fresh channel must not inherit a shared
            # subchannel still sitting in grpc's own reconnect backoff.
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.primary_user_agent", "turnout-proxy"),
        ]
        channel = grpc.aio.insecure_channel(self.target, options=options)
        try:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = stub.StreamAggregatedResources(wait_for_ready=False)
            outbox: asyncio.Queue[Any] = asyncio.Queue()
            self._outbox = outbox
            for request in self._sync.start_stream():
                outbox.put_nowait(request)
            log.info("xds stream opening target=%s node=%s", self.target, self._node.id)
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._write_loop(call, outbox), name=f"xds-write {self.target}")
                    tg.create_task(self._read_loop(call), name=f"xds-read {self.target}")
            except ExceptionGroup as group:
                first = next(
                    (e for e in group.exceptions if isinstance(e, XdsStreamError)),
                    group.exceptions[0],
                )
                raise first from None
            raise XdsStreamError("stream tasks ended")  # unreachable: both loops run forever
        finally:
            self._outbox = None
            self._disarm()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(s.stop_timeout_ms / 1000):
                    await channel.close(grace=None)

    async def _write_loop(self, call: Any, outbox: asyncio.Queue[Any]) -> None:
        first = True
        while True:
            request = await outbox.get()  # local queue; the session cancels us
            timeout_ms = (
                self._settings.connect_timeout_ms if first else self._settings.send_timeout_ms
            )
            if first:
                request.node.CopyFrom(self._node)
                first = False
            with _grpc_errors("send", timeout_ms):
                async with asyncio.timeout(timeout_ms / 1000):
                    await call.write(request)
            log.debug(
                "xds request sent type_url=%s version=%s nonce=%s names=%d nack=%s",
                request.type_url,
                request.version_info,
                request.response_nonce,
                len(request.resource_names),
                request.HasField("error_detail"),
            )

    async def _read_loop(self, call: Any) -> None:
        idle_ms = self._settings.idle_timeout_ms
        while True:
            with _grpc_errors("receive", idle_ms):
                async with asyncio.timeout(
                    idle_ms / 1000
                ):  # the watchdog, pushed back per response
                    response = await call.read()
            if response is grpc.aio.EOF:
                raise XdsStreamError("receive: stream closed by the server")
            if not self._healthy:
                self._healthy, self._attempt, self._state = True, 0, XdsState.STREAMING
                log.info("xds stream established target=%s", self.target)
            log.debug(
                "xds response type_url=%s version=%s nonce=%s resources=%d",
                response.type_url,
                response.version_info,
                response.nonce,
                len(response.resources),
            )
            self._apply(self._sync.on_response(response))

    # ---- verdicts

    def _apply(self, outcome: _Outcome) -> None:
        if self._outbox is not None:
            for request in outcome.requests:
                self._outbox.put_nowait(request)
        self._acks += outcome.acks
        self._nacks += outcome.nacks
        if outcome.error is not None:
            self._last_nack = outcome.error
            log.warning(
                "xds update rejected (NACK), keeping the last good table version=%s table=%s error=%s",
                self._sync.last_version,
                self._sync.table_version,
                outcome.error,
            )
        if outcome.waiting:
            log.debug("xds update waits for %s", ", ".join(outcome.waiting))
        if self._sync.pending():  # only incomplete updates stay pending
            if self._timer is None:
                delay = self._settings.dependency_timeout_ms / 1000
                self._timer = asyncio.get_running_loop().call_later(delay, self._dependency_timeout)
        else:
            self._disarm()
        if outcome.table is not None:
            version = self._sync.table_version or ""
            log.info("table applied version=%s listeners=%d", version, len(outcome.table.listeners))
            self._ready.set()
            try:
                self._on_table(outcome.table, version)
            except Exception:
                log.error("on_table callback failed version=%s", version, exc_info=True)

    def _dependency_timeout(self) -> None:
        self._timer = None
        missing = self._sync.missing()
        log.warning(
            "xds dependencies still missing after %dms, building anyway missing=%s",
            self._settings.dependency_timeout_ms,
            ", ".join(missing),
        )
        try:
            self._apply(self._sync.settle(force=True))
        except Exception:
            log.error("xds dependency timeout handling failed", exc_info=True)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
