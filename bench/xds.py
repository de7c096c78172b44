"""xDS push latency: route file change -> every client ACKed; and a 10k-route recompile.

```
write routes.yaml ─(t0)─> watchfiles (debounce) ─(t1)─> compile_files ─(t2)─> publish ─(t3)
   ─> AdsServer: translate the view once, write RDS on 100 streams ─> 100 clients ACK ─(t4)
```

Part 1: one `AdsServer` + `DirectorySource` in this process; 100 ADS clients in 2 subprocesses
(50 each, one channel = one HTTP/2 connection per client, all in namespace `bench`):
- `raw`: bare ADS streams that subscribe like our proxy (LDS/CDS wildcard, then RDS/EDS by
  name) and ACK every response at once without decoding it: the control plane's fan-out;
- `client`: `turnout.proxy.xds_client.XdsClient` instances, which build a `RuntimeTable` per
  update before they ACK: what real proxies would see (50 table builds share one process).
t4 is when the server's stream status shows all 100 RDS ACKs of the new version (polled every
ms). Each of ~20 changes flips a route's weights. Printed: p50/p99 of t4 - t0 and of its parts:
watch (t1 - t0: watchfiles' debounce and notification), compile (t2 - t1), push (t4 - t3).

Part 3 (`bench/xds_delta.py`): delta xDS, one route changed among 10,000 -> 1,000 delta
clients (routes spread over 1,000 Services) and -> 100 (all on one Service).

Part 2: 10,000 HTTPRoutes in 100 files; the directory source's full load (compile + publish)
versus the reload after one route changed. The source recompiles the whole directory on any
change (no incremental compile), so the ratio is expected near 1.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from bench.results import add_no_store
from bench.synth import route, service
from bench.xds_delta import main as delta_main
from turnout.engine.ir import RouteTable
from turnout.engine.ir_policy import PolicyTable
from turnout.engine.pipeline import CompiledInputs, IncrementalCompiler
from turnout.engine.plane import ControlPlane
from turnout.engine.server import AdsServer, ServerSettings
from turnout.engine.sources import DirectorySettings, DirectorySource
from turnout.proxy.xds_client import NodeInfo, XdsClient, XdsSettings
from turnout.proxy.xds_resources import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    LOAD_ASSIGNMENT_TYPE,
    ROUTE_CONFIGURATION_TYPE,
    rds_names,
)

CLIENTS = 100
PROCESSES = 2
CHANGES = 20
BIG = 10_000
BIG_FILES = 100
NS = "bench"
GOAL_P99_MS = 100.0
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- clients (subprocess)


async def raw_stream(target: str, i: int, ready: asyncio.Queue[int]) -> None:
    """One ADS stream subscribing like our proxy and ACKing every response undecoded (only
    LDS and CDS are decoded, for the RDS and EDS names)."""
    async with grpc.aio.insecure_channel(
        target, options=[("grpc.use_local_subchannel_pool", 1)]
    ) as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        node = base_pb2.Node(id=f"bench-raw-{i}", cluster="bench")
        node.metadata.update({"namespace": NS, "workload": f"deployment/raw-{i}"})
        await call.write(discovery_pb2.DiscoveryRequest(node=node, type_url=LISTENER_TYPE))
        await call.write(discovery_pb2.DiscoveryRequest(type_url=CLUSTER_TYPE))
        names: dict[str, list[str]] = {}
        first = True
        while (resp := await call.read()) is not grpc.aio.EOF:
            url = resp.type_url
            ack = discovery_pb2.DiscoveryRequest(
                type_url=url,
                version_info=resp.version_info,
                response_nonce=resp.nonce,
                resource_names=names.get(url, []),
            )
            await call.write(ack)
            wanted: tuple[str, list[str]] | None = None
            if url == LISTENER_TYPE:
                rds: set[str] = set()
                for packed in resp.resources:
                    lst = listener_pb2.Listener()
                    packed.Unpack(lst)
                    rds |= rds_names(lst)
                wanted = (ROUTE_CONFIGURATION_TYPE, sorted(rds))
            elif url == CLUSTER_TYPE:
                clusters = []
                for packed in resp.resources:
                    c = cluster_pb2.Cluster()
                    packed.Unpack(c)
                    clusters.append(c.name)
                wanted = (LOAD_ASSIGNMENT_TYPE, sorted(clusters))
            if wanted is not None and names.get(wanted[0]) != wanted[1]:
                names[wanted[0]] = wanted[1]
                await call.write(
                    discovery_pb2.DiscoveryRequest(type_url=wanted[0], resource_names=wanted[1])
                )
            if url == ROUTE_CONFIGURATION_TYPE and first:
                first = False
                ready.put_nowait(i)


async def run_clients(mode: str, target: str, first: int, count: int) -> None:
    ready: asyncio.Queue[int] = asyncio.Queue()
    tasks: list[asyncio.Task[None]] = []
    clients: list[XdsClient] = []
    settings = XdsSettings(backoff_base_ms=50, backoff_max_ms=500)
    for i in range(first, first + count):
        if mode == "raw":
            tasks.append(asyncio.create_task(raw_stream(target, i, ready), name=f"raw-{i}"))
        else:
            node = NodeInfo(id=f"bench-client-{i}", cluster="bench", namespace=NS, workload="w")
            client = XdsClient(target, node=node, on_table=lambda t, v: None, settings=settings)
            client.start()
            clients.append(client)
    async with asyncio.timeout(60):
        if mode == "raw":
            for _ in range(count):
                await ready.get()
        else:
            for client in clients:
                await client.wait_ready(timeout_ms=60_000)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until EOF
    for task in tasks:
        task.cancel()
    for client in clients:
        await client.stop()
    await asyncio.gather(*tasks, return_exceptions=True)


# --------------------------------------------------------------------------- control plane side


@dataclass
class Timeline:
    """perf_counter times of one reload, filled in by the compiler and publish wrappers."""

    compile_start: float = 0.0
    compile_end: float = 0.0
    published: float = 0.0
    version: int = 0
    versions: asyncio.Queue[int] = field(default_factory=asyncio.Queue)


def mesh_docs(weight: int) -> str:
    docs: list[dict[str, object]] = [service(NS, n) for n in ("web", "v1", "v2")]
    docs.append(route(NS, 0))
    spec: Any = docs[-1]["spec"]
    refs = spec["rules"][0]["backendRefs"]
    refs[0]["weight"], refs[1]["weight"] = weight, 100 - weight
    return yaml.safe_dump_all(docs)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def all_acked(server: AdsServer, version: int) -> bool:
    streams = server.status().streams
    want = str(version)
    return len(streams) >= CLIENTS and all(s.acked.get("RDS") == want for s in streams)


async def push_latency(mode: str, debounce_ms: int) -> None:
    timeline = Timeline()

    incremental = IncrementalCompiler()  # what DirectorySource uses by default

    def compiler(paths: Sequence[Path]) -> CompiledInputs:
        timeline.compile_start = time.perf_counter()
        out = incremental(paths)
        timeline.compile_end = time.perf_counter()
        return out

    server = AdsServer(settings=ServerSettings(stop_grace_ms=0))

    def publish(table: RouteTable, policy: PolicyTable | None = None) -> int:
        timeline.published = time.perf_counter()
        version = server.publish(table, policy)
        timeline.versions.put_nowait(version)
        return version

    with tempfile.TemporaryDirectory() as tmp:
        routes = Path(tmp) / "mesh.yaml"
        write_atomic(routes, mesh_docs(50))
        port = await server.start("127.0.0.1", 0)
        source = DirectorySource(
            tmp,
            plane=ControlPlane(publish=publish),
            compiler=compiler,
            settings=DirectorySettings(debounce_ms=debounce_ms, watch_tick_ms=100),
        )
        await source.start()
        await source.wait_watching(timeout_ms=10_000)
        await timeline.versions.get()
        per = CLIENTS // PROCESSES
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.xds",
                "--clients",
                mode,
                f"127.0.0.1:{port}",
                str(p * per),
                str(per),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=ROOT,
            )
            for p in range(PROCESSES)
        ]
        try:
            for proc in procs:
                assert proc.stdout is not None
                async with asyncio.timeout(90):
                    line = await proc.stdout.readline()
                assert line.strip() == b"ready", line
            async with asyncio.timeout(30):
                while not all_acked(server, server.version):
                    await asyncio.sleep(0.01)
            total, watch, comp, push = [], [], [], []
            for i in range(CHANGES):
                await asyncio.sleep(0.2)  # let the last change settle (and the watcher rest)
                t0 = time.perf_counter()
                write_atomic(routes, mesh_docs(10 + (i % 2) * 80 + i % 7))
                async with asyncio.timeout(10):
                    version = await timeline.versions.get()
                    while not all_acked(server, version):
                        await asyncio.sleep(0.001)
                t4 = time.perf_counter()
                total.append((t4 - t0) * 1000)
                watch.append((timeline.compile_start - t0) * 1000)
                comp.append((timeline.compile_end - timeline.compile_start) * 1000)
                push.append((t4 - timeline.published) * 1000)
        finally:
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.close()
            for proc in procs:
                try:
                    async with asyncio.timeout(15):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            await source.stop()
            await server.stop()
    verdict = "ok" if pct(total, 99) < GOAL_P99_MS else "OVER GOAL"
    print(
        f"  {mode:6s} debounce {debounce_ms:3d} ms: write -> {CLIENTS} ACKed"
        f"  p50 {pct(total, 50):6.1f} ms  p99 {pct(total, 99):6.1f} ms  ({verdict})"
    )
    for name, values in (("watch", watch), ("compile", comp), ("push+ACK", push)):
        print(
            f"      {name:9s} p50 {pct(values, 50):6.1f} ms  p99 {pct(values, 99):6.1f} ms"
            f"  mean {statistics.fmean(values):6.1f} ms"
        )


# --------------------------------------------------------------------------- 10k recompile


def big_files(directory: Path) -> list[Path]:
    docs: list[dict[str, object]] = [service(NS, n) for n in ("web", "v1", "v2")]
    (directory / "services.yaml").write_text(yaml.safe_dump_all(docs))
    per = BIG // BIG_FILES
    paths = []
    for f in range(BIG_FILES):
        path = directory / f"routes-{f:03d}.yaml"
        path.write_text(yaml.safe_dump_all([route(NS, i) for i in range(f * per, (f + 1) * per)]))
        paths.append(path)
    return paths


async def recompile() -> None:
    timeline = Timeline()

    incremental = IncrementalCompiler()  # what DirectorySource uses by default

    def compiler(paths: Sequence[Path]) -> CompiledInputs:
        timeline.compile_start = time.perf_counter()
        out = incremental(paths)
        timeline.compile_end = time.perf_counter()
        return out

    server = AdsServer()
    publish_ms: list[float] = []

    def publish(table: RouteTable, policy: PolicyTable | None = None) -> int:
        timeline.published = time.perf_counter()
        version = server.publish(table, policy)
        publish_ms.append((time.perf_counter() - timeline.published) * 1000)
        timeline.versions.put_nowait(version)
        return version

    with tempfile.TemporaryDirectory() as tmp:
        paths = big_files(Path(tmp))
        source = DirectorySource(
            tmp,
            plane=ControlPlane(publish=publish),
            compiler=compiler,
            settings=DirectorySettings(debounce_ms=50),
        )
        started = time.perf_counter()
        await source.start()  # the initial full load
        full = (time.perf_counter() - started) * 1000
        full_compile = (timeline.compile_end - timeline.compile_start) * 1000
        await timeline.versions.get()
        first = server._current
        assert first is not None
        f0 = time.perf_counter()
        await first.built(NS)  # the first client's view: every parent translated
        full_view_ms = (time.perf_counter() - f0) * 1000
        await source.wait_watching(timeout_ms=30_000)
        one = route(NS, 17)
        spec: Any = one["spec"]
        spec["rules"][0]["backendRefs"][0]["weight"] = 42
        rest = [route(NS, i) for i in range(BIG // BIG_FILES) if i != 17]
        t0 = time.perf_counter()
        write_atomic(paths[0], yaml.safe_dump_all([one, *rest]))
        async with asyncio.timeout(120):
            await timeline.versions.get()
        done = time.perf_counter()
        re_compile = (timeline.compile_end - timeline.compile_start) * 1000
        # What a client of the namespace is sent: its view of the new table, translated
        # from the parents and clusters that changed (the rest comes from the cache).
        snapshot = server._current
        assert snapshot is not None
        v0 = time.perf_counter()
        await snapshot.built(NS)
        view_ms = (time.perf_counter() - v0) * 1000
        viewed = time.perf_counter()
        await source.stop()
    print(f"== recompile: one route changed among {BIG:,} ({BIG_FILES} files), DirectorySource")
    print(
        f"  full load (start):  compile {full_compile:7.0f} ms, publish {publish_ms[0]:6.1f} ms,"
        f" client view {full_view_ms:6.0f} ms,"
        f" total {full:7.0f} ms"
    )
    print(
        f"  one route changed:  compile {re_compile:7.0f} ms, publish {publish_ms[1]:6.1f} ms,"
        f" client view {view_ms:6.1f} ms, write -> published {(done - t0) * 1000:7.0f} ms,"
        f" -> view built {(viewed - t0) * 1000:7.0f} ms"
    )
    print(
        f"  recompile / full compile = {re_compile / full_compile:.2f}"
        " (unchanged files are not read again; only the changed route's unit and its parent"
        " are recompiled; the view re-translates only changed parents)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_no_store(parser, "xds_delta")  # parts 1 and 2 store nothing; part 3 its figures
    args = parser.parse_args(argv)
    print(f"== xds push: route file change -> {CLIENTS} ADS clients ACKed ({CHANGES} changes)")
    asyncio.run(push_latency("raw", 300))
    asyncio.run(push_latency("raw", 20))
    asyncio.run(push_latency("client", 20))
    asyncio.run(recompile())
    delta_main(["--no-store"] if args.no_store else [])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--clients":
        mode, target, first, count = sys.argv[2:6]
        asyncio.run(run_clients(mode, target, int(first), int(count)))
    else:
        main()
