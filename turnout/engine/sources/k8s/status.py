"""Route status write-back: Turnout's `status.parents` entries, merged into each route.

```
write_route_status(statuses) ── at most `status_concurrency` at once, one per route:
  GET route ──generation > compiled?──> "stale" (the watch is bringing the newer snapshot)
     │ merge_route_parents(old, ours)   ours replaced, other controllers' entries kept,
     │                                  lastTransitionTime kept while status+reason hold
     ├── nothing changed ─────────────> "unchanged" (no write)
     v
  PUT .../status with the object's resourceVersion ──409 Conflict──> GET again (attempt #n/N)
     │ 404 ──> "missing"; any other error ──> "failed" (logged)
     v
  "written"
```

Deliberately not here: which routes get status (the compiler decides; the control plane
passes only HTTPRoute and GRPCRoute statuses) and how requests are retried (`api.py`).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from turnout.engine import ir
from turnout.engine.sources.k8s.api import KubernetesApi, KubernetesApiError, KubernetesSettings
from turnout.engine.sources.k8s.kinds import GW, ROUTE_KINDS, Raw

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusWrite:
    route: ir.SourceRef
    outcome: Literal["written", "unchanged", "stale", "missing", "failed"]
    """`stale`: the route changed since the compile (a newer snapshot is coming)."""


class StatusWriter:
    """Writes route statuses through `api` as `controller` (see the module docstring)."""

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
        gate = asyncio.Semaphore(self._settings.status_concurrency)

        async def one(st: ir.RouteStatus) -> StatusWrite:
            async with gate:
                return await self._write_status(st)

        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(one(st), name=f"k8s-status-{st.route.kind}/{st.route.name}")
                for st in statuses
            ]
        return [t.result() for t in tasks]

    async def _write_status(self, st: ir.RouteStatus) -> StatusWrite:
        ref = st.route
        spec = ROUTE_KINDS.get(ref.kind)
        if spec is None:
            log.error(
                "status not written route=%s/%s/%s: kind unsupported",
                ref.kind,
                ref.namespace,
                ref.name,
            )
            return StatusWrite(route=ref, outcome="failed")
        path = spec.path(ref.namespace, ref.name)
        attempts = self._settings.status_attempts
        try:
            for attempt in range(1, attempts + 1):
                obj = await self._api.request("GET", path)
                meta = obj.get("metadata") or {}
                if int(meta.get("generation") or 1) > st.generation:
                    return StatusWrite(route=ref, outcome="stale")
                old = list((obj.get("status") or {}).get("parents") or [])
                now = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
                spec_refs = list((obj.get("spec") or {}).get("parentRefs") or [])
                new = merge_route_parents(
                    old, st, controller=self._controller, now=now, spec_refs=spec_refs
                )
                if new == old:
                    return StatusWrite(route=ref, outcome="unchanged")
                body = copy.deepcopy(obj)
                body.setdefault("status", {})["parents"] = new
                try:
                    await self._api.request("PUT", f"{path}/status", body=body)
                except KubernetesApiError as exc:
                    if exc.status != 409:
                        raise
                    log.info(
                        "status conflict route=%s/%s/%s; re-reading attempt #%d/%d",
                        ref.kind,
                        ref.namespace,
                        ref.name,
                        attempt + 1,
                        attempts,
                    )
                    continue
                log.info(
                    "status written route=%s/%s/%s parents=%d",
                    ref.kind,
                    ref.namespace,
                    ref.name,
                    len(st.parents),
                )
                return StatusWrite(route=ref, outcome="written")
            log.error(
                "status not written route=%s/%s/%s: %d conflicts",
                ref.kind,
                ref.namespace,
                ref.name,
                attempts,
            )
        except KubernetesApiError as exc:
            if exc.status == 404:
                return StatusWrite(route=ref, outcome="missing")
            log.error(
                "status not written route=%s/%s/%s: %s", ref.kind, ref.namespace, ref.name, exc
            )
        return StatusWrite(route=ref, outcome="failed")


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
        conds: list[Raw] = []
        for c in ps.conditions:
            p = prev_conds.get(c.type) or {}
            same = p.get("status") == c.status and p.get("reason") == c.reason
            conds.append(
                {
                    "type": c.type,
                    "status": c.status,
                    "reason": c.reason,
                    "message": c.message,
                    "observedGeneration": c.observed_generation,
                    "lastTransitionTime": p.get("lastTransitionTime", now) if same else now,
                }
            )
        ours.append({"parentRef": ref, "controllerName": ps.controller_name, "conditions": conds})
    return others + ours
