"""Delta xDS fan-out: one route changed among 10,000 -> N connected delta clients.

```
compile A (10k routes) and B (route 17's weight changed) ─ publish A ─ view versions ─> file
   ─> P subprocesses x C delta streams (one channel each): LDS/CDS "*", RDS/EDS by name, each
      with initial_resource_versions = A's versions (clients that already have A: the
      reconnect a proxy does; nothing is sent at connect)
   ─> publish B, A, B, ... (t0) ─> every stream receives the changed resources (t1, client
      clock = the same CLOCK_MONOTONIC) and ACKs them ─> every process: `done VERSION`
```

What a client is: a real grpc.aio delta ADS stream on its own channel (its own TCP
connection), 250 streams per client process, 4 processes. Per response it takes the time
(t1) as the read completes, reads three top-level fields of the raw bytes
(system_version_info, type_url, nonce; nothing below them is parsed, no resource is
decoded or applied) and writes the ACK as bytes (type_url + response_nonce, the bytes
protobuf would give). Receipts stay in the process's memory; a process prints one line
`done VERSION` when all its streams have VERSION (the bench waits for every process) and
hands every receipt over at the end. So the figure is the server's fan-out plus grpc's
transport on both sides, not what our proxy does with a table (bench.xds part 1 measures
that). Clients and server share the machine's 2 cores: the CPU per change is printed for
the server's main thread, grpc's threads in the server process, and the client processes,
separately (from /proc).

Two layouts: `spread` (10k routes over 1,000 Services, 10 each: one change is one ~9 KB
RouteConfiguration) and `one-parent` (10k routes on one Service: the changed
RouteConfiguration is the whole parent, ~9 MB, so it runs with 20 clients; bytes per change
are not proportional to the change there, and VHDS would not make them so: the parent's
RouteConfiguration is one virtual host, printed). Printed per layout: p50/p99 of t1 - t0
over every (client, change), the last client's receipt, the bytes each client received per
change and their total, and the machine's load; the figures are stored in
bench/results/xds_delta.json and their moves printed (`bench.results`).
`TURNOUT_BENCH_PROFILE=PATH` profiles the server's main thread over the changes (cProfile,
PATH.LAYOUT).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2

from bench.results import Figures, add_no_store, report
from bench.synth import route, service
from turnout.engine.ir import RouteTable
from turnout.engine.pipeline import IncrementalCompiler
from turnout.engine.server import AdsServer, ServerSettings
from turnout.engine.server.settings import DEFAULT_HEAP_SETTLE_MS
from turnout.engine.xds.wire import varint
from turnout.proxy.xds_resources import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    LOAD_ASSIGNMENT_TYPE,
    ROUTE_CONFIGURATION_TYPE,
)

NS = "bench"
ROUTES = 10_000
CHANGES = 6
GOAL_P99_MS = 250.0
ROOT = Path(__file__).resolve().parents[1]
MAX_MESSAGE = 64 * 1024 * 1024
PROFILE_ENV = "TURNOUT_BENCH_PROFILE"
"""Set to a path: the server's main thread is profiled (cProfile) over the changes."""
TYPES = (LISTENER_TYPE, CLUSTER_TYPE, ROUTE_CONFIGURATION_TYPE, LOAD_ASSIGNMENT_TYPE)


# --------------------------------------------------------------------------- clients (subprocess)


DELTA_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"


def top_fields(data: bytes, wanted: frozenset[int]) -> dict[int, bytes]:
    """The length-delimited top-level fields `wanted` of a message, nothing parsed below
    them (the clients only need the version, type and nonce to ACK)."""
    out: dict[int, bytes] = {}
    i, end = 0, len(data)
    while i < end:
        key = shift = 0
        while True:
            byte = data[i]
            i += 1
            key |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if key & 7 != 2:  # DeltaDiscoveryResponse has only length-delimited fields
            raise ValueError(f"unexpected wire type in field {key >> 3}")
        size = shift = 0
        while True:
            byte = data[i]
            i += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if key >> 3 in wanted:
            out[key >> 3] = data[i : i + size]
        i += size
    return out


RESPONSE_FIELDS = frozenset({1, 4, 5})  # system_version_info, type_url, nonce


