"""`mesh`: the parser and the dispatch; each command family's code is in its own module.

```
mesh validate | routes [explain] | test     cli.manifests     manifests in, findings out
  routes explain --from-identity/--from-ip  cli.authz         + the destination's authorization
mesh serve | bootstrap                      cli.control_plane the control plane
mesh proxy                                  cli.data_plane    a proxy
mesh authz [--tls]                          cli.live_authz    inbound authorizations, live
mesh identity init | rotate | token | status cli.security     the mesh CA's directory
mesh demo [canary] [--offline]              cli.demo          the sample app on the mesh
mesh install | inject | proxy-init | check  cli.cluster_*    the cluster (parsers: cli.cluster_args)
mesh stat | edges | top | diagnostics | dashboard  cli.viz_*   what the mesh does (parsers: cli.viz_args)
mesh version                                here
```

`main(argv, stdout=..., stderr=...)` parses, sets up logging and runs the command with the
given streams (tests capture them). A command's module is imported only when it runs, for
start-up cost: a `mesh proxy` process must not load the engine (pydantic, jsonschema, CEL),
nor `mesh tap` anything but the standard library. Exit codes are in `cli.output` and in every
`--help` (`cli.args`): a bad flag, a `CommandError` or a `LoadError` is one line,
``error: ...``, and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TextIO, cast

import turnout
from turnout.cli.args import (
    MeshParser,
    add_namespace,
    add_pod_ports,
    duration_ms,
    host_port,
    label,
    positive_duration_ms,
    positive_float,
    positive_int,
    sample_per_million,
    workload,
)
from turnout.cli.cluster_args import cluster_parsers
from turnout.cli.errors import CommandError
from turnout.cli.output import EXIT_OK, EXIT_UNLOADABLE, add_files, add_max_file_size
from turnout.cli.viz_args import DEFAULT_DASHBOARD_PORT, viz_parsers
from turnout.engine.config import (
    DEFAULT_ADMIN_ADDRESS,
    DEFAULT_PROMETHEUS_ADDRESS,
    DEFAULT_XDS_ADDRESS,
)
from turnout.engine.errors import LoadError
from turnout.engine.identity.settings import (
    DEFAULT_CLOCK_SKEW_MS,
    DEFAULT_JOIN_TOKEN_TTL_MS,
    DEFAULT_LEAF_LIFETIME_MS,
    DEFAULT_TRUST_DOMAIN,
)

Runner = Callable[[argparse.Namespace, TextIO, TextIO], int]


def _manifest_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("validate", help="validate manifests like the API server would")
    add_files(p)
    p.add_argument(
        "--crds",
        action="append",
        default=[],
        metavar="PATH",
        help="also validate against these CRDs (openAPIV3Schema + CEL rules)",
    )
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(run="manifests:run_validate")

    p = sub.add_parser(
        "routes", help="show the route tables a control plane serves (or -f manifests compile to)"
    )
    add_files(p, required=False)
    add_control_plane(p)
    p.add_argument("-o", "--output", choices=("table", "wide", "yaml", "json"), default="table")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument(
        "--live",
        action="store_true",
        help="add SUCCESS RPS LATENCY_P50/P95/P99 from proxies' /metrics (like linkerd viz routes)",
    )
    p.add_argument(
        "--metrics",
        "--admin",
        dest="metrics",
        action="append",
        default=[],
        metavar="URL",
        help="with --live: a proxy's metrics URL or admin HOST:PORT; repeatable",
    )
    p.add_argument(
        "-t",
        "--window",
        type=window_seconds,
        default=10.0,
        metavar="DURATION",
        help="with --live: the window (10, 10s, 1m; default 10s): between the two scrapes, or"
        " Prometheus' increase() range",
    )
    p.add_argument(
        "--prometheus",
        metavar="URL",
        help="with --live and no --metrics: query this Prometheus (default: the control"
        " plane's, else its proxies are scraped directly)",
    )
    p.set_defaults(run="manifests:run_routes")
    rsub = p.add_subparsers(dest="routes_command", metavar="SUBCOMMAND")
    e = rsub.add_parser("explain", help="explain how one request would be routed")
    add_files(e, required=False)
    add_control_plane(e)
    e.add_argument(
        "--via",
        required=True,
        metavar="KIND/[NS/]NAME[:PORT]",
        help="the parent: service/NS/NAME:PORT, svc/NAME -n NS, gateway/NS/NAME (kind any case;"
        " svc, gtw); the port may be left out when there is only one",
    )
    add_namespace(e, default=None, help="namespace of a --via that names none (default: default)")
    e.add_argument("--from-namespace", metavar="NS", help="client namespace (consumer routes)")
    e.add_argument(
        "--from-identity",
        metavar="IDENTITY",
        help="client mTLS identity (<sa>.<ns>.serviceaccount.identity.<domain>): also decide"
        " authorization at the destination (docs/policy.md)",
    )
    e.add_argument(
        "--from-ip",
        metavar="IP",
        help="client address for the authorization decision (default 10.0.0.1)",
    )
    e.add_argument("--method", "-X", default="GET")
    e.add_argument("--url", required=True)
    e.add_argument(
        "-H", "--header", dest="headers", action="append", default=[], metavar="'Name: value'"
    )
    e.add_argument("-o", "--output", choices=("text", "json"), default="text")
    e.set_defaults(run="manifests:run_explain")

    p = sub.add_parser("test", help="run route contract tests (for CI)")
    add_files(p)
    p.add_argument("contracts", nargs="+", metavar="CONTRACT")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    p.set_defaults(run="manifests:run_test")


def window_seconds(text: str) -> float:
    """``10``, ``10s``, ``500ms``, ``1m`` -> seconds (`--window`; argparse reports a bad one)."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    return float(text)


