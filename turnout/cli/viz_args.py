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
    stat_parsers(sub)
    edges_parsers(sub)
    dashboard_parsers(sub)


def add_viz_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=("table", "wide", "json"), default="table")


def add_window(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-t",
        "--window",
        metavar="DURATION",
        help="the window the numbers cover, e.g. 30s, 1m (default 1m from Prometheus; 10s"
        " when the proxies are scraped directly)",
    )


def stat_parsers(sub: Sub) -> None:
    """`mesh stat TARGET`: success, RPS, latency and TCP per workload or Service."""
    p = sub.add_parser(
        "stat",
        help="success rate, RPS, latency and connections of workloads or Services",
        description="Like `linkerd viz stat`: TARGET is deploy/NAME, svc/NAME, ns/NAME,"
        " po/NAME, sts/NAME, ds/NAME or a bare kind (all of it).",
    )
    p.add_argument("target", metavar="TARGET")
    p.add_argument("--from", dest="from_", metavar="TARGET", help="only calls from this client")
    p.add_argument("--to", metavar="TARGET", help="the target's outbound calls to this Service")
    p.add_argument("--from-namespace", metavar="NS", help="the namespace of --from (default -n)")
    p.add_argument("--to-namespace", metavar="NS", help="the namespace of --to (default -n)")
    add_scope(p)
    add_window(p)
    add_viz_output(p)
    add_viz_source(p)
    p.set_defaults(run="viz_stat:run_stat")


def edges_parsers(sub: Sub) -> None:
    """`mesh edges TARGET`: who calls whom, and whether over mTLS."""
    p = sub.add_parser(
        "edges",
        help="the calls between workloads and Services, and whether they are mTLS",
        description="Like `linkerd viz edges`: SRC DST SRC_NS DST_NS SECURED.",
    )
    p.add_argument("target", metavar="TARGET")
    add_scope(p)
    add_window(p)
    add_viz_output(p)
    add_viz_source(p)
    p.set_defaults(run="viz_stat:run_edges")


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
