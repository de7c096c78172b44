"""The labels and metadata every object `mesh install` renders carries.

``app.kubernetes.io/part-of: turnout`` on everything (what `kubectl get -l` and `mesh
uninstall`'s readers select by, and how `--crds --skip-existing` tells our CRDs from another
mesh's), ``turnout.dev/control-plane-component`` naming the piece, and the version.
"""

from __future__ import annotations

from typing import Any

import turnout
from turnout.cluster import names

PART_OF = "turnout"
VERSION_LABEL = "app.kubernetes.io/version"


def labels(component: str) -> dict[str, str]:
    return {
        names.PART_OF_LABEL: PART_OF,
        names.COMPONENT_LABEL: component,
        VERSION_LABEL: turnout.__version__,
    }


def selector(component: str) -> dict[str, str]:
    """The labels a Service or a Deployment selects its pods by (stable across versions)."""
    return {names.PART_OF_LABEL: PART_OF, names.COMPONENT_LABEL: component}


def metadata(name: str, namespace: str | None, component: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = labels(component)
    return meta