def add_control_plane(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--control-plane",
        metavar="HOST:PORT",
        help="the admin address of a running `mesh serve` to read the table from, when no -f"
        f" is given (default {DEFAULT_ADMIN_ADDRESS})",
    )


def _control_plane_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the control plane: watch manifests, serve ADS")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dir", metavar="DIR", help="manifests directory (watched)")
    src.add_argument("--kubernetes", action="store_true", help="list+watch the API server")
    p.add_argument("--kubeconfig", metavar="FILE", help="with --kubernetes (default: in-cluster)")
    p.add_argument("--context", metavar="NAME", help="with --kubernetes: kubeconfig context")
    add_max_file_size(p)
    p.add_argument(
        "--xds",
        default=DEFAULT_XDS_ADDRESS,
        metavar="HOST:PORT",
        help=f"ADS (gRPC); :0 = any free port (default {DEFAULT_XDS_ADDRESS})",
    )
    p.add_argument(
        "--admin",
        default=DEFAULT_ADMIN_ADDRESS,
        metavar="HOST:PORT",
        help="/ready /live /metrics /debug/table /debug/diagnostics, what `mesh routes` reads"
        f" (default {DEFAULT_ADMIN_ADDRESS})",
    )
    p.add_argument(
        "--prometheus-sd",
        metavar="FILE",
        help="keep FILE a Prometheus file_sd target list of the connected proxies' admin"
        " ports (labels namespace, workload, pod), rewritten when they connect or leave",
    )
    p.add_argument(
        "--prometheus",
        nargs="?",
        const=DEFAULT_PROMETHEUS_ADDRESS,
        metavar="HOST:PORT",
        help="start `prometheus` listening there (default"
        f" {DEFAULT_PROMETHEUS_ADDRESS}; :0 = a free port), scraping the proxies and this"
        " admin port; stopped with the control plane",
    )
    p.add_argument(
        "--prometheus-url",
        metavar="URL",
        help="a Prometheus that already scrapes the proxies (the cluster's): named in"
        " /debug/diagnostics, so the viz commands and the dashboard query it (not with"
        " --prometheus)",
    )
    p.add_argument(
        "--dashboard",
        nargs="?",
        const=f"127.0.0.1:{DEFAULT_DASHBOARD_PORT}",
        metavar="HOST:PORT",
        help="serve the web dashboard there too (default 127.0.0.1:50750, as `mesh"
        " dashboard`; :0 = a free port)",
    )
    p.add_argument(
        "--identity-dir",
        metavar="DIR",
        help="serve the identity service (Certify) on the --xds port from this CA directory"
        " (mesh identity init); tokens: join tokens, or TokenReviews with --kubernetes",
    )
    p.add_argument(
        "--injector",
        type=host_port,
        metavar="HOST:PORT",
        help="serve the proxy injector webhook (AdmissionReview v1 over HTTPS, POST /inject)",
    )
    p.add_argument(
        "--injector-cert-dir",
        metavar="DIR",
        help="with --injector: the serving certificate, tls.crt and tls.key (read again when"
        " they change)",
    )
    p.add_argument(
        "--leader-elect",
        action="store_true",
        help="with --kubernetes: only the holder of a coordination.k8s.io Lease writes status"
        " (every replica serves xDS)",
    )
    p.add_argument(
        "--lease-namespace",
        metavar="NS",
        help="with --leader-elect: the Lease's namespace (default: the pod's, else turnout)",
    )
    p.add_argument(
        "--pod-name",
        metavar="NAME",
        help="with --leader-elect: this replica's holder identity (default: $POD_NAME, else"
        " the host name)",
    )
    p.add_argument(
        "--lease-duration",
        type=int,
        default=15,
        metavar="SECONDS",
        help="with --leader-elect: how long a silent leader's Lease holds (default 15)",
    )
    p.add_argument(
        "--lease-renew-deadline",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with --leader-elect: a leader that cannot renew this long stops (default 10)",
    )
    p.add_argument(
        "--lease-retry-period",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="with --leader-elect: between tries to acquire or renew (default 2)",
    )
    p.set_defaults(run="control_plane:run_serve")

    p = sub.add_parser("bootstrap", help="print the gRPC xDS bootstrap JSON of a workload")
    p.add_argument(
        "--xds", required=True, type=host_port, metavar="HOST:PORT", help="the ADS server"
    )
    add_namespace(p, help="namespace of the workload (default: default)")
    p.add_argument(
        "--workload", required=True, type=workload, metavar="KIND/NAME", help="deployment/NAME"
    )
    p.add_argument("--node-id", metavar="ID", help="node id (default grpc~NS~KIND/NAME)")
    p.add_argument(
        "--certs",
        metavar="DIR",
        help="add a file_watcher certificate provider for the files `mesh identity agent"
        " --out DIR` keeps (gRFC A29)",
    )
    p.add_argument(
        "--cert-refresh-interval",
        type=positive_int,
        default=60,
        metavar="SECONDS",
        help="how often gRPC re-reads the --certs files (default 60)",
    )
    p.add_argument(
        "--label",
        action="append",
        type=label,
        metavar="KEY=VALUE",
        help="a pod label of the workload (repeatable): which policies select a proxyless"
        " gRPC server (grpc.server(xds=True))",
    )
    p.set_defaults(run="control_plane:run_bootstrap")


