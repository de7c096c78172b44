"""`mesh install --crds`: our CRDs, and a note on the Gateway API CRDs Turnout watches.

```
turnout/engine/crds/*.yaml ──label part-of: turnout──> own_crds() ──> stdout (YAML)
cluster CRDs (one LIST, optional) ─┬─> gateway_api_notes: each watched Gateway API kind
                                   │   installed at the version we watch, or how to get it
                                   └─> foreign_crds: ours the cluster already has from
                                       Linkerd/Istio (--skip-existing leaves them out)
```

The Gateway API CRDs are not ours to ship (`kubernetes-sigs/gateway-api` releases them, and
a cluster has one copy for every implementation), so `--crds` never prints them; the notes
go to stderr, keeping stdout a manifest. A CRD of ours that exists without our label was
installed by another mesh: applying ours would replace its schema (and could drop versions
it stores), so `--skip-existing` leaves it alone. No URL is fetched: the notes say what to
run. Deliberately not here: reaching the cluster (`cluster`), printing (`cli`).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from turnout.cluster import names
from turnout.cluster.install.labels import PART_OF
from turnout.engine.sources.k8s.kinds import GW, WATCHED_KINDS, KindSpec

Raw = dict[str, Any]

GATEWAY_API_RELEASE = "v1.6.1"
"""The Gateway API release whose CRDs Turnout was built against (standard channel)."""
RELEASES = "https://github.com/kubernetes-sigs/gateway-api/releases/download"
STANDARD_INSTALL = f"{RELEASES}/{GATEWAY_API_RELEASE}/standard-install.yaml"
EXPERIMENTAL_INSTALL = f"{RELEASES}/{GATEWAY_API_RELEASE}/experimental-install.yaml"
EXPERIMENTAL_GROUP = "gateway.networking.x-k8s.io"
OWN_CRDS = Path(str(resources.files("turnout.engine") / "crds"))
"""The CRDs shipped in the package (a link to the clone's `crds/`; `engine.pipeline` reads
the same folder)."""


@functools.cache
def _files() -> tuple[tuple[str, Raw], ...]:
    out = []
    for path in sorted(Path(OWN_CRDS).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                out.append((path.name, doc))
    return tuple(out)


def own_crds() -> list[Raw]:
    """Every CRD Turnout ships, labelled ``app.kubernetes.io/part-of: turnout``."""
    crds = []
    for _, doc in _files():
        crd = copy.deepcopy(doc)
        meta = crd.setdefault("metadata", {})
        meta["labels"] = {**(meta.get("labels") or {}), names.PART_OF_LABEL: PART_OF}
        crds.append(crd)
    return crds


def gateway_api_kinds() -> tuple[KindSpec, ...]:
    """The watched kinds whose CRDs the Gateway API project releases."""
    return tuple(k for k in WATCHED_KINDS if k.group in (GW, EXPERIMENTAL_GROUP))


def crd_name(spec: KindSpec) -> str:
    return f"{spec.plural}.{spec.group}"


def served_versions(crd: Mapping[str, Any]) -> list[str]:
    versions = (crd.get("spec") or {}).get("versions") or []
    return [str(v.get("name")) for v in versions if v.get("served")]


def _how_to_get() -> list[str]:
    return [
        f"note: get the Gateway API CRDs (standard channel, {GATEWAY_API_RELEASE} or newer):"
        f" kubectl apply --server-side -f {STANDARD_INSTALL}",
        "note: XBackendTrafficPolicy (retry budgets) is in the experimental channel:"
        f" kubectl apply --server-side -f {EXPERIMENTAL_INSTALL}",
    ]


def gateway_api_notes(cluster: Mapping[str, Raw] | None, why_not: str = "") -> list[str]:
    """What stderr says about the Gateway API CRDs: checked against `cluster`'s CRDs (by
    name), or, with no cluster to ask, which kinds Turnout watches and how to get them."""
    kinds = gateway_api_kinds()
    if cluster is None:
        watched = ", ".join(f"{k.kind} {k.version}" for k in kinds)
        return [
            f"note: the Gateway API CRDs were not checked ({why_not or 'no cluster'});"
            f" Turnout watches {watched}",
            *_how_to_get(),
        ]
    lines, missing = [], False
    for spec in kinds:
        optional = spec.group == EXPERIMENTAL_GROUP
        crd = cluster.get(crd_name(spec))
        served = served_versions(crd) if crd else []
        if spec.version in served:
            lines.append(f"note: ✔ {crd_name(spec)} serves {spec.version}")
            continue
        missing = missing or not optional
        found = f"serves {', '.join(served) or 'no version'}" if crd else "is not installed"
        tail = " (optional: retry budgets)" if optional else ""
        lines.append(f"note: × {crd_name(spec)} {found}, Turnout watches {spec.version}{tail}")
    if missing or any(crd_name(k) not in cluster for k in kinds):
        lines += _how_to_get()
    return lines


def foreign_crds(cluster: Mapping[str, Raw]) -> list[str]:
    """Names of our CRDs the cluster has without our label (another mesh installed them)."""
    out = []
    for crd in own_crds():
        name = crd["metadata"]["name"]
        theirs = cluster.get(name)
        if theirs is None:
            continue
        their_labels = (theirs.get("metadata") or {}).get("labels") or {}
        if their_labels.get(names.PART_OF_LABEL) != PART_OF:
            out.append(name)
    return out
