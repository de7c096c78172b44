"""ADS client (state of the world, v3, grpc.aio): the stream that keeps a `RuntimeTable` current.

```
                 start()
  IDLE ─────────────────────> CONNECTING ── first response ──> STREAMING
                                 ^    │ open/send/receive error,       │ error, EOF from the server,
                                 │    │ connect timeout                │ idle timeout (no response)
                                 │    v                                v
                                 └── BACKOFF <─────────────────────────┘
                    sleep min(max, base·2^(n-1)) jittered to [½, 1]; log "reconnect attempt #n"
  any state ── stop() ──> STOPPED           (the last good table survives every arrow)

STREAMING: response ─> XdsResources.on_response ─> Verdict: requests to the writer queue,
           a new table to on_table(table, version); received resources waiting for a
           dependency (ACKed all the same) arm the dependency timer (settle(force=True)
           "building anyway" when it fires, counted in `XdsStatus.dependency_timeouts`)
```

One session = one channel + one stream. A reader task decodes responses and hands them to
`XdsResources` (`xds_resources.py`: what is held, subscribed, ACKed or NACKed; synchronous,
so a verdict is never interleaved with another response); requests go through a queue to a
single writer task (grpc allows one write at a time). grpc exceptions are translated once,
in `_grpc_errors`, into `XdsStreamError`. Every await has a deadline (connect, send, an idle
watchdog on reads, channel close) except the writer's queue read, which the session cancels.

Deliberately not here: what a response means (`xds_resources.py`), and swapping the table
into the request path (the callback's job, `runner.py`). `from_xds` runs on the event loop:
it is milliseconds for the tables we build.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc

from turnout.proxy import config
from turnout.proxy.errors import XdsStreamError
from turnout.proxy.inbound_policy import PolicyResources
from turnout.proxy.table import RuntimeTable
from turnout.proxy.xds_delta import DeltaXdsResources
from turnout.proxy.xds_resources import Verdict, XdsResources

log = logging.getLogger(__name__)

PolicyCallback = Callable[[PolicyResources, str], None]
"""`on_policy(resources, version)`: each new set of policy resources (inbound proxies)."""
TableCallback = Callable[[RuntimeTable, str], None]
"""`on_table(table, version)`: called on the event loop with each new table and the
`version_info` of the response that completed it. It must not block; an exception it raises
is logged and does not stop the client."""


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
    labels: tuple[tuple[str, str], ...] = ()
    """The workload's labels (`metadata.labels`), what policy selectors match."""
    pod: str = ""
    """The pod name (`metadata.pod`); "" = not known, not sent."""
    admin: str | None = None
    """``HOST:PORT`` of the proxy's admin port as bound (`metadata.admin`), where the control
    plane points Prometheus; None = not sent (no admin port). `process.reporting_admin` fills
    it in once the port is bound, so ``--admin :0`` reports the port it became."""

    def to_proto(self) -> Any:
        node = base_pb2.Node(id=self.id, cluster=self.cluster, user_agent_name="turnout-proxy")
        node.metadata.update({"namespace": self.namespace, "workload": self.workload})
        if self.labels:
            node.metadata.update({"labels": dict(self.labels)})
        if self.pod:
            node.metadata.update({"pod": self.pod})
        if self.admin is not None:
            node.metadata.update({"admin": self.admin})
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
    delta: bool = config.DEFAULT_XDS_DELTA
    """Incremental xDS (`DeltaAggregatedResources`, only changed resources are sent); a
    server that answers UNIMPLEMENTED is spoken to in state of the world from then on."""


@dataclass(frozen=True, slots=True, kw_only=True)
class XdsStatus:
    """A snapshot of the client for `/ready` and logs."""

    state: XdsState
    ready: bool
    """True once a table was built; stays true while disconnected (last good table)."""
    table_version: str | None
    """Version passed to `on_table` with the current table; None = no table yet."""
    versions: tuple[tuple[str, str], ...]
    """(type URL, version in the current table) for the types applied at least once."""
    attempt: int
    """Reconnect attempt in progress or last made; 0 = none since the last healthy stream."""
    acks: int
    nacks: int
    last_error: str | None
    """Why the last stream ended; None = never ended."""
    last_nack: str | None
    """error_detail of the last NACK; None = none sent."""
    dependency_timeouts: int = 0
    """Times the dependency timer fired and a table was built with what had arrived
    ("building anyway"); a healthy server and client never get there."""

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