def ack_bytes(type_url: bytes, nonce: bytes) -> bytes:
    """A `DeltaDiscoveryRequest` ACK on the wire: type_url (field 2) and response_nonce
    (field 6), the bytes `SerializeToString` gives for those two fields."""
    return b"\x12" + varint(len(type_url)) + type_url + b"\x32" + varint(len(nonce)) + nonce


def request_bytes(request: Any) -> bytes:
    """The clients' request serializer: ACKs are written as bytes already (`ack_bytes`)."""
    if isinstance(request, bytes):
        return request
    return request.SerializeToString()  # type: ignore[no-any-return]


class Receipts:
    """One client process's receipts: (version, time, bytes) in memory, and one line
    `done VERSION` on stdout when all of its streams have received VERSION."""

    def __init__(self, streams: int) -> None:
        self.streams = streams
        self.records: list[tuple[str, float, int]] = []
        self.count: dict[str, int] = {}

    def note(self, version: str, t: float, size: int) -> None:
        self.records.append((version, t, size))
        n = self.count[version] = self.count.get(version, 0) + 1
        if n == self.streams:
            sys.stdout.write(f"done {version}\n")
            sys.stdout.flush()


async def delta_stream(
    target: str, i: int, versions: dict[str, dict[str, str]], receipts: Receipts
) -> None:
    options = [
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.max_receive_message_length", MAX_MESSAGE),
    ]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        # Responses stay bytes: a client reads the three fields it ACKs with, so the figure is
        # the server's fan-out and grpc's transport, not 1,000 protobuf parses on 2 cores.
        call = channel.stream_stream(
            DELTA_METHOD, request_serializer=request_bytes, response_deserializer=None
        )()
        node = base_pb2.Node(id=f"bench-delta-{i}", cluster="bench")
        node.metadata.update({"namespace": NS, "workload": f"deployment/delta-{i}"})
        for n, url in enumerate(TYPES):
            wildcard = url in (LISTENER_TYPE, CLUSTER_TYPE)
            req = discovery_pb2.DeltaDiscoveryRequest(
                type_url=url,
                resource_names_subscribe=["*"] if wildcard else sorted(versions[url]),
                initial_resource_versions=versions[url],
            )
            if n == 0:
                req.node.CopyFrom(node)
            await call.write(req)
        while (data := await call.read()) is not grpc.aio.EOF:
            t = time.perf_counter()
            fields = top_fields(data, RESPONSE_FIELDS)
            receipts.note(fields[1].decode(), t, len(data))
            await call.write(ack_bytes(fields[4], fields[5]))


