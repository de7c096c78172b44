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

Deliberately not here: what the status says (the compiler decides; the control plane passes
only HTTPRoute and GRPCRoute statuses) and how requests are retried (`api.py`).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from turnout.engine import ir
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
    outcome: Literal["written", "unchanged", "stale", "missing", "not-ours", "failed"]
    """`stale`: the object changed since the compile (a newer snapshot is coming);
    `not-ours`: a Gateway whose GatewayClass is another controller's, or not found."""


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
    ) -> None:
        self._api = api
        self._settings = settings
        self._controller = controller
        self._clock = clock

    async def write_route_status(self, statuses: Sequence[ir.RouteStatus]) -> list[StatusWrite]:
        """Write Turnout's `status.parents` entries of each route (see module docstring)."""
        return await self._write_all([(st.route, self._route_job(st)) for st in statuses])

    async def write_gateway_status(self, statuses: Sequence[ir.GatewayStatus]) -> list[StatusWrite]:
        """Write the `status` of each Gateway whose GatewayClass is `controller`'s (the
        class is read from the API server: a Gateway of another class is "not-ours")."""
        return await self._write_all([(st.gateway, self._gateway_job(st)) for st in statuses])

    async def _write_all(
        self, jobs: Sequence[tuple[ir.SourceRef, _Job | None]]
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
