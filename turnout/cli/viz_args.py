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

from turnout.cli.args import add_namespace, host_port, non_negative_int
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
    tap_parsers(sub)
    top_parsers(sub)
    diagnostics_parsers(sub)


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


def add_tap_filters(p: argparse.ArgumentParser) -> None:
    """What `mesh tap` and `mesh top` select: a workload (through the control plane) or one
    proxy (``--admin``), and Linkerd's request filters."""
    p.add_argument(
        "target",
        nargs="?",
        metavar="KIND/NAME",
        help="the workload to tap through the control plane: deploy/web, svc/web, po/NAME, ns/NAME",
    )
    p.add_argument(
        "--admin", type=host_port, metavar="HOST:PORT", help="tap one proxy's admin instead"
    )
    add_viz_source(p)
    add_scope(p)
    p.add_argument("--to", metavar="KIND/NAME", help="only requests to this resource")
    p.add_argument("--to-namespace", metavar="NS", help="the namespace of --to (default: -n)")
    p.add_argument("--method", default="", help="only this method")
    p.add_argument("--authority", default="", help="only this authority")
    p.add_argument("--path", default="", help="only paths with this prefix")
    p.add_argument(
        "--max-rps",
        type=non_negative_int,
        default=100,
        help="requests per second, per proxy (0 = all; default 100)",
    )


def tap_parsers(sub: Sub) -> None:
    """`mesh tap`: the live requests of a workload's proxies (or one proxy's)."""
    p = sub.add_parser(
        "tap", help="stream a workload's live requests (Linkerd's tap lines), or one proxy's"
    )
    add_tap_filters(p)
    p.add_argument(
        "--limit", type=non_negative_int, default=0, metavar="N", help="stop after N events"
    )
    p.add_argument("-o", "--output", choices=("text", "wide", "json"), default="text")
    p.set_defaults(run="viz_tap:run_tap")


def top_parsers(sub: Sub) -> None:
    """`mesh top`: the live top paths, aggregated from the same tap stream."""
    p = sub.add_parser("top", help="a workload's live top paths (like linkerd viz top)")
    add_tap_filters(p)
    p.add_argument("--routes", action="store_true", help="a Route column instead of Method/Path")
    p.add_argument("--hide-sources", action="store_true", help="drop the Source column")
    p.add_argument(
        "--refresh",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often the table is redrawn (default 1)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="stop after this long and print the table (0 = until Ctrl-C)",
    )
    p.add_argument("--once", action="store_true", help="print one table after --refresh, then stop")
    p.set_defaults(run="viz_tap:run_top")


def diagnostics_parsers(sub: Sub) -> None:
    """`mesh diagnostics proxy-metrics|endpoints`: what a proxy holds and sees."""
    p = sub.add_parser("diagnostics", help="what the proxies hold and the control plane serves")
    dsub = p.add_subparsers(dest="diagnostic", required=True, metavar="DIAGNOSTIC")
    q = dsub.add_parser("proxy-metrics", help="the raw /metrics of a workload's proxies")
    q.add_argument("target", metavar="KIND/NAME", help="deploy/web, po/NAME, ns/NAME")
    add_viz_source(q)
    add_scope(q)
    q.set_defaults(run="viz_tap:run_proxy_metrics")
    q = dsub.add_parser("endpoints", help="the endpoints the control plane serves for a Service")
    q.add_argument("target", metavar="svc/NAME[:PORT]", help="the Service, e.g. svc/web")
    add_viz_source(q)
    add_scope(q)
    q.add_argument("-o", "--output", choices=("table", "json"), default="table")
    q.set_defaults(run="viz_tap:run_endpoints")