async def run_clients(target: str, first: int, count: int, versions_file: str) -> None:
    """`count` delta streams; on a line on stdin, every receipt as one JSON line, then exit."""
    versions = json.loads(Path(versions_file).read_text())
    receipts = Receipts(count)
    tasks = [
        asyncio.create_task(delta_stream(target, i, versions, receipts))
        for i in range(first, first + count)
    ]
    print("started", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    sys.stdout.write(json.dumps(receipts.records) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- control plane side


def tables(spread: bool) -> tuple[RouteTable, RouteTable]:
    """The 10k-route table and the same with route 17's first weight changed."""

    def parent(i: int) -> str:
        return f"s{i // 10}" if spread else "web"

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        docs = [service(NS, n) for n in ("web", "v1", "v2")]
        if spread:
            docs += [service(NS, f"s{j}") for j in range(ROUTES // 10)]
        (d / "services.yaml").write_text(yaml.safe_dump_all(docs))
        paths = [str(d / "services.yaml")]
        for f in range(100):
            p = d / f"routes-{f:03d}.yaml"
            chunk = [route(NS, i, parent=parent(i)) for i in range(f * 100, (f + 1) * 100)]
            p.write_text(yaml.safe_dump_all(chunk))
            paths.append(str(p))
        compiler = IncrementalCompiler()
        a = compiler(paths).result.table
        changed = [route(NS, i, parent=parent(i)) for i in range(100)]
        spec: Any = changed[17]["spec"]
        spec["rules"][0]["backendRefs"][0]["weight"] = 42
        Path(paths[1]).write_text(yaml.safe_dump_all(changed))
        b = compiler(paths).result.table
    # What the incremental compiler gives (clean parents and clusters stay the same objects);
    # until it is merged, share them here, so the cache hits are identity checks.
    old = {p.name: p for p in a.parents}
    clusters = {c.name: c for c in a.clusters}
    b = RouteTable(
        parents=tuple(old[p.name] if old.get(p.name) == p else p for p in b.parents),
        clusters=tuple(clusters[c.name] if clusters.get(c.name) == c else c for c in b.clusters),
    )
    return a, b


TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def cpu_ms(pid: int | str, thread: str | None = None) -> float:
    """User + system CPU of a process (or one of its threads) so far, from /proc."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_MS


def threads_ms() -> tuple[float, float]:
    """This process's CPU: (main thread = Python and the event loop, grpc's other threads)."""
    me = os.getpid()
    main = cpu_ms(me, str(me))
    return main, cpu_ms(me) - main


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class Timed:
    """The pushes counter, also noting when each response was written (server side)."""

    def __init__(self, counter: Any, times: list[float]) -> None:
        self.counter, self.times = counter, times

    def inc(self, *labels: str) -> None:
        self.times.append(time.perf_counter())
        self.counter.inc(*labels)


class Received:
    """The client processes' `done VERSION` lines: how many processes have each version."""

    def __init__(self) -> None:
        self.processes: dict[str, int] = {}
        self.changed = asyncio.Event()

    async def read(self, stream: asyncio.StreamReader) -> list[tuple[str, float, int]]:
        """Counts `done` lines until the process's last line: its receipts."""
        while (line := await stream.readline()).startswith(b"done "):
            v = line.split()[1].decode()
            self.processes[v] = self.processes.get(v, 0) + 1
            self.changed.set()
        return [(v, t, n) for v, t, n in json.loads(line)]

    async def wait(self, version: str, count: int) -> None:
        while self.processes.get(version, 0) < count:
            self.changed.clear()
            await self.changed.wait()


def synced(server: AdsServer, clients: int) -> bool:
    streams = server.status().streams
    return len(streams) >= clients and all(
        s.sync.get(k) == "SYNCED" for s in streams for k in ("LDS", "RDS", "CDS", "EDS")
    )


def virtual_hosts(view: dict[str, Any]) -> tuple[int, int]:
    """The largest RouteConfiguration's virtual hosts: how many, and the largest one's bytes
    (what VHDS, virtual hosts as delta resources, would send at least for a change in it)."""
    largest = max(view.values(), key=lambda a: a.ByteSize())
    config = route_pb2.RouteConfiguration.FromString(largest.value)
    return len(config.virtual_hosts), max(v.ByteSize() for v in config.virtual_hosts)


async def fan_out(layout: str, clients: int, processes: int, changes: int = CHANGES) -> Figures:
    spread = layout == "spread"
    a, b = tables(spread)
    server = AdsServer(
        settings=ServerSettings(stop_grace_ms=0, heap_settle_ms=DEFAULT_HEAP_SETTLE_MS)
    )  # as `mesh serve`
    port = await server.start("127.0.0.1", 0)
    writes: list[float] = []
    server.metrics.pushes = Timed(server.metrics.pushes, writes)  # type: ignore[assignment]
    server.publish(a)
    snapshot = server._current
    assert snapshot is not None
    built = await snapshot.built(NS)
    assert built is not None
    versions = {url: dict(built.versions[url]) for url in TYPES}
    rds_bytes = sorted(a.ByteSize() for a in built.view[ROUTE_CONFIGURATION_TYPE].values())
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(versions, f)
    per = clients // processes
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.xds_delta",
            "--clients",
            f"127.0.0.1:{port}",
            str(p * per),
            str(per),
            f.name,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
            limit=1 << 28,
        )
        for p in range(processes)
    ]
    published: dict[str, float] = {}
    all_received: list[float] = []
    written: list[float] = []
    cpu: list[float] = []
    view_ms: list[float] = []
    received = Received()
    readers = []
    try:
        for proc in procs:
            assert proc.stdout is not None
            async with asyncio.timeout(60):
                assert (await proc.stdout.readline()).strip() == b"started"
            readers.append(asyncio.create_task(received.read(proc.stdout)))
        connect = time.perf_counter()
        async with asyncio.timeout(120):
            while not synced(server, clients):
                await asyncio.sleep(0.5)
        connect_s = time.perf_counter() - connect
        main0, other0 = threads_ms()
        clients0 = sum(cpu_ms(p.pid) for p in procs)
        profile = cProfile.Profile() if os.environ.get(PROFILE_ENV) else None
        if profile is not None:
            profile.enable()
        for i in range(changes):
            await asyncio.sleep(0.3)
            t0, c0 = time.perf_counter(), time.process_time()
            version = server.publish(b if i % 2 == 0 else a)
            published[str(version)] = t0
            current = server._current
            assert current is not None
            await current.built(NS)
            view_ms.append((time.perf_counter() - t0) * 1000)
            async with asyncio.timeout(120):
                await received.wait(str(version), processes)
            all_received.append((time.perf_counter() - t0) * 1000)
            written.append((writes[-1] - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
        main1, other1 = threads_ms()
        if profile is not None:
            profile.disable()
            profile.dump_stats(f"{os.environ[PROFILE_ENV]}.{layout}")
        clients_cpu = (sum(cpu_ms(p.pid) for p in procs) - clients0) / changes
        server_main, server_other = (main1 - main0) / changes, (other1 - other0) / changes
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"\n")
            await proc.stdin.drain()
        async with asyncio.timeout(60):
            records = [r for task in readers for r in await task]
    finally:
        for task in readers:
            task.cancel()
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        os.unlink(f.name)
        await server.stop()
        gc.unfreeze()  # the next layout starts from an unfrozen heap
    before = [r for r in records if r[0] not in published]
    delivery = [(t - published[v]) * 1000 for v, t, _ in records if v in published]
    per_change = sum(n for v, _, n in records if v in published) / changes
    sotw = sum(a.ByteSize() for a in built.view[ROUTE_CONFIGURATION_TYPE].values())
    hosts, host_bytes = virtual_hosts(built.view[ROUTE_CONFIGURATION_TYPE])
    load = os.getloadavg()
    verdict = "ok" if pct(delivery, 99) < GOAL_P99_MS else "OVER GOAL"
    print(
        f"  {layout:10s} {clients:5d} delta clients, {len(a.parents)} parents,"
        f" RouteConfigurations {rds_bytes[0]:,}..{rds_bytes[-1]:,} B;"
        f" connect with initial versions: {connect_s:.1f} s, {len(before)} responses sent"
    )
    print(
        f"      publish -> received p50 {pct(delivery, 50):7.1f} ms  p99 {pct(delivery, 99):7.1f} ms"
        f"  ({verdict});  last client {pct(all_received, 99):7.1f} ms;"
        f" last write (server) p50 {pct(written, 50):6.1f} ms, server process CPU"
        f" {pct(cpu, 50):6.1f} ms;"
        f" of which publish + view built p50 {pct(view_ms, 50):6.1f} ms"
    )
    print(
        f"      CPU per change (mean, incl. the 0.3 s pauses): server main thread"
        f" {server_main:6.1f} ms, server grpc threads {server_other:6.1f} ms,"
        f" client processes {clients_cpu:6.1f} ms"
    )
    print(
        f"      bytes per change: {per_change / clients:,.0f} B per client,"
        f" {per_change:,.0f} B in all ({len(delivery) / changes / clients:.1f} responses"
        f" per client); state of the world would send {sotw:,} B per client (every"
        f" RouteConfiguration, computed); load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"      the largest RouteConfiguration has {hosts} virtual host(s), the largest"
        f" {host_bytes:,} B: VHDS (virtual hosts as delta resources) would send at least that"
    )
    return {
        f"{layout} p50": (pct(delivery, 50), "ms", "lower"),
        f"{layout} p99": (pct(delivery, 99), "ms", "lower"),
        f"{layout} last client": (pct(all_received, 99), "ms", "lower"),
        f"{layout} server main CPU/change": (server_main, "ms", "lower"),
        f"{layout} server grpc CPU/change": (server_other, "ms", "lower"),
        f"{layout} clients CPU/change": (clients_cpu, "ms", "lower"),
        f"{layout} bytes/client/change": (per_change / clients, "B", "lower"),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_no_store(parser, "xds_delta")
    args = parser.parse_args(argv)
    print(f"== delta xds: one route changed among {ROUTES:,} (goal: 1,000 clients, p99 < 250 ms)")
    figures = asyncio.run(fan_out("spread", 1000, 4))
    figures |= asyncio.run(fan_out("one-parent", 20, 1, changes=3))  # ~9 MB per client
    report("xds_delta", figures, store=not args.no_store)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--clients":
        target, first, count, versions_file = sys.argv[2:6]
        asyncio.run(run_clients(target, int(first), int(count), versions_file))
    else:
        main()
