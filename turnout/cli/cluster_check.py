"""`mesh check [--pre] [--proxy -n NS]`: run the checks (`turnout.cluster.check`), print them.

```
args ─> CheckOptions ─> check_until(wait) ─> Report ─> table | short | json | wide ─> stdout
                                               └─> exit 0 (√ and ‼ only), 1 (any ×)
```

Bad flags (`--injector-url` without https, `-n` with --pre) exit 2 before anything is asked.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any, TextIO

from turnout.cli.errors import UsageError
from turnout.cli.output import EXIT_FAILED, EXIT_OK
from turnout.cluster import names


def _options(args: argparse.Namespace) -> Any:
    from turnout.cluster.check.run import CheckOptions, Mode

    if args.injector_url and not args.injector_url.startswith("https://"):
        raise UsageError(f"--injector-url: want https://HOST:PORT, got {args.injector_url!r}")
    if args.injector_url and (args.pre or args.proxy):
        raise UsageError(
            "--injector-url: only mesh check (without --pre or --proxy) asks the injector"
        )
    mode: Mode = "pre" if args.pre else "proxy" if args.proxy else "control-plane"
    return CheckOptions(
        mode=mode,
        cp_namespace=args.cp_namespace or names.NAMESPACE,
        namespace=args.namespace,
        control_plane=args.control_plane,
        injector_url=args.injector_url,
    )


def run_check_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from turnout.cluster.check.proxies import render_table
    from turnout.cluster.check.results import render_json, render_text
    from turnout.cluster.check.run import check_until
    from turnout.engine.sources.k8s.api import api_client_from_environment

    options = _options(args)

    def make_client() -> Any:
        # A kubeconfig or context on the command line wins over the pod's service account.
        named = bool(args.kubeconfig or args.context)
        return api_client_from_environment(
            kubeconfig=args.kubeconfig, context=args.context, in_cluster=False if named else None
        )

    report = asyncio.run(check_until(options, make_client, wait_s=args.wait / 1000))
    if args.output == "json":
        out.write(render_json(report))
    else:
        out.write(render_text(report, short=args.output == "short"))
        if args.output == "wide" and report.proxies is not None:
            out.write("\n" + render_table(report.proxies))
    return EXIT_OK if report.success else EXIT_FAILED
