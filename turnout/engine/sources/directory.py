"""`DirectorySource`: a watched directory of manifests -> snapshots -> the control plane.

```
start() ── initial load ─────────────────────────────────┐
awatch(directory, debounce) ── changes to *.yaml/yml/json ┤
                                                          v
        plane.apply(DirectorySnapshot)    the control plane compiles it off the loop
              │ IncrementalCompiler([directory]): unchanged files reuse their validated
              │ objects; a file with errors keeps its last good version (or is left out
              │ if it never was good) and every other file is applied
              v
        publish(table) -> version, status, metrics   (engine.plane.ControlPlane)
```

A bad file costs that file, not the directory, as the API server rejects one bad object and
accepts the rest; the rejected file and why are in the control plane's status. Loads are
serialized (one at a time); a change during a load is picked up by the next batch of events.

Deliberately not here: compiling, publishing and status (`engine.plane`), Kubernetes
(`k8s/`), serving anything.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import watchfiles

from turnout.engine.compile import CompileResult
from turnout.engine.errors import MeshError, SourceError
from turnout.engine.ir import RouteTable
from turnout.engine.model.loader import expand_paths
from turnout.engine.pipeline import CompiledInputs, IncrementalCompiler
from turnout.engine.plane import ControlPlane, PlaneStatus

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

Compiler = Callable[[Sequence[Path]], CompiledInputs]
"""The load + validate + compile step (`compile_files`); a seam for tests."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectorySettings:
    debounce_ms: int = DEFAULT_DEBOUNCE_MS
    watch_tick_ms: int = DEFAULT_WATCH_TICK_MS
    stop_timeout_ms: int = DEFAULT_STOP_TIMEOUT_MS
    force_polling: bool = False
    """Poll instead of using OS notifications (network filesystems, some containers)."""


@dataclass(frozen=True, slots=True)
class DirectorySnapshot:
    """The directory as it is now, compiled (in the control plane's thread) by `compiler`."""

    directory: Path
    compiler: Compiler

    @property
    def origin(self) -> str:
        return f"directory {self.directory}"

    def compile(self) -> CompiledInputs:
        return self.compiler([self.directory])

    async def write_status(self, result: CompileResult) -> None:
        """Files have no status to write back."""


Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(directory: Path) -> Fingerprint:
    """The manifest files a load reads (`expand_paths`), each with its mtime and size."""
    if not directory.is_dir():
        return ()
    out = []
    try:
        names = expand_paths([str(directory)])
    except MeshError:  # the directory went away meanwhile: the load reports it
        return ()
    for name in names:
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
    """Hands `directory` to `plane` at start and on every change."""

    def __init__(
        self,
        directory: Path | str,
        *,
        plane: ControlPlane,
        settings: DirectorySettings | None = None,
        compiler: Compiler | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.plane = plane
        self._settings = settings or DirectorySettings()
        self._compile = compiler if compiler is not None else IncrementalCompiler()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._watching = asyncio.Event()
        self._stop_watch = asyncio.Event()
        self._loaded: Fingerprint = ()
        """The manifests on disk as the last load found them (`fingerprint`)."""

    @property
    def status(self) -> PlaneStatus:
        """The control plane's status (what the last load did)."""
        return self.plane.status

    @property
    def table(self) -> RouteTable | None:
        """The table being served; None until one loaded."""
        return self.plane.table

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
        """Hand the directory to the control plane; True when a table was published."""
        async with self._lock:
            self._loaded = await asyncio.to_thread(fingerprint, self.directory)
            return await self.plane.apply(DirectorySnapshot(self.directory, self._compile))
