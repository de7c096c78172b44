"""The parsers of the cluster commands (`cli.cluster_*` modules run them).

```
mesh install [--crds] | uninstall      install_parsers     cli.cluster_install
mesh inject | uninject                 inject_parsers      cli.cluster_inject
mesh proxy-init                        proxy_init_parsers  cli.cluster_capture
mesh check [--pre] [--proxy]           check_parsers       cli.cluster_check
```

Each family's flags are here, next to each other, so `mesh --help` reads as one tool; the
work is in `turnout.cluster`.
"""

from __future__ import annotations

import argparse
from typing import TypeAlias

from turnout.cli.args import duration_ms, host_port

Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def install_parsers(sub: Sub) -> None:
    """`mesh install`, `mesh uninstall`."""


def inject_parsers(sub: Sub) -> None:
    """`mesh inject`, `mesh uninject`."""


def proxy_init_parsers(sub: Sub) -> None:
    """`mesh proxy-init`."""


def check_parsers(sub: Sub) -> None:
    """`mesh check`."""
    p = sub.add_parser(
        "check",
        help="check a cluster before install (--pre), the control plane, or its proxies (--proxy)",
        description="Linkerd's check: categories of √/‼/× lines, an explanation under each"
        " ‼ and ×; exit 1 on any ×.",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--pre", action="store_true", help="can Turnout be installed: API version, permissions"
    )
    mode.add_argument(
        "--proxy",
        action="store_true",
        help="the data plane of -n NS: proxies present, connected, on the current config",
    )
    p.add_argument(
        "-n",
        "--namespace",
        default="default",
        metavar="NS",
        help="--proxy: the data plane namespace",
    )
    p.add_argument(
        "--cp-namespace",
        default=None,
        metavar="NS",
        help="the control plane's namespace (default turnout)",
    )
    p.add_argument(
        "--wait",
        type=duration_ms,
        default=0,
        metavar="DURATION",
        help="retry until every check passes or this is up (10s, 1m); default: once",
    )
    p.add_argument(
        "-o",
        "--output",
        choices=("table", "short", "json", "wide"),
        default="table",
        help="table (every check), short (only ‼ and ×), json, wide (table, and with --proxy"
        " istioctl proxy-status's per-type table)",
    )
    p.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)",
    )
    p.add_argument(
        "--context", metavar="NAME", help="kubeconfig context (default: the current one)"
    )
    p.add_argument(
        "--control-plane",
        type=host_port,
        metavar="HOST:PORT",
        help="ask the control plane's admin port here, not through the API server's proxy",
    )
    p.add_argument(
        "--injector-url",
        metavar="URL",
        help="ask the injector here (https://HOST:PORT), verified against the webhook's caBundle",
    )
    p.set_defaults(run="cluster_check:run_check_command")


def cluster_parsers(sub: Sub) -> None:
    install_parsers(sub)
    inject_parsers(sub)
    proxy_init_parsers(sub)
    check_parsers(sub)
