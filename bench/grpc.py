"""gRPC unary calls through `mesh proxy` against nginx's `grpc_pass`, all on 127.0.0.1.

Run: ``.venv/bin/python -m bench.grpc [--seconds 4] [--rounds 3] [--threads 4]``

```
grpcio client (its own process: THREADS threads, each a channel making sequential unary
   calls of 100 bytes for SECONDS) ──┬─► grpcio server (direct)
                                     ├─► nginx (1 worker, h2c, grpc_pass, keepalive) ──► server
                                     └─► mesh proxy -f <Service appProtocol grpc + GRPCRoute> ──► server
```

Each round runs nginx then ours back to back (a noisy neighbour slows both alike); reported:
calls/s, p50 and p99 of each target's best round, and ours as a ratio of nginx's judged on
the median of the rounds' ratios (issue 16's goal: >= 0.5x), plus our proxy's RSS; then each
figure against the previous run's (``bench/results/grpc.json``, committed; `bench.results`),
then stored (``--no-store``: not). Every process is started here and stopped by its pid at
the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.proxy import (
    LOCAL,
    NS,
    Processes,
    find_tool,
    free_ports,
    mesh_argv,
    rss_mb,
    start_nginx,
    tail,
)
from bench.results import Figures, add_no_store
from bench.results import report as report_moves

AUTHORITY = "web.bench"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: web, namespace: bench}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - backendRefs: [{name: web, port: 80}]
"""


def manifests(port: int) -> str:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"ports": [{"name": "grpc", "port": 80, "appProtocol": "grpc"}]},
    }
    eps = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-slice",
            "namespace": NS,
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "grpc", "port": port}],
        "endpoints": [{"addresses": [LOCAL], "conditions": {"ready": True}}],
    }
    return "\n---\n".join([json.dumps(svc), json.dumps(eps), ROUTE])


# -- the two grpcio sides (run as `python -m bench.grpc --serve/--load`) --------------------


def serve(port: int) -> None:
    from concurrent import futures

    import grpc

    def echo(req: bytes, ctx: object) -> bytes:
        return req

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"{LOCAL}:{port}")
    server.start()
    server.wait_for_termination()


