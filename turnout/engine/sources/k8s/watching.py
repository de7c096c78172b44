r"""The Kubernetes source: list+watch what the compiler reads and publish snapshots.

One guarded task per kind (``k8s-watch-<Kind>``) runs this state machine; a publisher task
(``k8s-snapshots``) turns the per-kind stores into debounced snapshots.

```
        ┌─────────────── 410 Gone (HTTP status or ERROR event code 410) ──────────────┐
        v                                                                              │
  ──> LIST ──ok: store := items, rv := list rv──> WATCH(rv) ──event/BOOKMARK: rv := object rv
       │ ^                                         │  ^ │
       │ │                                         │  │ └─ stream ended (timeoutSeconds): WATCH(rv)
       │ │                                         │  └─── transient (0/429/5xx, inactivity):
       │ │                                         │       backoff "attempt #n/N", WATCH(rv)
       │ │   BACKOFF <── attempts exhausted: capped, jittered, growing; LIST again (store kept)
       │ │   DENIED  <── 401/403/other: logged once per message; LIST again after denied_retry_s
       │ └──────┘
       └─ 404 ──> MISSING (CRD not installed: logged once, store emptied) ──> LIST again when
                  the CustomResourceDefinition watch sees its CRD (or after missing_kind_retry_s)
```

Every request is retried on transient failures (`api.py`); a kind whose tries are used up
keeps probing with the same capped backoff (`backoff_max_s`), so it is back within seconds
of the API server. A watch has a server-side `timeoutSeconds` and a client-side inactivity
timeout that every line (event or bookmark) pushes back. CustomResourceDefinitions are
listed and watched by the same loop (``k8s-watch-CustomResourceDefinition``), kept only as
summaries and never published: a CRD that appears wakes the MISSING kind it serves.

Snapshots::

    store[kind][(ns, name)] = raw --change--> dirty --debounce--> parse_document (cached per
    object version, file ``k8s:<Kind>/<ns>/<name>``, doc 0) --> Resources + diagnostics
    --> on_snapshot(resources, diagnostics)

The first snapshot waits until every kind has listed once (or is known missing or failing),
so the compiler never sees routes without their Services. A status-only change of a route
or a Gateway (our own write-back, or another controller's) does not publish a snapshot: that
would only feed the write-back loop. SMI kinds are kept raw (`Snapshot.unparsed`) for the SMI adapter.

Deliberately not here: requests and retries (`api.py`), what is watched (`kinds.py`), status
write-back (`status.py`: `self.status`, a `StatusSync`, gets each compile's statuses), who
leads (`lease.py`), and compiling (the control
plane, `engine.plane`, takes each snapshot from `on_snapshot`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from turnout.engine import ir
from turnout.engine.compile import CompileOptions, CompileResult
from turnout.engine.config import CONTROLLER_NAME
from turnout.engine.diagnostics import Diagnostic, SourcePos, info, sorted_diagnostics
from turnout.engine.model import Loaded, Resource, Resources
from turnout.engine.pipeline import CompiledInputs, SnapshotCompiler
from turnout.engine.plane import ControlPlane
from turnout.engine.sources.k8s.api import (
    DEFAULT_KUBERNETES_SETTINGS,
    TEXT_ERROR_MAX,
    KubernetesApi,
    KubernetesApiError,
    KubernetesSettings,
    Sleep,
    WatchExpired,
)
from turnout.engine.sources.k8s.kinds import (
    CRD_KIND,
    GATEWAY_KIND,
    ROUTE_KINDS,
    WATCHED_KINDS,
    KindSpec,
    Raw,
    crd_serves,
    object_key,
    parse_object,
    status_only_change,
    summary,
)
from turnout.engine.sources.k8s.lease import LeaderElector
from turnout.engine.sources.k8s.status import StatusSync, StatusWrite, StatusWriter

log = logging.getLogger(__name__)

CLUSTER_COMPILE = CompileOptions(complete_inputs=True)
"""The source's snapshots are the whole cluster: a parent Service not in them does not exist."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    version: int
    """1, 2, 3 ... per published snapshot."""
    resources: Resources
    diagnostics: tuple[Diagnostic, ...]
    """Schema findings of the objects (invalid ones are left out) and kinds not installed."""
    unparsed: Mapping[str, tuple[Mapping[str, object], ...]]
    """Raw objects of kinds kept for adapters (`TrafficSplit`, `HTTPRouteGroup`)."""


