"""Kill the control plane (`mesh serve`, SIGKILL) under load and start it again on the same
port: clients keep their last table while it is down (zero failed requests or calls) and
resync when it is back (a route change made after the restart is applied).

```
load ──> proxy / grpcio ──> backends          (all the time; every failure counted)
           │ ADS
      mesh serve ── SIGKILL ── ~2 s down ── mesh serve (same port) ── route change ── applied?
```
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.server.test_proxyless_grpc import TARGET, grpc_route, mesh, split
from tests.engine.server.test_proxyless_grpc import Backend as GrpcBackend
from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import bounded
from tests.reliability.plane import (
    ROOT,
    Load,
    ServeProcess,
    route_yaml,
    running_proxy,
    services_yaml,
    until,
    write_atomic,
)
from turnout.engine.server import bootstrap_config

DOWN_S = 2.0


def identified(log: Path, node: str) -> int:
    """How many ADS streams of `node` the control plane logs have seen identified."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return sum(1 for line in text.splitlines() if "ads client identified" in line and node in line)


@pytest.fixture
async def http_backends() -> AsyncIterator[dict[str, Backend]]:
    out = {name: await Backend(name).start() for name in ("v1", "v2")}
    try:
        yield out
    finally:
        for b in out.values():
            await b.stop()


@bounded(45)
async def test_proxy_serves_through_a_control_plane_kill_and_resyncs_after_restart(
    tmp_path: Path, http_backends: dict[str, Backend]
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "services.yaml").write_text(services_yaml(http_backends))
    routes = conf / "routes.yaml"
    write_atomic(routes, route_yaml({"v1": 50, "v2": 50}))
    log = tmp_path / "serve.log"
    plane = await ServeProcess(conf, log).start()
    try:
        async with running_proxy(plane.port) as proxy:
            load = Load(proxy.port_of(proxy.servers[0]), workers=20)
            async with load.running():
                await until(lambda: load.sent >= 500, timeout_s=10, what="500 requests")
                before_kill, version = load.sent, proxy.version
                await plane.kill()
                await asyncio.sleep(DOWN_S)
                while_down = load.sent - before_kill
                restarted = time.monotonic()
                await plane.start()  # same port
                await until(
                    lambda: identified(log, "reliability") >= 2,
                    timeout_s=15,
                    what="the proxy's ADS stream on the restarted control plane",
                )
                reconnected = time.monotonic() - restarted
                load.mark()
                write_atomic(routes, route_yaml({"v1": 0, "v2": 100}))
                applied = await until(
                    lambda: proxy.version != version and load.settled_on("v2"),
                    timeout_s=10,
                    what="the route change made after the restart",
                )
                await until(lambda: load.settled_on("v2", canary=True), timeout_s=5, what="v2")
            assert load.failed == 0, load.errors
            assert while_down >= 100, while_down
    finally:
        await plane.kill()
    print(
        f"\nrestart/proxy: {load.sent} requests, {load.failed} failed, {while_down} while the"
        f" control plane was down ({DOWN_S:.0f} s); proxy reconnected {reconnected:.2f} s after"
        f" the restart, change applied in {applied:.2f} s"
    )


class LoopClient:
    """`tests.reliability.grpc_loop` in a subprocess."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"stats\n")
        async with asyncio.timeout(10):
            await self.proc.stdin.drain()
            line = await self.proc.stdout.readline()
        assert line, "grpc loop client exited"
        out: dict[str, Any] = json.loads(line)
        return out


@pytest.fixture
async def grpc_backends() -> AsyncIterator[dict[str, GrpcBackend]]:
    out = {name: GrpcBackend(name) for name in ("v1", "v2")}
    for b in out.values():
        await b.start()
    try:
        yield out
    finally:
        for b in out.values():
            await b.stop()


@bounded(45)
async def test_proxyless_grpc_keeps_calling_through_a_control_plane_kill_and_resyncs(
    tmp_path: Path, grpc_backends: dict[str, GrpcBackend]
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    routes = conf / "mesh.yaml"
    write_atomic(routes, mesh(grpc_backends, grpc_route(split(50, 50))))
    log = tmp_path / "serve.log"
    plane = await ServeProcess(conf, log).start()
    env = dict(os.environ)
    config = bootstrap_config(
        xds=f"127.0.0.1:{plane.port}", namespace="client-ns", workload="deployment/looper"
    )
    env["GRPC_XDS_BOOTSTRAP_CONFIG"] = json.dumps(config)
    env["PYTHONPATH"] = str(ROOT)
    client_log = tmp_path / "grpc-client.stderr"
    with client_log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.reliability.grpc_loop",
            TARGET,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=ROOT,
        )
    client = LoopClient(proc)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(25):
            assert (await proc.stdout.readline()).strip() == b"ready"
        await asyncio.sleep(0.5)
        before = await client.stats()
        assert set(before["ok"]) == {"v1", "v2"}, before
        await plane.kill()
        await asyncio.sleep(DOWN_S)
        during = await client.stats()
        restarted = time.monotonic()
        await plane.start()  # same port
        await until(
            lambda: identified(log, "looper") >= 2,
            timeout_s=20,
            what="the grpcio client's ADS stream on the restarted control plane",
            every_s=0.05,
        )
        reconnected = time.monotonic() - restarted
        write_atomic(routes, mesh(grpc_backends, grpc_route(split(0, 100))))
        changed = time.monotonic()
        async with asyncio.timeout(10):
            while set((stats := await client.stats())["recent"]) != {"v2"}:
                await asyncio.sleep(0.05)
        applied = time.monotonic() - changed
        await asyncio.sleep(0.3)
        after = await client.stats()
    finally:
        await plane.kill()
        if proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
    total = sum(after["ok"].values()) + sum(after["failed"].values())
    down_calls = sum(during["ok"].values()) - sum(before["ok"].values())
    assert after["failed"] == {}, (after, client_log.read_text(errors="replace")[-5000:])
    assert down_calls >= 50, (before, during)
    assert stats["recent"] and set(after["recent"]) == {"v2"}
    print(
        f"\nrestart/grpc: {total} calls, {sum(after['failed'].values())} failed, {down_calls}"
        f" while the control plane was down ({DOWN_S:.0f} s); grpcio reconnected"
        f" {reconnected:.2f} s after the restart, change applied in {applied:.2f} s"
    )
