"""`python -m tests.conformance [-k TEXT] [--parallel N]`: run the conformance folders on
the wire and print one line per upstream test (what `make conformance` shows):

    PASS  HTTPRouteWeight                        0.4s  httproute-weight  [Gateway,HTTPRoute]
    XFAIL MeshFrontendHostname                   0.0s  mesh-frontend  [Mesh,HTTPRoute]
          <one line per failed check>

Exit code 1 when a test FAILs or XPASSes (a known bug that no longer fails: drop its xfail)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from tests.conformance.cases import folders
from tests.conformance.report import render
from tests.conformance.runner import run_folders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.conformance")
    parser.add_argument("-k", dest="select", default="", help="only folders whose name has TEXT")
    parser.add_argument("--parallel", type=int, default=2, help="folders run at once")
    args = parser.parse_args(argv)
    paths = [p for p in folders() if args.select in p.name]
    started = time.monotonic()
    results = asyncio.run(run_folders(paths, parallel=args.parallel))
    text, failed = render(results, time.monotonic() - started)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