def load(port: int, seconds: float, threads: int) -> None:
    """Print one JSON line: calls/s and latency percentiles (ms)."""
    import threading

    import grpc

    lats: list[list[float]] = [[] for _ in range(threads)]
    errors = [0]

    def worker(i: int) -> None:
        with grpc.insecure_channel(
            f"{LOCAL}:{port}", options=[("grpc.default_authority", AUTHORITY)]
        ) as ch:
            call = ch.unary_unary("/bench.Echo/Unary")
            for _ in range(20):
                call(b"w", timeout=10)
            end = time.perf_counter() + seconds
            out = lats[i]
            while (t := time.perf_counter()) < end:
                try:
                    call(b"x" * 100, timeout=10)
                except grpc.RpcError:
                    errors[0] += 1
                out.append(time.perf_counter() - t)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    all_ = sorted(x for lst in lats for x in lst)
    n = len(all_)
    print(
        json.dumps(
            {
                "rps": n / elapsed,
                "calls": n + 20 * threads,  # with the warm-up ones
                "p50": all_[n // 2] * 1000,
                "p99": all_[int(n * 0.99)] * 1000,
                "errors": errors[0],
            }
        )
    )


def run_load(port: int, seconds: float, threads: int) -> dict[str, float]:
    argv = [sys.executable, "-m", "bench.grpc", "--load", str(port), str(seconds), str(threads)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds (user, system) `pid` has used so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def wait_grpc(port: int, timeout_s: float = 20.0) -> None:
    import grpc

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with grpc.insecure_channel(
                f"{LOCAL}:{port}", options=[("grpc.default_authority", AUTHORITY)]
            ) as ch:
                ch.unary_unary("/bench.Echo/Unary")(b"ping", timeout=2)
                return
        except grpc.RpcError as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"no gRPC answer on :{port}: {last}")


def bench(seconds: float, rounds: int, threads: int, *, store: bool = True) -> None:
    nginx = find_tool("nginx")
    if nginx is None:
        print("error: nginx not found (make bench installs it)", file=sys.stderr)
        raise SystemExit(2)
    port_backend, port_nginx, port_ours, port_admin = free_ports(4)
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="bench-grpc-") as tmp:
        work = Path(tmp)
        try:
            server = procs.start(
                "grpc-server",
                [sys.executable, "-m", "bench.grpc", "--serve", str(port_backend)],
                work / "server.log",
            )
            start_nginx(
                procs,
                nginx,
                "nginx",
                "nginx-grpc.conf.tmpl",
                work,
                port=port_nginx,
                port_backend=port_backend,
            )
            files = work / "mesh.yaml"
            files.write_text(manifests(port_backend))
            ours = procs.start(
                "mesh-proxy", mesh_argv(files, port_ours, port_admin), work / "m.log"
            )
            for port in (port_backend, port_nginx, port_ours):
                try:
                    wait_grpc(port)
                except RuntimeError:
                    print(tail(server.log), tail(ours.log), sep="\n", file=sys.stderr)
                    raise
            direct = run_load(port_backend, seconds, threads)
            results: dict[str, list[dict[str, float]]] = {"nginx": [], "ours": []}
            for _ in range(rounds):
                results["nginx"].append(run_load(port_nginx, seconds, threads))
                user, system = cpu_s(ours.proc.pid)
                r = run_load(port_ours, seconds, threads)
                user2, system2 = cpu_s(ours.proc.pid)
                r["user_us"] = (user2 - user) / r["calls"] * 1e6
                r["system_us"] = (system2 - system) / r["calls"] * 1e6
                results["ours"].append(r)
            rss = rss_mb(ours.proc.pid)
        finally:
            procs.stop_all()
    report_moves("grpc", report(direct, results, rss, threads), store=store)


def report(
    direct: dict[str, float],
    results: dict[str, list[dict[str, float]]],
    rss: float | None,
    threads: int,
) -> Figures:
    """Prints the table; returns the figures `results.report` compares with the stored run."""
    print(f"gRPC unary, 100 B, {threads} client threads (sequential calls each), 127.0.0.1")
    print(f"{'target':8s} {'calls/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>7s}")
    rows = [("direct", direct)]
    rows += [(name, max(rs, key=lambda r: r["rps"])) for name, rs in results.items()]
    for name, r in rows:
        print(f"{name:8s} {r['rps']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f} {int(r['errors']):7d}")
    ratios = [o["rps"] / n["rps"] for n, o in zip(results["nginx"], results["ours"], strict=True)]
    median = statistics.median(ratios)
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"ours / nginx: {median:.2f}x median of rounds ({shown}); goal >= 0.5x")
    user = statistics.median(r["user_us"] for r in results["ours"])
    system = statistics.median(r["system_us"] for r in results["ours"])
    print(f"our proxy's CPU per call: {user:.0f} us user + {system:.0f} us system (medians)")
    if rss is not None:
        print(f"our proxy's RSS after the load: {rss:.1f} MB")
    best = dict(rows)
    figures: Figures = {
        "ours/nginx (median of rounds)": (median, "x", "higher"),
        "calls/s ours (best round)": (best["ours"]["rps"], "calls/s", "higher"),
        "calls/s nginx (best round)": (best["nginx"]["rps"], "calls/s", "higher"),
        "p99 ours (best round)": (best["ours"]["p99"], "ms", "lower"),
        "CPU per call, user": (user, "us", "lower"),
        "CPU per call, system": (system, "us", "lower"),
    }
    if rss is not None:
        figures["RSS after the load"] = (rss, "MB", "lower")
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.grpc")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=4)
    add_no_store(p, "grpc")
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    p.add_argument("--load", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
    elif args.load is not None:
        load(int(args.load[0]), float(args.load[1]), int(args.load[2]))
    else:
        bench(args.seconds, args.rounds, args.threads, store=not args.no_store)


if __name__ == "__main__":
    main()
