"""The parsers of the cluster commands (`cli.cluster_*` modules run them).

```
mesh install [--crds] | upgrade | uninstall  install_parsers  cli.cluster_install
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

from turnout.cli.args import duration_ms, host_port, positive_int
from turnout.cluster import names

Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _values_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ha",
        action="store_true",
        help="high availability: 3 replicas, one per node, a PodDisruptionBudget (before -f"
        " and --set)",
    )
    p.add_argument(
        "-f",
        "--values",
        action="append",
        metavar="FILE",
        help="a YAML values file (docs/cluster.md lists the keys); repeatable, later wins",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="one value, a dotted key (replicas=2, resources.requests.cpu=200m,"
        " identity.trustDomain=example.org); repeatable, after -f",
    )
    p.add_argument("--image", metavar="IMAGE", help="the controller image (= --set image=...)")
    p.add_argument(
        "--grafana",
        action="store_true",
        help="also the Grafana dashboards, as ConfigMaps labelled grafana_dashboard=1 for"
        " Grafana's sidecar (= --set grafana.dashboards=true; docs/grafana.md)",
    )
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")


def install_parsers(sub: Sub) -> None:
    """`mesh install`, `mesh uninstall`."""
    p = sub.add_parser(
        "install",
        help="print the control plane's manifests (--crds: the CRDs) for kubectl apply -f -",
    )
    p.add_argument(
        "--crds",
        action="store_true",
        help="print Turnout's CRDs instead, and say whether the Gateway API CRDs are there",
    )
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="with --crds: leave out CRDs the cluster has from another mesh (Linkerd, Istio)",
    )
    p.add_argument(
        "--identity-dir",
        metavar="DIR",
        help="the mesh CA from this directory (mesh identity init) instead of a new one",
    )
    p.add_argument("--kubeconfig", metavar="FILE", help="the cluster --crds asks (optional)")
    p.add_argument("--context", metavar="NAME", help="kubeconfig context")
    p.add_argument("--ignore-cluster", action="store_true", help="--crds: do not ask any cluster")
    p.add_argument(
        "--grafana-json",
        metavar="DIR",
        help="instead: write the Grafana dashboards into DIR as JSON files, for a standalone"
        " Grafana (import, or file provisioning)",
    )
    _values_flags(p)
    p.set_defaults(run="cluster_install:run_install")

    p = sub.add_parser(
        "upgrade",
        help="print what mesh install would, with the cluster's trust anchor and injector"
        " certificate (its Secrets), for kubectl apply -f -",
    )
    p.add_argument("--kubeconfig", metavar="FILE", help="the cluster to read the Secrets from")
    p.add_argument("--context", metavar="NAME", help="kubeconfig context")
    _values_flags(p)
    p.set_defaults(run="cluster_install:run_upgrade")

    p = sub.add_parser(
        "uninstall",
        help="name everything mesh install renders, for kubectl delete -f - (--crds: the CRDs)",
    )
    p.add_argument(
        "--crds",
        action="store_true",
        help="name Turnout's CRDs instead (deleting them deletes every object of those kinds)",
    )
    _values_flags(p)
    p.set_defaults(run="cluster_install:run_uninstall")


def inject_parsers(sub: Sub) -> None:
    """`mesh inject`, `mesh uninject`."""
    from turnout.cli.output import add_max_file_size

    def files(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "files",
            nargs="+",
            metavar="FILE",
            help="manifests (YAML, multi-document, JSON, kind: List); a directory is walked;"
            " - for stdin (kubectl get deploy -o yaml | mesh inject - | kubectl apply -f -)",
        )
        add_max_file_size(p)

    p = sub.add_parser(
        "inject",
        help="mesh workloads: annotate their pod templates (or namespaces) for the injector,"
        " or add the proxy itself (--manual)",
    )
    files(p)
    p.add_argument(
        "--manual",
        action="store_true",
        help="write the proxy sidecar and the init container into the manifests (what the"
        " webhook adds when a pod is created) instead of the turnout.dev/inject annotation",
    )
    p.add_argument(
        "--control-plane-namespace",
        default="turnout",
        metavar="NS",
        help="with --manual: the control plane's namespace (default turnout)",
    )
    p.add_argument(
        "--image", metavar="IMAGE", help="with --manual: the proxy's image (default turnout's)"
    )
    p.add_argument(
        "--trust-domain",
        metavar="DOMAIN",
        help="with --manual: the identities' trust domain (default cluster.local)",
    )
    p.set_defaults(run="cluster_inject:run_inject")

    p = sub.add_parser(
        "uninject", help="take out what mesh inject added (the annotation, or the sidecar)"
    )
    files(p)
    p.set_defaults(run="cluster_inject:run_uninject")


def proxy_init_parsers(sub: Sub) -> None:
    """`mesh proxy-init`."""
    p = sub.add_parser(
        "proxy-init",
        help="write the iptables rules that send the pod's TCP through its proxy (init container)",
    )
    p.add_argument(
        "--inbound-port",
        type=_port,
        default=names.PROXY_INBOUND_PORT,
        metavar="PORT",
        help=f"where inbound TCP goes: the proxy's --inbound (default {names.PROXY_INBOUND_PORT})",
    )
    p.add_argument(
        "--outbound-port",
        type=_port,
        default=names.PROXY_OUTBOUND_PORT,
        metavar="PORT",
        help="where outbound TCP goes: the proxy's --outbound"
        f" (default {names.PROXY_OUTBOUND_PORT})",
    )
    p.add_argument(
        "--proxy-uid",
        type=_id,
        default=names.PROXY_UID,
        metavar="UID",
        help=f"the proxy's user: its own traffic is not captured (default {names.PROXY_UID})",
    )
    p.add_argument(
        "--proxy-gid", type=_id, metavar="GID", help="also let this group's traffic through"
    )
    p.add_argument(
        "--admin-port",
        type=_port,
        default=names.PROXY_ADMIN_PORT,
        metavar="PORT",
        help=f"the proxy's admin, never captured inbound (default {names.PROXY_ADMIN_PORT})",
    )
    p.add_argument(
        "--skip-inbound-ports",
        default="",
        metavar="PORTS",
        help="inbound ports that bypass the proxy, e.g. 25,4000-4100",
    )
    p.add_argument(
        "--skip-outbound-ports",
        default="",
        metavar="PORTS",
        help="outbound ports that bypass the proxy (53, DNS, always does)",
    )
    p.add_argument(
        "--skip-subnets",
        default="",
        metavar="CIDRS",
        help="inbound from and outbound to these networks bypass the proxy, e.g. 10.0.0.0/8",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the rules (iptables-save format) only"
    )
    p.add_argument(
        "--iptables",
        choices=("iptables", "iptables-legacy", "iptables-nft"),
        default="iptables",
        help="the iptables of the node's backend (default: iptables, the system's choice)",
    )
    p.set_defaults(run="cluster_capture:run_proxy_init")


def _port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port, 1..65535, got {value}")
    return value


def _id(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a numeric id, got {text!r}")
    return int(text)


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
