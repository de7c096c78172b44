"""`python -m bench [--no-store]`: every benchmark in turn.

`--no-store` reaches every benchmark that stores its figures (`bench.results`) through the
environment, so each module's own argument parser sees no argument it does not know.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from bench.results import NO_STORE_ENV

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
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--no-store", action="store_true", help="print the moves but keep bench/results as it is"
    )
    args = parser.parse_args()
    if args.no_store:
        os.environ[NO_STORE_ENV] = "1"
    sys.argv[1:] = []
    for name in BENCHMARKS:
        module = importlib.import_module(name)
        module.main()
        print()


if __name__ == "__main__":
    main()
