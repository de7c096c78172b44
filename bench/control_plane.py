"""The control plane with 10,000 routes: its RSS, `/debug/table`, and xDS meanwhile.

```
bench.xds.big_files -> tmp dir (10,000 HTTPRoutes, 100 files)
mesh serve --dir tmp (a subprocess) ── /ready 200 ──> VmRSS (loaded)
   an ADS stream's LDS answer (its namespace's view translated) ──> VmRSS (one client)
   GET /debug/table (YAML) ──┬──> time to the whole body          ──> VmRSS (after the fetch)
                             └─ meanwhile: an ADS stream's LDS answer (time from its request)
   GET /debug/table again    ──> time (served from the per-version cache)
```

The RSS is read from `/proc/<pid>/status` (`VmRSS`) of the `mesh serve` process; the goal is
<= 300 MB for 10,000 routes, after the fetch too. The ADS stream asks for listeners while the
first `/debug/table` is being answered: its answer must come before the table's body is done
(the admin port renders off the event loop), so `LDS during /debug/table` is printed beside the
fetch time it must stay well under.

The figures are stored in `bench/results/control_plane.json` and each run prints how they
moved against the stored ones (`bench.results`; ``--no-store``: print, keep the file).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import grpc.aio
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from bench.results import Figures, add_no_store, report
from bench.xds import BIG, NS, big_files
from turnout.proxy.xds_resources import LISTENER_TYPE

ROOT = Path(__file__).resolve().parents[1]
GOAL_RSS_MB = 300.0
START_TIMEOUT_S = 300.0
FETCH_TIMEOUT_S = 600.0
CODE = "import sys; from turnout.cli.main import main; sys.exit(main(sys.argv[1:]))"


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    assert match, text
    return int(match.group(1)) / 1024


def get(url: str, timeout_s: float) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Host": "127.0.0.1"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError):
        return 0, b""


def start(directory: Path, log: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    argv = [sys.executable, "-c", CODE, "serve", "--dir", str(directory)]
    argv += ["--xds", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    until = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < until:
        text = log.read_text(errors="replace")
        xds = re.search(r"^xds listening on (\S+)$", text, re.MULTILINE)
        admin = re.search(r"^admin listening on (\S+)$", text, re.MULTILINE)
        if xds and admin:
            return proc, xds.group(1), admin.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"mesh serve did not start: {log.read_text(errors='replace')[-2000:]}")


def wait_ready(admin: str, proc: subprocess.Popen[bytes]) -> None:
    until = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < until and proc.poll() is None:
        status, _ = get(f"http://{admin}/ready", 5)
        if status == 200:
            return
        time.sleep(0.1)
    raise RuntimeError("mesh serve never became ready")


async def lds_answer_ms(xds: str) -> float:
    """One ADS stream: time from its LDS request to the first response."""
    async with grpc.aio.insecure_channel(xds) as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        node = base_pb2.Node(id="bench-debug-table", cluster="bench")
        node.metadata.update({"namespace": NS, "workload": "deployment/bench"})
        started = time.perf_counter()
        await call.write(discovery_pb2.DiscoveryRequest(node=node, type_url=LISTENER_TYPE))
        async with asyncio.timeout(FETCH_TIMEOUT_S):
            await call.read()
        elapsed = (time.perf_counter() - started) * 1000
        call.cancel()
        return elapsed


async def fetch_with_xds(admin: str, xds: str) -> tuple[float, float, int]:
    """`/debug/table` (ms, bytes) and an LDS answer (ms) asked for while it is in flight."""
    started = time.perf_counter()
    fetch = asyncio.create_task(
        asyncio.to_thread(get, f"http://{admin}/debug/table", FETCH_TIMEOUT_S)
    )
    await asyncio.sleep(0.05)  # the request has reached the server
    lds = await lds_answer_ms(xds)
    status, body = await fetch
    assert status == 200, status
    return (time.perf_counter() - started) * 1000, lds, len(body)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.control_plane", description=__doc__)
    add_no_store(parser, "control_plane")
    args = parser.parse_args(argv)
    print(f"== control plane: mesh serve --dir with {BIG:,} HTTPRoutes (subprocess)")
    with tempfile.TemporaryDirectory() as tmp:
        manifests = Path(tmp) / "manifests"
        manifests.mkdir()
        big_files(manifests)
        proc, xds, admin = start(manifests, Path(tmp) / "serve.log")
        try:
            t0 = time.perf_counter()
            wait_ready(admin, proc)
            loaded_s = time.perf_counter() - t0
            loaded = rss_mb(proc.pid)
            alone_ms = asyncio.run(lds_answer_ms(xds))
            client = rss_mb(proc.pid)
            first_ms, lds_ms, size = asyncio.run(fetch_with_xds(admin, xds))
            after = rss_mb(proc.pid)
            t1 = time.perf_counter()
            status, _ = get(f"http://{admin}/debug/table", FETCH_TIMEOUT_S)
            again_ms = (time.perf_counter() - t1) * 1000
            assert status == 200, status
            t2 = time.perf_counter()
            status, _ = get(f"http://{admin}/debug/table?format=json", FETCH_TIMEOUT_S)
            json_ms = (time.perf_counter() - t2) * 1000
            assert status == 200, status
            final = rss_mb(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print(f"  loaded (/ready 200):          {loaded_s:7.1f} s after the ports were bound")
    print(f"  RSS loaded:                   {loaded:7.0f} MB")
    print(f"  LDS answer (first client):    {alone_ms:7.0f} ms")
    print(f"  RSS with one xDS client:      {client:7.0f} MB")
    print(f"  /debug/table first (YAML):    {first_ms:7.0f} ms, {size / 1e6:.1f} MB")
    print(f"  LDS answer during that fetch: {lds_ms:7.0f} ms")
    print(f"  /debug/table again:           {again_ms:7.0f} ms")
    print(f"  /debug/table?format=json:     {json_ms:7.0f} ms")
    print(
        f"  RSS after /debug/table:       {after:7.0f} MB (after the json one too: {final:.0f} MB)"
    )
    worst = max(loaded, client, after, final)
    verdict = "ok" if worst <= GOAL_RSS_MB else "OVER GOAL"
    print(f"  RSS with {BIG:,} routes: {worst:.0f} MB (goal <= {GOAL_RSS_MB:.0f} MB: {verdict})")
    blocked = "ok" if lds_ms < first_ms / 2 else "BLOCKED"
    print(f"  LDS answered while /debug/table renders: {blocked}")
    figures: Figures = {
        "ready_s": (loaded_s, "s", "lower"),
        "rss_loaded_mb": (loaded, "MB", "lower"),
        "lds_first_client_ms": (alone_ms, "ms", "lower"),
        "rss_one_client_mb": (client, "MB", "lower"),
        "debug_table_first_ms": (first_ms, "ms", "lower"),
        "lds_during_debug_table_ms": (lds_ms, "ms", "lower"),
        "debug_table_again_ms": (again_ms, "ms", "lower"),
        "debug_table_json_ms": (json_ms, "ms", "lower"),
        "rss_worst_mb": (worst, "MB", "lower"),
    }
    report("control_plane", figures, store=not args.no_store)


if __name__ == "__main__":
    main()
