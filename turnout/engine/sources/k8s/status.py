"""Status write-back: Turnout's `status.parents` entries of each route, and the `status` of
each Gateway of Turnout's GatewayClass.

```
write_route_status / write_gateway_status ── at most `status_concurrency` at once, one each:
  GET object ──generation > compiled?──> "stale" (the watch is bringing the newer snapshot)
     │ Gateway: GET its GatewayClass ──another controller's, or none──> "not-ours"
     │ merge_route_parents(old, ours)     ours replaced, other controllers' entries kept
     │ merge_gateway_status(old, ours)    our condition types merged in place, listeners
     │                                    replaced, addresses kept
     │                                    (lastTransitionTime kept while status+reason hold)
     ├── nothing changed ─────────────> "unchanged" (no write)
     v
  PUT .../status with the object's resourceVersion ──409 Conflict──> GET again (attempt #n/N)
     │ 404 ──> "missing"; any other error ──> "failed" (logged)
     v
  "written"
```

`StatusSync` keeps the API server at what the last compile wants, on one guarded task:

```
want(result) ──> desired := its statuses ──wake──> round: every desired object, read from the server
resync()     ──(on becoming leader)──────────────> the same full round, at once
"failed" (403, 5xx and timeouts after api.py's retries, 409s exhausted) ──> retry only those,
             capped jittered backoff (attempt #n), until written, unchanged, stale or missing
every status_resync_s ──> compare each desired status with the watched copy (no request);
             only a difference (someone else's write, a lost update) is read and written
leading() False ──> nothing is written (a replica that is not the Lease holder, lease.py)
```

Idle, the resync sends nothing and writes nothing: an unchanged status is never PUT.

Deliberately not here: what the status says (the compiler decides; the control plane passes
only HTTPRoute and GRPCRoute statuses), how requests are retried (`api.py`) and who leads
(`lease.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from turnout.engine import ir
from turnout.engine.compile import CompileResult
from turnout.engine.sources.k8s.api import KubernetesApi, KubernetesApiError, KubernetesSettings
from turnout.engine.sources.k8s.kinds import (
    GATEWAY_CLASS_KIND,
    GATEWAY_KIND,
    GW,
    ROUTE_KINDS,
    Raw,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusWrite:
    route: ir.SourceRef
    """The object written: a route, or a Gateway."""
    outcome: Literal["written", "unchanged", "stale", "missing", "not-ours", "not-leader", "failed"]
    """`stale`: the object changed since the compile (a newer snapshot is coming);
    `not-ours`: a Gateway whose GatewayClass is another controller's, or not found;
    `not-leader`: leadership was lost before the write (nothing was sent)."""


Cache = Callable[[ir.SourceRef], "Raw | None"]
"""The watched copy of an object (route or Gateway), None when not (yet) seen."""


class StatusWriter:
    """Writes route and Gateway statuses through `api` as `controller` (see the module
    docstring)."""

    def __init__(
        self,
        api: KubernetesApi,
        *,
        settings: KubernetesSettings,
        controller: str,
        clock: Callable[[], datetime],
        cache: Cache | None = None,
        may_write: Callable[[], bool] = lambda: True,
    ) -> None:
        self._api = api
        self._settings = settings
        self._controller = controller
        self._clock = clock
        self._cache = cache
        self._may_write = may_write

    async def write_route_status(
        self, statuses: Sequence[ir.RouteStatus], *, cached: bool = False
    ) -> list[StatusWrite]:
        """Write Turnout's `status.parents` entries of each route (see module docstring).
        `cached`: an object whose watched copy already says what we want is "unchanged"
        without a request."""
        jobs = [(st.route, self._route_job(st)) for st in statuses]
        return await self._write_all(jobs, cached=cached)

    async def write_gateway_status(
        self, statuses: Sequence[ir.GatewayStatus], *, cached: bool = False
    ) -> list[StatusWrite]:
        """Write the `status` of each Gateway whose GatewayClass is `controller`'s (the
        class is read from the API server: a Gateway of another class is "not-ours")."""
        jobs = [(st.gateway, self._gateway_job(st)) for st in statuses]
        return await self._write_all(jobs, cached=cached)

    async def _write_all(
        self, jobs: Sequence[tuple[ir.SourceRef, _Job | None]], *, cached: bool = False
    ) -> list[StatusWrite]:
        gate = asyncio.Semaphore(self._settings.status_concurrency)

        async def one(ref: ir.SourceRef, job: _Job | None) -> StatusWrite:
            if job is None:
                log.error(
                    "status not written object=%s/%s/%s: kind unsupported",
                    ref.kind,
                    ref.namespace,
                    ref.name,
                )
                return StatusWrite(route=ref, outcome="failed")
            if cached and self._cache is not None:
                seen = self._cache(ref)
                now = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
                if seen is not None and job.merge(seen, now) is None:
                    return StatusWrite(route=ref, outcome="unchanged")
            async with gate:
                return await self._write_status(ref, job)

        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(one(ref, job), name=f"k8s-status-{ref.kind}/{ref.name}")
                for ref, job in jobs
            ]
        return [t.result() for t in tasks]

    def _route_job(self, st: ir.RouteStatus) -> _Job | None:
        spec = ROUTE_KINDS.get(st.route.kind)
        if spec is None:
            return None

        def merge(obj: Raw, now: str) -> Raw | None:
            old = list((obj.get("status") or {}).get("parents") or [])
            spec_refs = list((obj.get("spec") or {}).get("parentRefs") or [])
            new = merge_route_parents(
                old, st, controller=self._controller, now=now, spec_refs=spec_refs
            )
            return None if new == old else {**(obj.get("status") or {}), "parents": new}

        return _Job(
            path=spec.path(st.route.namespace, st.route.name), generation=st.generation, merge=merge
        )

    def _gateway_job(self, st: ir.GatewayStatus) -> _Job:
        def merge(obj: Raw, now: str) -> Raw | None:
            old = obj.get("status") or {}
            new = merge_gateway_status(old, st, now=now)
            return None if new == old else new

        path = GATEWAY_KIND.path(st.gateway.namespace, st.gateway.name)
        return _Job(path=path, generation=st.generation, merge=merge, owned=self._class_is_ours)

    async def _class_is_ours(self, gateway: Raw) -> bool:
        name = str((gateway.get("spec") or {}).get("gatewayClassName") or "")
        try:
            cls = await self._api.request("GET", GATEWAY_CLASS_KIND.path(None, name))
        except KubernetesApiError as exc:
            if exc.status == 404:
                return False
            raise
        return bool((cls.get("spec") or {}).get("controllerName") == self._controller)

    async def _write_status(self, ref: ir.SourceRef, job: _Job) -> StatusWrite:
        what = f"{ref.kind}/{ref.namespace}/{ref.name}"
        attempts = self._settings.status_attempts
        try:
            for attempt in range(1, attempts + 1):
                obj = await self._api.request("GET", job.path)
                meta = obj.get("metadata") or {}
                if int(meta.get("generation") or 1) > job.generation:
                    return StatusWrite(route=ref, outcome="stale")
                if job.owned is not None and not await job.owned(obj):
                    log.debug("status not written object=%s: not our GatewayClass", what)
                    return StatusWrite(route=ref, outcome="not-ours")
                now = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
                status = job.merge(obj, now)
                if status is None:
                    return StatusWrite(route=ref, outcome="unchanged")
                body = copy.deepcopy(obj)
                body["status"] = status
                if not self._may_write():
                    log.info("status not written object=%s: not the leader", what)
                    return StatusWrite(route=ref, outcome="not-leader")
                try:
                    await self._api.request("PUT", f"{job.path}/status", body=body)
                except KubernetesApiError as exc:
                    if exc.status != 409:
                        raise
                    log.info(
                        "status conflict object=%s; re-reading attempt #%d/%d",
                        what,
                        attempt + 1,
                        attempts,
                    )
                    continue
                log.info("status written object=%s", what)
                return StatusWrite(route=ref, outcome="written")
            log.error("status not written object=%s: %d conflicts", what, attempts)
        except KubernetesApiError as exc:
            if exc.status == 404:
                return StatusWrite(route=ref, outcome="missing")
            log.error("status not written object=%s: %s", what, exc)
        return StatusWrite(route=ref, outcome="failed")


class StatusSync:
    """Keeps route and Gateway status at what the last compile wants (see the module
    docstring); `run()` is its task, `want()` and `resync()` wake it.

    `delay(attempt)` is the jittered, capped wait before retry round `attempt` (the API's
    backoff); `leading()` says whether this replica may write (always, without election)."""

    def __init__(
        self,
        writer: StatusWriter,
        *,
        settings: KubernetesSettings,
        delay: Callable[[int], float],
        leading: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._writer = writer
        self._settings = settings
        self._delay = delay
        self._leading = leading
        self._clock = clock
        self._routes: tuple[ir.RouteStatus, ...] = ()
        self._gateways: tuple[ir.GatewayStatus, ...] = ()
        self._wake = asyncio.Event()
        self._full = False
        """The next round writes every desired object (a new compile, a new leader)."""
        self._failed: set[ir.SourceRef] = set()
        self._attempt = 0
        self._retry_at = 0.0
        self.rounds = 0
        """Rounds run (full, retry or resync), for tests and logs."""

    @property
    def pending(self) -> frozenset[ir.SourceRef]:
        """Objects whose last write failed and waits for a retry."""
        return frozenset(self._failed)

    def want(self, result: CompileResult) -> None:
        """The statuses of `result` are what the API server should hold; written at once."""
        # SMI TrafficSplits have no status subresource; only routes and Gateways get status.
        self._routes = tuple(s for s in result.statuses if s.route.kind in ROUTE_KINDS)
        self._gateways = tuple(result.gateway_statuses)
        self.resync()

    def resync(self) -> None:
        """Write every desired status again, read from the server (a new leader's first act)."""
        self._full = True
        self._wake.set()

    async def run(self) -> None:
        resync_at = self._clock() + self._settings.status_resync_s
        while True:
            due = resync_at if not self._failed else min(resync_at, self._retry_at)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, due - self._clock())):
                    await self._wake.wait()
            self._wake.clear()
            now = self._clock()
            resync = now >= resync_at
            if resync:
                resync_at = now + self._settings.status_resync_s
            retry = bool(self._failed) and now >= self._retry_at
            if not (self._full or resync or retry):
                continue
            if not self._leading():
                self._failed.clear()  # a new leader starts with a full round (resync())
                continue
            full, self._full = self._full, False
            if full or resync:
                await self._round(None, cached=not full)
            else:
                await self._round(set(self._failed), cached=False)

    async def _round(self, only: set[ir.SourceRef] | None, *, cached: bool) -> None:
        """Write the desired statuses (`only` those refs, when given); failed ones retried."""
        routes = [s for s in self._routes if only is None or s.route in only]
        gateways = [s for s in self._gateways if only is None or s.gateway in only]
        self.rounds += 1
        done = await self._writer.write_route_status(routes, cached=cached)
        done += await self._writer.write_gateway_status(gateways, cached=cached)
        failed = {w.route for w in done if w.outcome == "failed"}
        if only is None:
            self._failed = failed
        else:
            self._failed = (self._failed - only) | failed
        if not self._failed:
            self._attempt = 0
            return
        self._attempt += 1
        wait = self._delay(self._attempt)
        self._retry_at = self._clock() + wait
        log.warning(
            "status writes failed objects=%d; retrying attempt #%d in %.2fs",
            len(self._failed),
            self._attempt + 1,
            wait,
        )


