"""The parsers of the viz commands: what the mesh is doing, from its metrics and tap streams.

```
mesh stat | edges      stat_parsers, edges_parsers   cli.viz_*   (Prometheus, else a direct scrape)
mesh tap | top         tap_parsers, top_parsers      cli.viz_*   (the control plane fans in tap)
mesh diagnostics       diagnostics_parsers           cli.viz_*
mesh dashboard         dashboard_parsers             cli.viz_*
```

Every viz command takes the same way to the mesh (`add_viz_source`: `--control-plane`, which
knows every proxy and the Prometheus it started, and `--prometheus URL` to name one) and the
same kubectl-style scope (`add_scope`: `-n/--namespace`, `-A/--all-namespaces`). One family's
flags per function, each registered by `viz_parsers`.
"""

from __future__ import annotations

import argparse
from typing import TypeAlias

from turnout.cli.args import add_namespace
from turnout.engine.config import DEFAULT_ADMIN_ADDRESS

DEFAULT_DASHBOARD_PORT = 50750
"""`mesh dashboard`'s and `mesh serve --dashboard`'s port: Linkerd's `viz dashboard` one."""

Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_viz_source(p: argparse.ArgumentParser) -> None:
    """Where the numbers come from: a control plane's admin address and/or a Prometheus."""
    p.add_argument(
        "--control-plane",
        metavar="HOST:PORT",
        default=DEFAULT_ADMIN_ADDRESS,
        help="the admin address of a running `mesh serve`: it knows every proxy and the"
        f" Prometheus it started (default {DEFAULT_ADMIN_ADDRESS})",
    )
    p.add_argument(
        "--prometheus",
        metavar="URL",
        help="query this Prometheus (default: the one the control plane started, else the"
        " proxies are scraped directly for the window)",
    )


def add_scope(p: argparse.ArgumentParser) -> None:
    """kubectl's scope: ``-n NS`` (default ``default``) or ``-A`` (every namespace)."""
    add_namespace(p, help="the namespace of the targets (default: default)")
    p.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="every namespace (overrides -n)",
    )


def viz_parsers(sub: Sub) -> None:
    """Register every viz command (one function per family, below)."""
    dashboard_parsers(sub)


def dashboard_parsers(sub: Sub) -> None:
    """`mesh dashboard`: the web UI, standalone against a running control plane."""
    p = sub.add_parser(
        "dashboard",
        help="serve the web dashboard against a running control plane and print its URL",
    )
    add_viz_source(p)
    p.add_argument(
        "--address",
        default="127.0.0.1",
        metavar="HOST",
        help="the address to listen on (default 127.0.0.1)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_DASHBOARD_PORT,
        help=f"the port to listen on; 0 = a free one (default {DEFAULT_DASHBOARD_PORT})",
    )
    p.add_argument(
        "--show",
        choices=("url", "browser"),
        default="url",
        help="url: print the URL (default); browser: also open it in a browser",
    )
    p.set_defaults(run="dashboard:run_dashboard")
