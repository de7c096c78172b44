"""The control plane: a source's snapshot -> compile off the loop -> last good -> publish -> status.

```
DirectorySource  ── DirectorySnapshot (the watched directory, its incremental compiler) ─┐
KubernetesSource ── ResourceSnapshot (parsed objects, route status written back) ───────┤
                                                                                        v
ControlPlane.apply(snapshot)      one at a time, in the order they come
   asyncio.to_thread(snapshot.compile) ─ raises ─> log, keep serving the last good table,
        │ CompiledInputs(result, diagnostics, rejected)      status.error, a rejected change
        v
   publish(table, policy) -> version (AdsServer.publish: equal tables are not a new version)
   snapshot.write_status(result)     (Kubernetes: route and Gateway status; a directory: none)
   status: PlaneStatus               what /debug/diagnostics and `mesh routes` show
   metrics: PlaneMetrics             versions, changes, rejected changes, compile seconds
```

Both sources take this one path. What a source rejects is per input, as the API server
rejects one bad object and accepts the rest: a file (or object) with errors is `Rejected`
by the compile, with its errors, and every other input is published. A change is applied in
full when nothing was rejected; `last_good_version` is the version of the last such change.
A compile that fails outright (an unreadable directory, a bug) publishes nothing.

Deliberately not here: watching (`engine.sources`), serving xDS (`engine.server`), HTTP
(`engine.server.admin`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from turnout.engine.compile import DEFAULT_COMPILE_OPTIONS, CompileOptions, CompileResult
from turnout.engine.diagnostics import Diagnostic, Severity
from turnout.engine.errors import MeshError
from turnout.engine.ir import RouteTable
from turnout.engine.ir_policy import PolicyTable
from turnout.engine.memory import release_memory
from turnout.engine.metrics import Counter, Family, Gauge, Histogram
from turnout.engine.model import Resources
from turnout.engine.pipeline import CompiledInputs, Rejected, compile_snapshot

log = logging.getLogger(__name__)

Publish = Callable[[RouteTable, PolicyTable | None], int]
"""Hands a table and its authorization policy to the xDS server; returns the version they
got (`AdsServer.publish`)."""

WriteStatus = Callable[[CompileResult], Awaitable[object]]


class Snapshot(Protocol):
    """What a source hands the control plane: something to compile, and where status goes."""

    @property
    def origin(self) -> str:
        """For logs: ``directory DIR``, ``kubernetes``."""
        ...

    def compile(self) -> CompiledInputs:
        """Load, validate and compile (blocking: the control plane calls it in a thread)."""
        ...

    async def write_status(self, result: CompileResult) -> None:
        """After a publish: route and Gateway status back to where the objects came from."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceSnapshot:
    """Objects already parsed (the Kubernetes source's snapshot)."""

    resources: Resources
    diagnostics: tuple[Diagnostic, ...] = ()
    origin: str = "kubernetes"
    writer: WriteStatus | None = None
    options: CompileOptions = DEFAULT_COMPILE_OPTIONS
    """How to compile (the Kubernetes source: `complete_inputs`, the cluster is all there is)."""

    def compile(self) -> CompiledInputs:
        return compile_snapshot(self.resources, self.diagnostics, options=self.options)

    async def write_status(self, result: CompileResult) -> None:
        if self.writer is not None:
            await self.writer(result)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaneStatus:
    """What the admin endpoints and `mesh routes` show."""

    changes: int = 0
    """Snapshots taken (the first one included), applied or not."""
    version: int | None = None
    """Version `publish` gave the table being served; None = no table yet."""
    result: CompileResult | None = None
    """The compile being served; None = none yet."""
    policy: PolicyTable | None = None
    """The authorization policy being served with it; None = none yet."""
    diagnostics: tuple[Diagnostic, ...] = ()
    """Diagnostics of the last change's compiled inputs (warnings, infos); () if it failed."""
    rejected: tuple[Rejected, ...] = ()
    """What the last change held back, each with why (see `Rejected.kept`)."""
    error: str | None = None
    """Why the last change failed outright (nothing published); None = it did not."""
    last_good_version: int | None = None
    """Version of the last change applied in full (nothing rejected); None = none yet."""
    changed_at: float | None = None
    """Wall-clock time (seconds since the epoch) of the last change; None = never."""

    @property
    def applied(self) -> bool:
        """The last change was applied in full."""
        return self.changes > 0 and self.error is None and not self.rejected