@dataclass(frozen=True, slots=True)
class _Job:
    """One object's status write: where, for which generation, and the new `status`
    (None: nothing to change) from the object as read."""

    path: str
    generation: int
    merge: Callable[[Raw, str], Raw | None]
    owned: Callable[[Raw], Awaitable[bool]] | None = None
    """False for an object that is another controller's to write (None: always ours)."""


def condition_to_wire(c: ir.Condition, prev: Mapping[str, Any] | None, now: str) -> Raw:
    """A condition as the API stores it; `lastTransitionTime` kept from `prev` while the
    status and reason hold."""
    p = prev or {}
    same = p.get("status") == c.status and p.get("reason") == c.reason
    return {
        "type": c.type,
        "status": c.status,
        "reason": c.reason,
        "message": c.message,
        "observedGeneration": c.observed_generation,
        "lastTransitionTime": p.get("lastTransitionTime", now) if same else now,
    }


def parent_ref_to_wire(ref: ir.ParentRefKey) -> Raw:
    out: Raw = {"group": ref.group, "kind": ref.kind, "namespace": ref.namespace, "name": ref.name}
    if ref.section_name is not None:
        out["sectionName"] = ref.section_name
    if ref.port is not None:
        out["port"] = ref.port
    return out


def _ref_key(ref: Mapping[str, Any], route_ns: str) -> tuple[object, ...]:
    """A `parentRef` with Gateway API defaults applied, for matching old entries to ours."""
    return (
        ref.get("group", GW),
        ref.get("kind", "Gateway"),
        ref.get("namespace") or route_ns,
        ref.get("name"),
        ref.get("sectionName"),
        ref.get("port"),
    )


