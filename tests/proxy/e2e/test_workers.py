"""`mesh proxy --workers N`: several processes on one port (SO_REUSEPORT), one admin port
whose /metrics sums them all, and a stop that takes the children along."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import aiohttp

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import (
    bounded,
    dead_port,
    metric,
    start_cli_proxy,
    wait_admin_ready,
)
from tests.proxy.e2e.manifests import smoke_manifests
from turnout.proxy.registry import merge_metrics

REQUESTS = 200

A = """\
# HELP request_total Total count of HTTP requests.
# TYPE request_total counter
request_total{direction="outbound"} 3
# HELP response_latency_ms Latency.
# TYPE response_latency_ms histogram
response_latency_ms_bucket{le="1"} 2
response_latency_ms_bucket{le="+Inf"} 3
response_latency_ms_sum{} 4
response_latency_ms_count{} 3
# HELP process_start_time_seconds Start.
# TYPE process_start_time_seconds gauge
process_start_time_seconds{} 1700000010.5
"""
B = """\
# HELP request_total Total count of HTTP requests.
# TYPE request_total counter
request_total{direction="outbound"} 4
request_total{direction="inbound"} 1
# HELP response_latency_ms Latency.
# TYPE response_latency_ms histogram
response_latency_ms_bucket{le="1"} 1
response_latency_ms_bucket{le="+Inf"} 4
response_latency_ms_sum{} 9
response_latency_ms_count{} 4
# HELP process_start_time_seconds Start.
# TYPE process_start_time_seconds gauge
process_start_time_seconds{} 1700000000.25
"""


def test_worker_metrics_are_summed_and_stay_grouped_by_family() -> None:
    merged = merge_metrics([A, B, ""])
    assert merged.splitlines() == [
        "# HELP request_total Total count of HTTP requests.",
        "# TYPE request_total counter",
        'request_total{direction="outbound"} 7',
        'request_total{direction="inbound"} 1',
        "# HELP response_latency_ms Latency.",
        "# TYPE response_latency_ms histogram",
        'response_latency_ms_bucket{le="1"} 3',
        'response_latency_ms_bucket{le="+Inf"} 7',
        "response_latency_ms_sum{} 13",
        "response_latency_ms_count{} 7",
        "# HELP process_start_time_seconds Start.",
        "# TYPE process_start_time_seconds gauge",
        "process_start_time_seconds{} 1700000000.25",
    ]


def sockets(pid: int) -> int:
    """Sockets `pid` holds open (accepted connections show up in the process that took them)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed while we were looking
            count += os.readlink(fd).startswith("socket:")
    return count


def cmdline(pid: int) -> bytes:
    """A process's command line; b"" once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@bounded(60)
async def test_two_workers_share_the_port_and_the_admin_port_counts_both(
    lab: Lab, tmp_path: Path
) -> None:
    manifests = await smoke_manifests(lab, tmp_path)
    outbound, admin = dead_port(), dead_port()
    proc = await start_cli_proxy(
        *("-f", str(manifests), "--workers", "2"),
        *("--namespace", "shop", "--workload", "deployment/client"),
        *("--outbound", f"127.0.0.1:{outbound}", "--admin", f"127.0.0.1:{admin}"),
    )
    workers: list[int] = []
    try:
        await wait_admin_ready(admin)  # compile, spawn the second worker, both tables in
        workers = [c for c in children(proc.pid) if b"spawn_main" in cmdline(c)]
        url = f"http://127.0.0.1:{outbound}/echo"
        # the kernel spreads connections over both processes: hold 20 open and look
        [child] = workers  # the second worker (the compile's child has exited by now)
        before = {pid: sockets(pid) for pid in (proc.pid, child)}
        held = [aiohttp.ClientSession() for _ in range(20)]
        try:
            for session in held:
                async with session.get(url, headers={"Host": "web.shop"}) as resp:
                    assert resp.status == 200
            after = {pid: sockets(pid) for pid in (proc.pid, child)}
        finally:
            for session in held:
                await session.close()
        assert all(after[pid] > before[pid] for pid in after), (before, after)
        # a new connection per request, then the sum over both processes
        for _ in range(REQUESTS - len(held)):
            connector = aiohttp.TCPConnector(force_close=True)
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.get(url, headers={"Host": "web.shop"}) as resp,
            ):
                assert resp.status == 200
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{admin}/metrics") as resp,
        ):
            text = await resp.text()
        assert metric(text, "request_total", direction="outbound") == REQUESTS, text[:2000]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 0, err.decode()
    await asyncio.sleep(0.2)
    for pid in workers:  # gone with the parent (or a zombie awaiting its reaper)
        assert cmdline(pid) == b"", pid