def _data_plane_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("proxy", help="run a proxy: outbound routing, inbound metrics, admin")
    add_files(p, required=False)
    p.add_argument(
        "--xds", type=host_port, metavar="HOST:PORT", help="ADS server to take tables from"
    )
    p.add_argument(
        "--xds-protocol",
        choices=("delta", "sotw"),
        metavar="{delta,sotw}",
        help="with --xds: incremental xDS (default; state of the world when the server answers"
        " UNIMPLEMENTED) or state of the world only; docs/xds.md",
    )
    add_namespace(p, help="namespace of the workload (default: default)")
    p.add_argument(
        "--workload",
        type=workload,
        default="deployment/proxy",
        metavar="KIND/NAME",
        help="the workload this proxy fronts (metrics labels), e.g. deployment/web",
    )
    p.add_argument("--pod", default="", help="pod name for the metrics' pod label")
    p.add_argument(
        "--label",
        action="append",
        default=[],
        type=label,
        metavar="KEY=VALUE",
        help="a label of the workload (repeatable): what Server and policy selectors match",
    )
    add_pod_ports(p)
    p.add_argument(
        "--opaque-ports",
        default="",
        metavar="PORTS",
        help="app ports proxied as TCP without protocol detection (config.linkerd.io/"
        "opaque-ports: 3306,4000-4100)",
    )
    p.add_argument(
        "--outbound", type=host_port, metavar="HOST:PORT", help="where the app sends its requests"
    )
    p.add_argument(
        "--inbound", type=host_port, metavar="HOST:PORT", help="where clients reach the app"
    )
    p.add_argument("--app", type=host_port, metavar="HOST:PORT", help="the local app (--inbound)")
    p.add_argument("--admin", type=host_port, metavar="HOST:PORT", help="/metrics /ready /tap")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="processes serving the listeners (SO_REUSEPORT; one admin port sums them)",
    )
    p.add_argument(
        "--gateway",
        metavar="NS/NAME[:PORT]",
        help="serve that Gateway's listener (default port 80) on --outbound, as its data plane",
    )
    p.add_argument(
        "--service-listeners",
        action="store_true",
        help="also listen on each Service's cluster IP and port of the table: the address a"
        " client connects to is its destination Service (not with --gateway)",
    )
    p.add_argument(
        "--transparent",
        action="store_true",
        help="take the connections `mesh proxy-init`'s iptables rules redirect: outbound routes"
        " by each one's original destination (SO_ORIGINAL_DST), inbound forwards to"
        " 127.0.0.1:<original port> (--app not needed); docs/capture.md",
    )
    p.add_argument(
        "--refuse-unknown",
        action="store_true",
        help="with --transparent: reset outbound connections to addresses the table does not"
        " know (default: forward them untouched)",
    )
    p.add_argument(
        "--upstream-read-timeout",
        type=duration_ms,
        metavar="DURATION",
        help="longest upstream silence on a request whose route sets no timeout, then 504"
        " (default 60s; 0: wait forever)",
    )
    p.add_argument(
        "--trace-otlp",
        type=host_port,
        metavar="HOST:PORT",
        help="export an OpenTelemetry span per request to this collector's OTLP/HTTP port"
        " (JSON to /v1/traces, plaintext, e.g. :4318) and continue W3C traceparent / B3"
        " traces; docs/tracing.md",
    )
    p.add_argument(
        "--trace-sample",
        type=sample_per_million,
        metavar="RATE",
        help="with --trace-otlp: the share 0..1 of new traces recorded (default 1); an"
        " incoming trace's sampled flag is honoured",
    )
    p.add_argument(
        "--identity",
        metavar="NAME",
        help="mesh TLS (docs/mtls.md) as this identity, <sa>.<ns>.serviceaccount.identity.<domain>:"
        " the inbound port then takes TLS and plaintext, endpoints with an identity get mTLS",
    )
    p.add_argument(
        "--identity-token-file",
        metavar="FILE",
        help="the token proving the identity (mesh identity token, or a service account"
        " token); read again on every renewal",
    )
    p.add_argument(
        "--identity-addr",
        type=host_port,
        metavar="HOST:PORT",
        help="the identity service (default: the --xds address)",
    )
    p.add_argument(
        "--require-mtls",
        action="store_true",
        help="outbound fails closed: a request whose endpoint has no identity is answered 502"
        " and nothing is sent to it (needs --identity)",
    )
    p.set_defaults(run="data_plane:run_proxy_command")

    p = sub.add_parser(
        "authz", help="a workload's inbound authorizations, live (like linkerd viz authz)"
    )
    p.add_argument("target", metavar="KIND/NAME", help="the workload, e.g. deploy/web")
    add_namespace(p, help="the workload's namespace (default: default)")
    p.add_argument(
        "--admin",
        action="append",
        default=[],
        metavar="HOST:PORT[,HOST:PORT]",
        help="the workload's proxies' admin (or metrics URL); repeatable",
    )
    p.add_argument(
        "--window",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds between the two scrapes (default 10)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="per server port, the clients arriving over mTLS and in plaintext instead",
    )
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(run="live_authz:run_authz")


