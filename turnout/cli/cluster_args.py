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


def install_parsers(sub: Sub) -> None:
    """`mesh install`, `mesh uninstall`."""


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


def check_parsers(sub: Sub) -> None:
    """`mesh check`."""


def cluster_parsers(sub: Sub) -> None:
    install_parsers(sub)
    inject_parsers(sub)
    proxy_init_parsers(sub)
    check_parsers(sub)
