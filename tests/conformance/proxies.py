"""Real `mesh proxy` processes for a case folder: one per Gateway port, one per mesh client.

```
mesh proxy -f DIR --gateway NS/NAME:PORT -n NS --outbound 127.0.0.1:0 --admin 127.0.0.1:0
mesh proxy -f DIR -n CLIENT_NS --service-listeners --outbound 127.0.0.1:0 --admin 127.0.0.1:0
```

A mesh proxy listens on each Service's cluster IP (its own manifests give the Services
addresses of their own on 127.0.0.0/8, as each client pod has its own network), and a mesh
request is sent to the Service's address, as a mesh client sends it: the address names the
destination, the Host header only chooses among its routes.

The proxy prints the ports it bound on its first stdout line; `start_proxy` reads them,
then polls the admin `/ready` until the table is in. Logs go to a file beside the manifests,
whose tail a failed start reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.conformance.cases import Via

ROOT = Path(__file__).resolve().parents[2]
_BOUND = re.compile(r"outbound 127\.0\.0\.1:(\d+).* admin 127\.0\.0\.1:(\d+)")
START_SECONDS = 30


class ProxyStartError(Exception):
    """A `mesh proxy` that exited or never became ready; the message holds its log tail."""


@dataclass
class RunningProxy:
    via: Via
    process: asyncio.subprocess.Process
    outbound: int
    admin: int
    log: Path
    addresses: Mapping[str, str] = field(default_factory=dict)
    """Mesh: Service ``NS/NAME`` -> its cluster IP in this proxy's manifests."""

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                await _kill(self.process)


def _args(via: Via, manifests: Path) -> list[str]:
    args = ["-f", str(manifests), "--outbound", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
    if via.kind == "Gateway":
        gateway = f"{via.namespace}/{via.name}:{via.port}"
        return [*args, "--gateway", gateway, "-n", via.namespace]
    return [*args, "-n", via.from_namespace or via.namespace, "--service-listeners"]


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.exists() else ""


async def start_proxy(
    via: Via, manifests: Path, log: Path, addresses: Mapping[str, str] | None = None
) -> RunningProxy:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "turnout.cli", "proxy", *_args(via, manifests)),
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            stdin=asyncio.subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group, killed whole (`_kill`)
        )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(START_SECONDS):
            line = (await proc.stdout.readline()).decode()
            m = _BOUND.search(line)
            if m is None:
                await proc.wait()
                raise ProxyStartError(
                    f"{via.key}: mesh proxy exited {proc.returncode}: {line}{_tail(log)}"
                )
            running = RunningProxy(
                via, proc, int(m.group(1)), int(m.group(2)), log, dict(addresses or {})
            )
            await _wait_ready(running)
            return running
    except TimeoutError:
        await _kill(proc)
        raise ProxyStartError(f"{via.key}: not ready in {START_SECONDS}s\n{_tail(log)}") from None
    except (Exception, asyncio.CancelledError):
        # another proxy of the folder failed (the TaskGroup cancels this one): no orphan
        await _kill(proc)
        raise


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the proxy's process group: the proxy and what it spawned (its compile worker
    holds the stdout pipe, and `wait` returns only once every holder is gone)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


async def _wait_ready(p: RunningProxy) -> None:
    url = f"http://127.0.0.1:{p.admin}/ready"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            if p.process.returncode is not None:
                raise ProxyStartError(f"{p.via.key}: mesh proxy exited\n{_tail(p.log)}")
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
