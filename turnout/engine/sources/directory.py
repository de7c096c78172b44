"""`DirectorySource`: a watched directory of manifests -> compiled tables -> `publish`.

```
start() ── initial load ─────────────────────────────────┐
awatch(directory, debounce) ── changes to *.yaml/yml/json ┤
                                                          v
        asyncio.to_thread(compile_files([directory]))   load + validate + compile, off the loop
                  │ LoadError / OSError / a bug ──> log, keep the last good table
                  │ error diagnostics            ──> log each `file[doc] path: message (Reason)`
                  │                                  at warning level, keep the last good table
                  v ok (warnings logged too)
        publish(table) -> version                     the ADS server dedups equal tables
        status: last diagnostics, last good version/table, last error
```

An invalid change is never applied, not even in part: the whole directory is one input, as
`mesh validate -f DIR` sees it, and one error anywhere keeps the previous table. Loads are
serialized (one at a time); a change during a load is picked up by the next batch of events.

Deliberately not here: Kubernetes (`k8s/`), status write-back, serving anything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import watchfiles

from turnout.engine.compile import CompileResult
from turnout.engine.diagnostics import Diagnostic, Severity, has_errors
from turnout.engine.errors import MeshError, SourceError
from turnout.engine.ir import RouteTable
from turnout.engine.model.loader import expand_paths
from turnout.engine.pipeline import CompiledInputs, IncrementalCompiler

log = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
"""Files whose changes trigger a reload."""

DEFAULT_DEBOUNCE_MS = 100
"""At most this long is spent grouping changes into one reload (an editor's save is several
events); a lone write is picked up after a 10 ms quiet step."""

DEFAULT_WATCH_TICK_MS = 500
"""The watch thread wakes this often without changes (how soon `stop` and `wait_watching`
see it)."""

DEFAULT_STOP_TIMEOUT_MS = 5_000
"""`stop()`: upper bound on waiting for the watch task to end."""

Publish = Callable[[RouteTable], int]
"""Hands a good table to the server; returns the version it got (`AdsServer.publish`)."""

Compiler = Callable[[Sequence[Path]], CompiledInputs]
"""The load + validate + compile step (`compile_files`); a seam for tests."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectorySettings:
    debounce_ms: int = DEFAULT_DEBOUNCE_MS
    watch_tick_ms: int = DEFAULT_WATCH_TICK_MS
    stop_timeout_ms: int = DEFAULT_STOP_TIMEOUT_MS
    force_polling: bool = False
    """Poll instead of using OS notifications (network filesystems, some containers)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceStatus:
    """What the admin endpoints show."""

    loads: int
    """Loads attempted (the initial one included)."""
    good_version: int | None
    """Version `publish` gave the last good table; None = no good table yet."""
    result: CompileResult | None
    """The last good compile (its table is the one served); None = none yet."""
    diagnostics: tuple[Diagnostic, ...]
    """Diagnostics of the last load, good or not."""
    applied: bool
    """Whether the last load was applied (False: it had errors or failed)."""
    error: str | None
    """Why the last load failed outright (unreadable file, internal error); None = it did not."""
    loaded_at: float | None
    """Wall-clock time (seconds since the epoch) of the last load; None = never."""


Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(directory: Path) -> Fingerprint:
    """The manifest files a load reads (`expand_paths`), each with its mtime and size."""
    if not directory.is_dir():
        return ()
    out = []
    for name in expand_paths([str(directory)]):
        try:
            st = os.stat(name)
        except OSError:  # gone meanwhile: the watch reports it
            continue
        out.append((name, st.st_mtime_ns, st.st_size))
    return tuple(out)


def is_manifest(change: watchfiles.Change, path: str) -> bool:
    """The watch filter: manifest files only (editors' swap and backup files are ignored)."""
    name = Path(path).name
    return name.endswith(MANIFEST_SUFFIXES) and not name.startswith((".", "#"))


class DirectorySource:
    """Compiles `directory` at start and on every change, and publishes good tables."""

    def __init__(
        self,
        directory: Path | str,
        *,
        publish: Publish,
        settings: DirectorySettings | None = None,
        compiler: Compiler | None = None,
    ) -> None:
        self.directory = Path(directory)
        self._publish = publish
        self._settings = settings or DirectorySettings()
        self._compile = compiler if compiler is not None else IncrementalCompiler()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._watching = asyncio.Event()
        self._stop_watch = asyncio.Event()
        self._loaded: Fingerprint = ()
        """The manifests on disk as the last load found them (`fingerprint`)."""
        self._status = SourceStatus(
            loads=0,
            good_version=None,
            result=None,
            diagnostics=(),
            applied=False,
            error=None,
            loaded_at=None,
        )

    @property
    def status(self) -> SourceStatus:
        return self._status

    @property
    def table(self) -> RouteTable | None:
        """The last good table; None until one loaded."""
        result = self._status.result
        return None if result is None else result.table

    # ---- lifecycle

    async def start(self) -> None:
        """Load once (a bad directory is logged, not raised), then watch in the background."""
        if self._task is not None:
            raise RuntimeError("directory source already started")
        if not self.directory.is_dir():
            raise SourceError(f"not a directory: {self.directory}")
        await self.load()
        self._task = asyncio.create_task(
            self._guarded_watch(), name=f"directory-source {self.directory}"
        )

    async def wait_watching(self, *, timeout_ms: int) -> None:
        """Until the OS watch is set up (changes made before may be missed)."""
        async with asyncio.timeout(timeout_ms / 1000):
            await self._watching.wait()

    async def stop(self) -> None:
        """Cancel the watch task and wait for it (bounded); idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop_watch.set()  # the watch thread checks it every step; cancel alone waits
        task.cancel()
        _, running = await asyncio.wait({task}, timeout=self._settings.stop_timeout_ms / 1000)
        if running:
            log.error("directory source did not stop in time directory=%s", self.directory)

    async def _guarded_watch(self) -> None:
        try:
            await self._watch()
        except asyncio.CancelledError:
            log.info("directory source stopped directory=%s", self.directory)
            raise
        except Exception:
            log.error("directory source crashed directory=%s", self.directory, exc_info=True)
        else:
            log.error("directory source exited unexpectedly directory=%s", self.directory)

    async def _watch(self) -> None:
        s = self._settings
        log.info("watching manifests directory=%s", self.directory)
        watcher = watchfiles.awatch(
            self.directory,
            watch_filter=is_manifest,
            debounce=s.debounce_ms,
            step=min(10, s.debounce_ms),
            force_polling=s.force_polling,
            poll_delay_ms=100,
            yield_on_timeout=True,
            rust_timeout=s.watch_tick_ms,
            stop_event=self._stop_watch,
        )
        async for changes in watcher:
            if not self._watching.is_set():
                # any yield (the first tick at the latest): the watch is on. A change made
                # between the first load and now was not seen by it: load again then.
                self._watching.set()
                now = await asyncio.to_thread(fingerprint, self.directory)
                if not changes and now != self._loaded:
                    log.info("manifests changed before the watch started, reloading")
                    await self.load()
                    continue
            if not changes:
                continue
            names = sorted({Path(p).name for _, p in changes})
            log.info("manifests changed files=%s", ",".join(names))
            await self.load()

    # ---- one load

    async def load(self) -> bool:
        """Compile the directory and publish it if it has no errors; True when applied."""
        async with self._lock:
            return await self._load()

    async def _load(self) -> bool:
        started = time.monotonic()
        prev = self._status
        try:
            self._loaded = await asyncio.to_thread(fingerprint, self.directory)
            compiled = await asyncio.to_thread(self._compile, [self.directory])
        except (MeshError, OSError) as exc:
            return self._failed(f"{type(exc).__name__}: {exc}", level=logging.WARNING)
        except Exception as exc:  # a bug: keep serving the last good table (STYLE §4)
            log.error("manifests load crashed directory=%s", self.directory, exc_info=True)
            return self._failed(f"internal error: {exc!r}", level=logging.ERROR)
        diags = compiled.diagnostics
        for d in diags:
            if d.severity is not Severity.INFO:
                log.warning("manifest %s: %s", d.severity.value, d)
        elapsed_ms = int((time.monotonic() - started) * 1000)
        if has_errors(diags):
            errors = sum(d.severity is Severity.ERROR for d in diags)
            log.warning(
                "manifests rejected, keeping the last good table errors=%d version=%s directory=%s",
                errors,
                prev.good_version,
                self.directory,
            )
            self._status = _replace(prev, diagnostics=diags, applied=False, error=None)
            return False
        version = self._publish(compiled.result.table)
        log.info(
            "manifests applied version=%d parents=%d elapsed_ms=%d directory=%s",
            version,
            len(compiled.result.table.parents),
            elapsed_ms,
            self.directory,
        )
        self._status = _replace(
            prev,
            good_version=version,
            result=compiled.result,
            diagnostics=diags,
            applied=True,
            error=None,
        )
        return True

    def _failed(self, error: str, *, level: int) -> bool:
        prev = self._status
        log.log(
            level,
            "manifests not loaded, keeping the last good table version=%s error=%s",
            prev.good_version,
            error,
        )
        self._status = _replace(prev, diagnostics=(), applied=False, error=error)
        return False


def _replace(
    prev: SourceStatus,
    *,
    diagnostics: tuple[Diagnostic, ...],
    applied: bool,
    error: str | None,
    good_version: int | None = None,
    result: CompileResult | None = None,
) -> SourceStatus:
    return SourceStatus(
        loads=prev.loads + 1,
        good_version=prev.good_version if good_version is None else good_version,
        result=prev.result if result is None else result,
        diagnostics=diagnostics,
        applied=applied,
        error=error,
        loaded_at=time.time(),
    )