class XdsClient:
    """Keeps a `RuntimeTable` in sync with an ADS server, forever, until `stop()`."""

    def __init__(
        self,
        target: str,
        *,
        node: NodeInfo,
        on_table: TableCallback,
        on_policy: PolicyCallback | None = None,
        settings: XdsSettings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.target = target
        """``HOST:PORT`` of the ADS server (plaintext)."""
        self._node = node.to_proto()
        self._on_table = on_table
        self._settings = settings or XdsSettings()
        self._rng = rng or random.Random()
        self._on_policy = on_policy
        self._delta = self._settings.delta
        self._resources: XdsResources = (
            DeltaXdsResources(policy=on_policy is not None)
            if self._delta
            else XdsResources(policy=on_policy is not None)
        )
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
        self._dependency_timeouts = 0

    # ---- public state

    @property
    def table(self) -> RuntimeTable | None:
        """The last good table; None until the first one."""
        return self._resources.table

    @property
    def ready(self) -> bool:
        return self._resources.table is not None

    @property
    def status(self) -> XdsStatus:
        return XdsStatus(
            state=self._state,
            ready=self.ready,
            table_version=self._resources.table_version,
            versions=tuple(
                (url, t.accepted_version)
                for url, t in self._resources.types.items()
                if t.accepted_version is not None
            ),
            attempt=self._attempt,
            acks=self._acks,
            nacks=self._nacks,
            last_error=self._last_error,
            last_nack=self._last_nack,
            dependency_timeouts=self._dependency_timeouts,
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
        assert self._resources.table is not None
        return self._resources.table

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
                if self._delta and " UNIMPLEMENTED " in f" {exc} " and not self._healthy:
                    self._fall_back_to_sotw()
                    continue
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

    def _fall_back_to_sotw(self) -> None:
        """The server has no delta xDS: state of the world from now on (what was applied
        is kept; the next stream's first requests carry its versions)."""
        log.warning(
            "xds server does not serve delta xDS, using state of the world target=%s", self.target
        )
        old = self._resources
        new = XdsResources(policy=old.policy is not None)
        new.types, new.policy, new.table = old.types, old.policy, old.table
        new.table_version, new.policy_version = old.table_version, old.policy_version
        self._resources, self._delta = new, False

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
            call = (
                stub.DeltaAggregatedResources(wait_for_ready=False)
                if self._delta
                else stub.StreamAggregatedResources(wait_for_ready=False)
            )
            outbox: asyncio.Queue[Any] = asyncio.Queue()
            self._outbox = outbox
            for request in self._resources.start_stream():
                outbox.put_nowait(request)
            log.info(
                "xds stream opening target=%s node=%s delta=%s",
                self.target,
                self._node.id,
                self._delta,
            )
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
                "xds request sent type_url=%s nonce=%s nack=%s",
                request.type_url,
                request.response_nonce,
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
                "xds response type_url=%s nonce=%s resources=%d",
                response.type_url,
                response.nonce,
                len(response.resources),
            )
            self._apply(self._resources.on_response(response))

    # ---- verdicts

    def _apply(self, verdict: Verdict) -> None:
        if self._outbox is not None:
            for request in verdict.requests:
                self._outbox.put_nowait(request)
        self._acks += verdict.acks
        self._nacks += verdict.nacks
        if verdict.error is not None:
            self._last_nack = verdict.error
            log.warning(
                "xds update rejected (NACK), keeping the last good table version=%s table=%s error=%s",
                self._resources.last_version,
                self._resources.table_version,
                verdict.error,
            )
        if verdict.waiting:
            log.debug("xds update waits for %s", ", ".join(verdict.waiting))
        if self._resources.waiting():  # only incomplete updates stay unapplied
            if self._timer is None:
                delay = self._settings.dependency_timeout_ms / 1000
                self._timer = asyncio.get_running_loop().call_later(delay, self._dependency_timeout)
        else:
            self._disarm()
        if verdict.policy is not None and self._on_policy is not None:
            try:
                self._on_policy(verdict.policy, self._resources.policy_version or "")
            except Exception:
                log.error("on_policy callback failed", exc_info=True)
        if verdict.table is not None:
            version = self._resources.table_version or ""
            log.info("table applied version=%s listeners=%d", version, len(verdict.table.listeners))
            self._ready.set()
            try:
                self._on_table(verdict.table, version)
            except Exception:
                log.error("on_table callback failed version=%s", version, exc_info=True)

    def _dependency_timeout(self) -> None:
        self._timer = None
        self._dependency_timeouts += 1
        missing = self._resources.missing()
        log.warning(
            "xds dependencies still missing after %dms, building anyway missing=%s",
            self._settings.dependency_timeout_ms,
            ", ".join(missing),
        )
        try:
            self._apply(self._resources.settle(force=True))
        except Exception:
            log.error("xds dependency timeout handling failed", exc_info=True)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
