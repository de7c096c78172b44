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


def proxy_init_parsers(sub: Sub) -> None:
    """`mesh proxy-init`."""


def check_parsers(sub: Sub) -> None:
    """`mesh check`."""


def cluster_parsers(sub: Sub) -> None:
    install_parsers(sub)
    inject_parsers(sub)
    proxy_init_parsers(sub)
    check_parsers(sub)
