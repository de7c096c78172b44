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
    _values_flags(p)
    p.set_defaults(run="cluster_install:run_install")

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


def proxy_init_parsers(sub: Sub) -> None:
    """`mesh proxy-init`."""


def check_parsers(sub: Sub) -> None:
    """`mesh check`."""


def cluster_parsers(sub: Sub) -> None:
    install_parsers(sub)
    inject_parsers(sub)
    proxy_init_parsers(sub)
    check_parsers(sub)
