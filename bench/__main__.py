"""`python -m bench`: every benchmark in turn."""

from __future__ import annotations

import importlib

BENCHMARKS = (
    "bench.compile",
    "bench.decide",
    "bench.request_path",
    "bench.h2_path",
    "bench.proxy",
    "bench.grpc",
    "bench.xds",
    "bench.control_plane",
    "bench.manifests",
    "bench.resubscribe",
    "bench.identity",
    "bench.mtls",
    "bench.k8s",
)


def main() -> None:
    for name in BENCHMARKS:
        module = importlib.import_module(name)
        module.main()
        print()


if __name__ == "__main__":
    main()