def _security_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("identity", help="the mesh CA: trust anchor, issuer, join tokens")
    isub = p.add_subparsers(dest="identity_command", required=True, metavar="SUBCOMMAND")

    def dir_flag(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dir", required=True, metavar="DIR", help="the identity directory")

    q = isub.add_parser("init", help="create a trust anchor, an issuer and a join token key")
    dir_flag(q)
    q.add_argument(
        "--domain", default=DEFAULT_TRUST_DOMAIN, help="trust domain (default %(default)s)"
    )
    q.add_argument(
        "--lifetime",
        type=positive_duration_ms,
        default=DEFAULT_LEAF_LIFETIME_MS,
        metavar="DURATION",
        help="validity of issued leaves, e.g. 24h, 90m (default 24h)",
    )
    q.add_argument(
        "--clock-skew",
        type=duration_ms,
        default=DEFAULT_CLOCK_SKEW_MS,
        metavar="DURATION",
        help="allowance added to both ends of a leaf's validity (default 20s; 0 for none)",
    )
    q.set_defaults(run="security:run_identity_init")

    q = isub.add_parser("rotate", help="rotate the issuer, or the anchor in three steps")
    dir_flag(q)
    which = q.add_mutually_exclusive_group(required=True)
    which.add_argument("--issuer", action="store_true", help="a new issuer from the anchor")
    which.add_argument(
        "--anchor", action="store_true", help="step 1: trust a new anchor next to the old one"
    )
    which.add_argument(
        "--drop-old-anchor", action="store_true", help="step 3: trust only the new anchor"
    )
    q.set_defaults(run="security:run_identity_rotate")

    q = isub.add_parser("token", help="print a join token for a service account (embedded mode)")
    dir_flag(q)
    add_namespace(q, help="namespace of the service account (default: default)")
    q.add_argument("--service-account", required=True, metavar="SA")
    q.add_argument(
        "--ttl",
        type=positive_duration_ms,
        default=DEFAULT_JOIN_TOKEN_TTL_MS,
        metavar="DURATION",
        help="how long the token is accepted (default 24h)",
    )
    q.set_defaults(run="security:run_identity_token")

    q = isub.add_parser("status", help="what the CA trusts and when it expires")
    dir_flag(q)
    q.set_defaults(run="security:run_identity_status")

    q = isub.add_parser(
        "agent", help="keep a workload's certificate in files (proxyless gRPC, file_watcher)"
    )
    q.add_argument(
        "--identity",
        required=True,
        metavar="NAME",
        help="<sa>.<ns>.serviceaccount.identity.<domain>",
    )
    q.add_argument("--identity-token-file", required=True, metavar="FILE", help="join or SA token")
    q.add_argument(
        "--addr", required=True, type=host_port, metavar="HOST:PORT", help="the identity service"
    )
    q.add_argument("--out", required=True, metavar="DIR", help="where cert.pem, key.pem, ca.pem go")
    q.add_argument("--once", action="store_true", help="one certificate, then exit")
    q.set_defaults(run="security:run_identity_agent")


def _demo_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the sample app on the mesh and watch live route stats")
    p.add_argument(
        "--offline", action="store_true", help="only compile, explain and test the examples"
    )
    p.add_argument(
        "--duration",
        type=positive_float,
        metavar="SECONDS",
        help="stop after this long (default: Ctrl-C)",
    )
    p.add_argument(
        "--interval",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="refresh of the live table",
    )
    p.add_argument("--rps", type=positive_float, default=20.0, help="vote-bot requests per second")
    p.add_argument(
        "scenario", nargs="?", choices=("canary",), help="canary: replay Flagger's canary steps"
    )
    p.add_argument("--fail", action="store_true", help="canary: the canary answers errors")
    p.add_argument(
        "--step-seconds", type=positive_float, default=5.0, metavar="S", help="canary: one tick"
    )
    p.add_argument("--provider", choices=("linkerd", "gatewayapi"), default="linkerd")
    p.add_argument(
        "--grpc-via-proxy",
        action="store_true",
        help="web v2 calls emoji and voting through its proxy (HTTP/2); v1 stays proxyless",
    )
    p.set_defaults(run="demo:run_demo")


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = MeshParser(
        prog="mesh", description="Turnout service mesh tooling"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _manifest_parsers(sub)
    _control_plane_parsers(sub)
    _data_plane_parsers(sub)
    _security_parsers(sub)
    _demo_parsers(sub)
    cluster_parsers(sub)
    viz_parsers(sub)
    p = sub.add_parser("version", help="print the version of Turnout")
    p.set_defaults(run=None)
    return parser


def runner_of(spec: str) -> Runner:
    """``"manifests:run_validate"`` -> the function, importing its module now."""
    module, _, name = spec.partition(":")
    return cast(Runner, getattr(importlib.import_module(f"turnout.cli.{module}"), name))


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except CommandError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_UNLOADABLE
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=err,
    )
    if args.run is None:
        print(f"mesh {turnout.__version__}", file=out)
        return EXIT_OK
    # `mesh demo --offline` runs other command lines with the same streams.
    args.mesh = lambda more: main(more, stdout=out, stderr=err)
    try:
        return runner_of(args.run)(args, out, err)
    except (CommandError, LoadError) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_UNLOADABLE