@dataclass(slots=True)
class PlaneMetrics:
    """Counted where the compiles happen; the versions are read at scrape time."""

    changes: Counter = field(
        default_factory=lambda: Counter(
            "turnout_control_plane_changes_total", "Source snapshots taken (applied or not)."
        )
    )
    rejected: Counter = field(
        default_factory=lambda: Counter(
            "turnout_control_plane_rejected_changes_total",
            "Changes that held back an input (a file or object with errors) or failed outright.",
        )
    )
    compile_seconds: Histogram = field(
        default_factory=lambda: Histogram(
            "turnout_control_plane_compile_duration_seconds",
            "Load, validate and compile of one change, off the event loop.",
        )
    )

    def families(self, status: PlaneStatus) -> list[Family]:
        return [
            Gauge(
                "turnout_control_plane_table_version",
                "Version of the table being served (0 = none yet).",
                samples={(): status.version or 0},
            ),
            Gauge(
                "turnout_control_plane_last_good_version",
                "Version of the last change applied in full, nothing rejected (0 = none yet).",
                samples={(): status.last_good_version or 0},
            ),
            Gauge(
                "turnout_control_plane_rejected_inputs",
                "Files or objects the last change held back (each keeps its last good "
                "version or is left out).",
                samples={(): len(status.rejected)},
            ),
            self.changes,
            self.rejected,
            self.compile_seconds,
        ]


class ControlPlane:
    """Takes snapshots from a source, compiles them off the loop and publishes the tables."""

    def __init__(self, *, publish: Publish, clock: Callable[[], float] = time.time) -> None:
        self._publish = publish
        self._clock = clock
        self._lock = asyncio.Lock()
        self._status = PlaneStatus()
        self.metrics = PlaneMetrics()
        self._logged: frozenset[str] = frozenset()
        """The findings the last change logged: a change logs only the new ones."""

    @property
    def status(self) -> PlaneStatus:
        return self._status

    @property
    def table(self) -> RouteTable | None:
        """The table being served; None until one was published."""
        result = self._status.result
        return None if result is None else result.table

    async def apply(self, snapshot: Snapshot) -> bool:
        """Compile `snapshot` and publish its table; True when one was published."""
        async with self._lock:  # applied in order, one at a time
            return await self._apply(snapshot)

    async def _apply(self, snapshot: Snapshot) -> bool:
        prev = self._status
        self.metrics.changes.inc()
        started = time.monotonic()
        try:
            compiled = await asyncio.to_thread(_compile, snapshot)
        except (MeshError, OSError) as exc:
            return self._failed(snapshot, f"{type(exc).__name__}: {exc}", level=logging.WARNING)
        except Exception as exc:  # a bug: keep serving the last good table (STYLE §4)
            log.error("compile crashed origin=%s", snapshot.origin, exc_info=True)
            return self._failed(snapshot, f"internal error: {exc!r}", level=logging.ERROR)
        finally:
            self.metrics.compile_seconds.observe(time.monotonic() - started)
        elapsed_ms = int((time.monotonic() - started) * 1000)
        self._logged = _log_findings(compiled.diagnostics, compiled.rejected, self._logged)
        policy = None if compiled.policy is None else compiled.policy.table
        version = self._publish(compiled.result.table, policy)
        full = not compiled.rejected
        if not full:
            self.metrics.rejected.inc()
        self._status = PlaneStatus(
            changes=prev.changes + 1,
            version=version,
            result=compiled.result,
            policy=policy,
            diagnostics=compiled.diagnostics,
            rejected=compiled.rejected,
            last_good_version=version if full else prev.last_good_version,
            changed_at=self._clock(),
        )
        log.info(
            "change applied version=%d parents=%d rejected=%d elapsed_ms=%d origin=%s",
            version,
            len(compiled.result.table.parents),
            len(compiled.rejected),
            elapsed_ms,
            snapshot.origin,
        )
        try:
            await snapshot.write_status(compiled.result)
        except Exception:
            log.error("status write-back failed origin=%s", snapshot.origin, exc_info=True)
        return True

    def _failed(self, snapshot: Snapshot, error: str, *, level: int) -> bool:
        prev = self._status
        self.metrics.rejected.inc()
        log.log(
            level,
            "change not applied, keeping the last good table version=%s origin=%s error=%s",
            prev.version,
            snapshot.origin,
            error,
        )
        self._status = PlaneStatus(
            changes=prev.changes + 1,
            version=prev.version,
            result=prev.result,
            policy=prev.policy,
            error=error,
            last_good_version=prev.last_good_version,
            changed_at=self._clock(),
        )
        return False


def _compile(snapshot: Snapshot) -> CompiledInputs:
    """`snapshot.compile()`, then the heap the compile freed goes back to the OS."""
    try:
        return snapshot.compile()
    finally:
        release_memory()


def _log_findings(
    diagnostics: Sequence[Diagnostic], rejected: Sequence[Rejected], before: frozenset[str]
) -> frozenset[str]:
    """Each warning (`file[doc] path: message (Reason)`) when it appears or changes, not
    again while it holds: a Kubernetes snapshot holds every object's findings, and one
    object's change must not log all the others' again. Returns what this change found."""
    lines: list[str] = []
    for d in diagnostics:
        if d.severity is not Severity.INFO:
            lines.append(f"manifest {d.severity.value}: {d}")
    for r in rejected:
        kept = "keeping its last good version" if r.kept else "left out"
        lines.append(f"input rejected, {kept} file={r.file} errors={len(r.diagnostics)}")
        lines.extend(f"manifest {d.severity.value}: {d}" for d in r.diagnostics)
    for line in lines:
        if line not in before:
            log.warning("%s", line)
    return frozenset(lines)