def merge_route_parents(
    old: Sequence[Mapping[str, Any]],
    status: ir.RouteStatus,
    *,
    controller: str,
    now: str,
    spec_refs: Sequence[Mapping[str, Any]] = (),
) -> list[Raw]:
    """`status.parents` with our entries replaced by `status` and every other kept as is.

    Other controllers' entries keep their place; ours follow in compile order. A condition
    keeps its old `lastTransitionTime` while its status and reason are unchanged. Each
    `parentRef` is the route's own `spec.parentRefs` entry, copied as written when one
    matches (Flagger compares them field by field: a namespace we filled in would not
    match a ref written without one)."""
    ns = status.route.namespace
    as_written = {_ref_key(r, ns): dict(r) for r in spec_refs}
    others = [dict(p) for p in old if p.get("controllerName") != controller]
    previous = {
        _ref_key(p.get("parentRef") or {}, ns): p
        for p in old
        if p.get("controllerName") == controller
    }
    ours: list[Raw] = []
    for ps in status.parents:
        ref = parent_ref_to_wire(ps.parent_ref)
        ref = as_written.get(_ref_key(ref, ns), ref)
        prev = previous.get(_ref_key(ref, ns)) or {}
        prev_conds = {c.get("type"): c for c in prev.get("conditions") or ()}
        conds = [condition_to_wire(c, prev_conds.get(c.type), now) for c in ps.conditions]
        ours.append({"parentRef": ref, "controllerName": ps.controller_name, "conditions": conds})
    return others + ours