OnSnapshot = Callable[[Resources, Sequence[Diagnostic]], Awaitable[None] | None]


@dataclass(slots=True)
class _Entry:
    raw: Raw
    parsed: tuple[Loaded[Resource] | None, tuple[Diagnostic, ...]] | None = None


@dataclass(slots=True)
class _KindState:
    spec: KindSpec
    objects: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    resource_version: str | None = None
    synced: bool = False
    missing: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when this kind's CRD appears: a MISSING kind lists again at once."""
    failed: str | None = None
    """The last non-transient error logged (each distinct one is logged once)."""


class KubernetesSource:
    """List+watch the API server and publish snapshots; write route status back.

    `api_client` is a kubernetes `ApiClient` (see `api_client_from_environment`; tests pass
    one pointed at a fake server). `on_snapshot(resources, diagnostics)` may be sync or
    async; the latest snapshot, with the raw SMI objects, is also `self.latest`. `sleep` and
    `rng` are the seams for backoff waits. Use ``async with`` or `start()`/`stop()`.
    `self.status` (a `StatusSync`, task ``k8s-status``) keeps the compiled statuses written,
    only while `leading()` (the Lease holder, with `--leader-elect`).
    """

    def __init__(
        self,
        api_client: Any,
        *,
        on_snapshot: OnSnapshot,
        settings: KubernetesSettings = DEFAULT_KUBERNETES_SETTINGS,
        kinds: Sequence[KindSpec] = WATCHED_KINDS,
        controller_name: str = CONTROLLER_NAME,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        workers = len(kinds) + settings.status_concurrency + 2
        self._api = KubernetesApi(
            api_client, settings=settings, pool_size=workers, sleep=sleep, rng=rng
        )
        self._status = StatusWriter(
            self._api,
            settings=settings,
            controller=controller_name,
            clock=clock,
            cache=self._cached,
            may_write=leading,
        )
        self.status = StatusSync(
            self._status,
            settings=settings,
            delay=lambda attempt: self._api.delay(attempt, None),
            leading=leading,
        )
        self._on_snapshot = on_snapshot
        self._settings = settings
        self._sleep = sleep
        self._states = {k.key: _KindState(k) for k in kinds}
        self._crds = _KindState(CRD_KIND)
        self._dirty = asyncio.Event()
        self._synced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.latest: Snapshot | None = None

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> KubernetesSource:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start one watch task per kind and the publisher; returns at once."""
        for state in (*self._states.values(), self._crds):
            self._spawn(self._run_kind(state), f"k8s-watch-{state.spec.key}")
        self._spawn(self._publish(), "k8s-snapshots")
        self._spawn(self.status.run(), "k8s-status")

    async def stop(self) -> None:
        """Cancel every task and wait for it; then release the threads (the source, and
        `write_route_status`, cannot be used after this)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._api.close()

    def resource_version(self, kind: str) -> str | None:
        """The last resourceVersion seen for `kind` (a `KindSpec.key`: from a list, an event
        or a bookmark)."""
        return self._states[kind].resource_version

    async def write_route_status(self, statuses: Sequence[ir.RouteStatus]) -> list[StatusWrite]:
        """Write Turnout's `status.parents` entries of each route (`status.py`)."""
        return await self._status.write_route_status(statuses)

    async def write_gateway_status(self, statuses: Sequence[ir.GatewayStatus]) -> list[StatusWrite]:
        """Write the `status` of each Gateway of our GatewayClass (`status.py`)."""
        return await self._status.write_gateway_status(statuses)

    def _cached(self, ref: ir.SourceRef) -> Raw | None:
        """The watched copy of a route or Gateway (status included)."""
        spec = GATEWAY_KIND if ref.kind == GATEWAY_KIND.kind else ROUTE_KINDS.get(ref.kind)
        state = None if spec is None else self._states.get(spec.key)
        entry = None if state is None else state.objects.get((ref.namespace, ref.name))
        return None if entry is None else entry.raw

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        self._tasks.append(asyncio.create_task(_guard(coro, name), name=name))

    # ---------------------------------------------------------------- list + watch

    async def _run_kind(self, state: _KindState) -> None:
        spec = state.spec
        failures = 0
        while True:
            try:
                await self._list(state)
                failures = 0
                await self._watch(state)
            except WatchExpired:
                log.info(
                    "watch expired kind=%s rv=%s; relisting", spec.kind, state.resource_version
                )
            except KubernetesApiError as exc:
                if exc.status == 404:
                    await self._missing(state)
                    continue
                self._mark_synced(state)  # the others are published, this kind as last known
                if not exc.transient:
                    await self._denied(state, exc)
                    continue
                failures += 1
                delay = self._api.delay(failures, exc.retry_after)
                # attempts #2, #3, #5, #9, ...: a long outage is not a line every 2 s per kind
                level = logging.WARNING if failures & (failures - 1) == 0 else logging.DEBUG
                log.log(
                    level,
                    "kind unavailable kind=%s: %s; relisting attempt #%d in %.2fs",
                    spec.kind,
                    exc,
                    failures + 1,
                    delay,
                )
                await self._sleep(delay)
            except Exception as exc:  # a bug or an answer nobody expected: keep the kind alive
                self._mark_synced(state)
                if state.failed != repr(exc):
                    state.failed = repr(exc)
                    log.exception("kind failed kind=%s; trying again", spec.kind)
                await self._sleep(self._settings.denied_retry_s)

    async def _denied(self, state: _KindState, exc: KubernetesApiError) -> None:
        """401/403 (or another error retrying cannot fix): one error per distinct message,
        naming what is missing; the kind keeps its last known objects and tries again."""
        spec = state.spec
        if state.failed != exc.message:
            state.failed = exc.message
            need = ""
            if exc.status == 403:
                group = spec.group or '""'
                need = f" (the ClusterRole needs get, list, watch on {spec.plural} in {group})"
            log.error(
                "kind failed kind=%s: %s%s; trying again every %.0fs",
                spec.kind,
                exc,
                need,
                self._settings.denied_retry_s,
            )
        await self._sleep(self._settings.denied_retry_s)

    async def _missing(self, state: _KindState) -> None:
        if not state.missing:
            log.warning(
                "kind not installed kind=%s api=%s; listing again when its CRD appears",
                state.spec.kind,
                state.spec.api_version,
            )
        state.missing = True
        if state.objects:
            state.objects = {}
            self._changed(state)
        self._mark_synced(state)
        await self._pause(state, self._settings.missing_kind_retry_s)

    async def _pause(self, state: _KindState, seconds: float) -> None:
        """Sleep `seconds`, or less when the kind is woken (its CRD appeared)."""
        if state.wake.is_set():
            return
        sleeping = asyncio.ensure_future(self._sleep(seconds))
        woken = asyncio.ensure_future(state.wake.wait())
        try:
            await asyncio.wait((sleeping, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (sleeping, woken):
                fut.cancel()
            await asyncio.gather(sleeping, woken, return_exceptions=True)

    def _changed(self, state: _KindState, raw: Raw | None = None) -> None:
        """A kind's store changed: publish; a CRD that appeared: wake the kind it serves."""
        if state is not self._crds:
            self._dirty.set()
            return
        if raw is None:
            return
        for other in self._states.values():
            if other.missing and crd_serves(raw, other.spec):
                log.info("crd appeared kind=%s crd=%s", other.spec.kind, object_key(raw)[1])
                other.wake.set()

    async def _list(self, state: _KindState) -> None:
        spec = state.spec
        state.wake.clear()  # a CRD seen from now on wakes the next MISSING pause
        items: dict[tuple[str, str], _Entry] = {}
        token = ""
        while True:
            query = [("limit", str(self._settings.page_size))]
            if spec.field_selector:
                query.append(("fieldSelector", spec.field_selector))
            if token:
                query.append(("continue", token))
            try:
                page = await self._api.request("GET", spec.path(), query)
            except KubernetesApiError as exc:
                if exc.status == 410:  # the continue token expired: start over
                    raise WatchExpired from exc
                raise
            for raw in page.get("items") or ():
                entry = self._entry(state, raw)
                items[object_key(entry.raw)] = entry
            meta = page.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                break
        if state.missing:
            log.info("kind installed kind=%s api=%s", spec.kind, spec.api_version)
            state.missing = False
        if state.failed is not None:
            log.info("kind listed again kind=%s", spec.kind)
            state.failed = None
        state.resource_version = str(meta.get("resourceVersion") or "") or None
        old = {k: e.raw["metadata"].get("resourceVersion") for k, e in state.objects.items()}
        new = {k: e.raw["metadata"].get("resourceVersion") for k, e in items.items()}
        if old != new:
            state.objects = items
            self._changed(state)
        if state is self._crds:
            for entry in items.values():
                self._changed(state, entry.raw)
        log.info("listed kind=%s objects=%d rv=%s", spec.kind, len(items), state.resource_version)
        self._mark_synced(state)

    async def _watch(self, state: _KindState) -> None:
        """Watch from the state's rv until an error that needs a relist (raised)."""
        s = self._settings
        failures = 0
        while True:
            query = [
                ("watch", "true"),
                ("allowWatchBookmarks", "true"),
                ("resourceVersion", state.resource_version or ""),
                ("timeoutSeconds", str(s.watch_timeout_s)),
            ]
            if state.spec.field_selector:
                query.append(("fieldSelector", state.spec.field_selector))
            try:
                stream = await self._api.open_watch(state.spec.path(), query)
                try:
                    while (line := await self._api.next_line(stream)) is not None:
                        self._apply(state, line)
                        failures = 0
                finally:
                    stream.abort()
                log.debug("watch ended kind=%s rv=%s", state.spec.kind, state.resource_version)
            except KubernetesApiError as exc:
                if exc.status == 410:
                    raise WatchExpired from exc
                failures += 1
                if not exc.transient or failures >= s.attempts:
                    raise
                await self._api.backoff(exc, failures)

    def _apply(self, state: _KindState, line: bytes) -> None:
        """Apply one watch line; raises `WatchExpired` on an ERROR event with code 410."""
        try:
            event = json.loads(line)
            kind, obj = event["type"], event["object"]
        except (ValueError, KeyError, TypeError) as exc:
            raise KubernetesApiError(
                f"bad watch line: {line[:TEXT_ERROR_MAX]!r}", status=0
            ) from exc
        if kind == "ERROR":
            code = int(obj.get("code") or 0)
            if code == 410:
                raise WatchExpired
            raise KubernetesApiError(f"watch error: {obj.get('message', '')}", status=code)
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            entry = self._entry(state, obj)
            key = object_key(entry.raw)
            old = state.objects.get(key)
            state.objects[key] = entry
            if old is None or not status_only_change(state.spec, old.raw, entry.raw):
                self._changed(state, entry.raw)
        elif kind == "DELETED":
            if state.objects.pop(object_key(obj), None) is not None:
                self._changed(state)
        elif kind != "BOOKMARK":
            log.debug("unknown watch event type=%s kind=%s", kind, state.spec.kind)
        if rv:
            state.resource_version = str(rv)
        log.debug("watch event type=%s kind=%s rv=%s", kind, state.spec.kind, rv)

    def _entry(self, state: _KindState, raw: Raw) -> _Entry:
        # LIST items carry no apiVersion/kind; every parser needs them.
        raw = {**raw, "apiVersion": state.spec.api_version, "kind": state.spec.kind}
        if not isinstance(raw.get("metadata"), dict):
            raw["metadata"] = {}
        return _Entry(summary(state.spec, raw))

    def _mark_synced(self, state: _KindState) -> None:
        state.synced = True
        if all(s.synced for s in self._states.values()):
            self._synced.set()

    # ---------------------------------------------------------------- snapshots

    async def _publish(self) -> None:
        await self._synced.wait()
        self._dirty.set()  # the first snapshot, even when everything is empty
        version = 0
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self._settings.debounce_s)
            self._dirty.clear()
            snapshot = await self._snapshot(version + 1)
            version = snapshot.version
            self.latest = snapshot
            log.info(
                "snapshot published version=%d objects=%d diagnostics=%d",
                version,
                len(snapshot.resources.objects),
                len(snapshot.diagnostics),
            )
            try:
                result = self._on_snapshot(snapshot.resources, snapshot.diagnostics)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("snapshot callback failed version=%d", version)

    async def _snapshot(self, version: int) -> Snapshot:
        todo = [
            (state.spec, e)
            for state in self._states.values()
            if state.spec.parse
            for e in state.objects.values()
            if e.parsed is None
        ]
        # Parsing thousands of objects would stall the loop; only new versions are parsed.
        results = await asyncio.to_thread(lambda: [parse_object(spec, e.raw) for spec, e in todo])
        for (_, e), result in zip(todo, results, strict=True):
            e.parsed = result
        objects: list[Loaded[Resource]] = []
        diags: list[Diagnostic] = []
        unparsed: dict[str, tuple[Mapping[str, object], ...]] = {}
        for state in self._states.values():
            spec = state.spec
            if state.missing:
                msg = f"{spec.kind} ({spec.api_version}) is not installed in the cluster"
                diags.append(info("KindNotInstalled", msg, SourcePos(f"k8s:{spec.key}", 0)))
            entries = [state.objects[k] for k in sorted(state.objects)]
            if not spec.parse:
                unparsed[spec.kind] = tuple(e.raw for e in entries)
                continue
            for e in entries:
                if e.parsed is None:  # arrived while the others were parsed
                    e.parsed = parse_object(spec, e.raw)
                loaded, found = e.parsed
                diags.extend(found)
                if loaded is not None:
                    objects.append(loaded)
        return Snapshot(
            version=version,
            resources=Resources(tuple(objects)),
            diagnostics=tuple(sorted_diagnostics(diags)),
            unparsed=unparsed,
        )

    # ---------------------------------------------------------------- status write-back


async def _guard(coro: Awaitable[None], name: str) -> None:
    """Log a crash or an unexpected exit of a background task (kopf's `guard`)."""
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("task crashed task=%s", name)
    else:
        log.error("task exited unexpectedly task=%s", name)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSnapshot:
    """A `ResourceSnapshot` compiled by the source's `SnapshotCompiler`, which keeps what
    the previous snapshot compiled (the control plane applies them one at a time)."""

    resources: Resources
    diagnostics: tuple[Diagnostic, ...]
    writer: Callable[[CompileResult], Awaitable[None]]
    compiler: SnapshotCompiler
    origin: str = "kubernetes"

    def compile(self) -> CompiledInputs:
        return self.compiler(self.resources, self.diagnostics)

    async def write_status(self, result: CompileResult) -> None:
        await self.writer(result)


async def start_kubernetes_source(
    plane: ControlPlane,
    api_client: Any,
    *,
    settings: KubernetesSettings = DEFAULT_KUBERNETES_SETTINGS,
    leader: LeaderElector | None = None,
) -> KubernetesSource:
    """A started source whose every snapshot goes to `plane`, route and Gateway status
    coming back to the API server through the same source (`source.status`): with a
    `leader`, only while it leads, and in full each time it becomes the leader. The caller
    starts and stops `leader` (after this source, so the release follows the last write)."""
    source: KubernetesSource | None = None
    compiler = SnapshotCompiler(options=CLUSTER_COMPILE)  # reuses what the last one compiled

    async def write_status(result: CompileResult) -> None:
        assert source is not None
        source.status.want(result)

    async def on_snapshot(resources: Resources, diagnostics: Sequence[Diagnostic]) -> None:
        await plane.apply(
            ClusterSnapshot(
                resources=resources,
                diagnostics=tuple(diagnostics),
                writer=write_status,
                compiler=compiler,
            )
        )

    def leading() -> bool:
        return leader is None or leader.leading

    source = KubernetesSource(
        api_client, on_snapshot=on_snapshot, settings=settings, leading=leading
    )
    if leader is not None:
        leader.on_elected(source.status.resync)
    await source.start()
    return source
