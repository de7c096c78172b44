"""Reliability harness: a real control plane, a real proxy, real backends and a load loop.

```
route files (tmp dir) ──watch──> control plane ──ADS──> proxy (start_proxy + XdsSource)
  write_atomic()                  InProcessPlane:  DirectorySource -> ControlPlane  │
                                                   -> AdsServer                      │
                                  ServeProcess:    `mesh serve` subprocess (SIGKILL) │
Load: N requester loops ──HTTP──> proxy outbound ──> Backend "v1" / "v2" / "v3" (aiohttp)
      every answer counted; anything but a 200 (or an exception) is a failure
```

Everything listens on 127.0.0.1; every wait is bounded (`until`, `asyncio.timeout`).
Route files are replaced atomically (write a dot-file, rename): a watcher must never see a
half-written file (see `write_atomic`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import service_yaml
from turnout.engine.plane import ControlPlane
from turnout.engine.server import AdsServer, ServerSettings
from turnout.engine.sources import DirectorySettings, DirectorySource
from turnout.proxy.process import Address, ProxyConfig, XdsSource
from turnout.proxy.runner import Proxy, start_proxy, stop_proxy
from turnout.proxy.xds_client import NodeInfo

ROOT = Path(__file__).resolve().parents[2]
NS = "shop"
HOST = "web"
"""The Service every request is addressed to (Host header)."""
CANARY = ("x-canary", "true")
"""The header of the optional header-match rule (routes to web-v3)."""
FAST_DIR = DirectorySettings(debounce_ms=20, watch_tick_ms=100, stop_timeout_ms=2_000)


async def until(
    check: Callable[[], bool], *, timeout_s: float, what: str, every_s: float = 0.02
) -> float:
    """Poll `check` until true; returns the seconds it took; `TimeoutError` naming `what`."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            while not check():
                await asyncio.sleep(every_s)
    except TimeoutError:
        raise TimeoutError(f"not within {timeout_s}s: {what}") from None
    return time.monotonic() - started


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` in one rename (the temporary name starts with "." so the directory
    source's filter ignores it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- manifests


def services_yaml(backends: Mapping[str, Backend]) -> str:
    """Service `web` (no endpoints: only routes send traffic) and `web-NAME` per backend."""
    docs = [service_yaml(HOST, [])]
    docs += [service_yaml(f"{HOST}-{name}", [b]) for name, b in backends.items()]
    return "\n---\n".join(docs)


def route_yaml(
    weights: Mapping[str, int], *, canary: bool = False, path_regex: str | None = None
) -> str:
    """HTTPRoute on `web`: a weighted rule over `web-NAME` (PathPrefix "/"); with `canary`,
    first a rule sending `x-canary: true` to `web-v3`; with `path_regex`, a rule matching
    that regular expression (to `web-v3`)."""
    refs = ", ".join(f"{{name: {HOST}-{n}, port: 80, weight: {w}}}" for n, w in weights.items())
    rules = ""
    if canary:
        rules += (
            "  - matches: [{path: {type: PathPrefix, value: /},"
            f" headers: [{{name: {CANARY[0]}, value: {CANARY[1]!r}}}]}}]\n"
            f"    backendRefs: [{{name: {HOST}-v3, port: 80}}]\n"
        )
    if path_regex is not None:
        rules += (
            f"  - matches: [{{path: {{type: RegularExpression, value: {path_regex!r}}}}}]\n"
            f"    backendRefs: [{{name: {HOST}-v3, port: 80}}]\n"
        )
    rules += f"  - matches: [{{path: {{type: PathPrefix, value: /}}}}]\n    backendRefs: [{refs}]\n"
    return (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
        f"metadata: {{name: {HOST}, namespace: {NS}}}\nspec:\n"
        f'  parentRefs: [{{group: "", kind: Service, name: {HOST}, port: 80}}]\n'
        f"  rules:\n{rules}"
    )


# --------------------------------------------------------------------------- control planes


@dataclass
class InProcessPlane:
    """`mesh serve` in this process: DirectorySource (fast debounce) -> ControlPlane ->
    AdsServer."""

    directory: Path
    port: int = 0
    server: AdsServer | None = None
    source: DirectorySource | None = None

    async def start(self) -> InProcessPlane:
        self.server = AdsServer(settings=ServerSettings(stop_grace_ms=0))
        self.port = await self.server.start("127.0.0.1", self.port)
        plane = ControlPlane(publish=self.server.publish)
        self.source = DirectorySource(self.directory, plane=plane, settings=FAST_DIR)
        await self.source.start()
        await self.source.wait_watching(timeout_ms=5_000)
        return self

    async def stop(self) -> None:
        if self.source is not None:
            await self.source.stop()
        if self.server is not None:
            await self.server.stop()

    @property
    def version(self) -> int:
        assert self.server is not None
        return self.server.version


@dataclass
class ServeProcess:
    """`mesh serve --dir DIR --xds 127.0.0.1:PORT --admin 127.0.0.1:0` as a real process,
    killed with SIGKILL; `env` and `preexec` (e.g. a memory limit) for the child, `extra`
    arguments (e.g. `--identity-dir CA`)."""

    directory: Path
    log: Path
    port: int = 0
    admin: int = 0
    """The admin port it bound (read from its output)."""
    env: Mapping[str, str] | None = None
    preexec: Callable[[], None] | None = None
    extra: tuple[str, ...] = ()
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> ServeProcess:
        code = "import sys; from turnout.cli.main import main; sys.exit(main(sys.argv[1:]))"
        argv = ["-v", "serve", "--dir", str(self.directory), "--xds", f"127.0.0.1:{self.port}"]
        argv += ["--admin", "127.0.0.1:0"]  # not the default port: a local `mesh serve` has it
        argv += self.extra
        with self.log.open("ab") as stderr:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                code,
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                cwd=ROOT,
                env=self.env,
                preexec_fn=self.preexec,
            )
        assert self.proc.stdout is not None
        async with asyncio.timeout(15):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                assert line, f"mesh serve exited: {self.log.read_text()[-2000:]}"
                if line.startswith("xds listening on"):
                    self.port = int(line.rsplit(":", 1)[1])
                if line.startswith("admin listening on"):
                    self.admin = int(line.rsplit(":", 1)[1])
                if line.startswith("serving"):
                    return self

    async def kill(self) -> None:
        """SIGKILL: no goodbye to the streams, the kernel resets the connections."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGKILL)
        async with asyncio.timeout(5):
            await proc.wait()


# --------------------------------------------------------------------------- proxy and load


@contextlib.asynccontextmanager
async def running_proxy(xds_port: int, *, gateway: str | None = None) -> AsyncIterator[Proxy]:
    """Our proxy (outbound listener; a Gateway's, ``NS/NAME:PORT``, when given) fed by
    `XdsSource`; yields once a table is applied."""
    config = ProxyConfig(
        namespace=NS,
        workload_name="client",
        outbound=Address(host="127.0.0.1", port=0),
        gateway=gateway,
    )
    node = NodeInfo(id=f"{NS}/client/reliability", cluster="client", namespace=NS, workload="c")
    proxy, task = await start_proxy(config, XdsSource(target=f"127.0.0.1:{xds_port}", node=node))
    try:
        await until(lambda: proxy.ready, timeout_s=10, what="the proxy's first table")
        yield proxy
    finally:
        await stop_proxy(proxy, task)


@dataclass
class Load:
    """`workers` requester loops through the proxy (every other one sends the canary header)
    until stopped. `failed` counts non-200 answers and exceptions (first few in `errors`)."""

    port: int
    workers: int = 20
    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    backends: Counter[tuple[bool, str]] = field(default_factory=Counter)
    """(canary header sent, x-backend) -> answers."""
    recent: dict[bool, deque[str]] = field(
        default_factory=lambda: {False: deque(maxlen=40), True: deque(maxlen=40)}
    )
    """The last backends answering, per canary flag."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _worker(self, session: aiohttp.ClientSession, canary: bool) -> None:
        url = f"http://127.0.0.1:{self.port}/echo"
        headers = {"Host": HOST} | (dict([CANARY]) if canary else {})
        while not self._stop.is_set():
            self.sent += 1
            try:
                async with session.get(url, headers=headers) as resp:
                    await resp.read()
                    status, backend = resp.status, resp.headers.get("x-backend", "")
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, backend = 0, f"{type(exc).__name__}: {exc}"
            if status != 200:
                self.failed += 1
                if len(self.errors) < 10:
                    self.errors.append(f"{status} {backend}")
                continue
            self.backends[(canary, backend)] += 1
            self.recent[canary].append(backend)

    def settled_on(self, backend: str, *, canary: bool = False) -> bool:
        """The last 40 answers (of that kind) all came from `backend`."""
        window = self.recent[canary]
        return len(window) == window.maxlen and set(window) == {backend}

    def mark(self) -> None:
        """Forget the recent answers (what follows is after a change)."""
        for window in self.recent.values():
            window.clear()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Load]:
        timeout = aiohttp.ClientTimeout(total=5, sock_connect=2)
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
        ) as session:
            self._tasks = [
                asyncio.create_task(self._worker(session, i % 2 == 1), name=f"load-{i}")
                for i in range(self.workers)
            ]
            try:
                yield self
            finally:
                self._stop.set()
                async with asyncio.timeout(10):
                    await asyncio.gather(*self._tasks)