def merge_conditions(
    old: Sequence[Mapping[str, Any]], ours: Sequence[ir.Condition], *, now: str
) -> list[Raw]:
    """`old` with each of `ours` merged into the condition of its type, in place; other
    types are kept where they are ("Implementations MUST NOT remove or reorder Conditions
    that they are not directly responsible for"), and new types follow."""
    by_type = {c.type: c for c in ours}
    out: list[Raw] = []
    for c in old:
        mine = by_type.pop(str(c.get("type")), None)
        out.append(dict(c) if mine is None else condition_to_wire(mine, c, now))
    out.extend(condition_to_wire(c, None, now) for c in by_type.values())
    return out


def merge_gateway_status(old: Mapping[str, Any], status: ir.GatewayStatus, *, now: str) -> Raw:
    """`old` (a Gateway's `status`) with our conditions merged in and `listeners` replaced
    by ours; anything else (`addresses`) kept as is."""
    previous = {li.get("name"): li for li in old.get("listeners") or ()}
    listeners: list[Raw] = []
    for ls in status.listeners:
        prev = previous.get(ls.name) or {}
        listeners.append(
            {
                "name": ls.name,
                "supportedKinds": [{"group": k.group, "kind": k.kind} for k in ls.supported_kinds],
                "attachedRoutes": ls.attached_routes,
                "conditions": merge_conditions(
                    prev.get("conditions") or (), ls.conditions, now=now
                ),
            }
        )
    conditions = merge_conditions(old.get("conditions") or (), status.conditions, now=now)
    return {**old, "conditions": conditions, "listeners": listeners}
