"""Which proxies a kubectl-style target names, from what they report on xDS (node metadata
``namespace``, ``workload``, ``pod``): what `mesh tap|top|diagnostics` select by.

```
"deploy/web" -n emojivoto ──parse_selection──> Selection(kind="deployment", name="web", ...)
Selection.matches_labels(namespace, "deployment/web", "web-7f9c") ──> True
select_data(/debug/proxies JSON, sel) ──> [{namespace, workload, pod, admin}] one per admin
```

``deploy|deployment/NAME`` and ``svc|service/NAME`` select the proxies whose workload is NAME
(``deployment/NAME`` or ``NAME``: the demo's and the injector's convention, one Deployment per
Service; a Service's real endpoints are `mesh diagnostics endpoints`), ``po|pod/NAME`` one
pod, ``ns|namespace/NAME`` every proxy there. Standard library only: the CLI imports it
without the engine's dependencies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

KINDS: Final[Mapping[str, str]] = {
    "sts": "statefulset",
    "statefulset": "statefulset",
    "statefulsets": "statefulset",
    "ds": "daemonset",
    "daemonset": "daemonset",
    "daemonsets": "daemonset",
    "deploy": "deployment",
    "deployment": "deployment",
    "deployments": "deployment",
    "svc": "service",
    "service": "service",
    "services": "service",
    "po": "pod",
    "pod": "pod",
    "pods": "pod",
    "ns": "namespace",
    "namespace": "namespace",
    "namespaces": "namespace",
}
"""kubectl's names and short names for the kinds a tap can select."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """Which proxies: `kind` is one of `KINDS`' values; `namespace` "" = every namespace."""

    kind: str
    name: str
    namespace: str = ""

    def matches_labels(self, namespace: str, workload: str, pod: str) -> bool:
        if self.kind == "namespace":
            return namespace == self.name
        if self.namespace and namespace != self.namespace:
            return False
        if self.kind == "pod":
            return pod == self.name
        return workload_name(workload) == self.name


def workload_name(workload: str) -> str:
    """``deployment/web-v1`` or ``web-v1`` → ``web-v1``."""
    return workload.rpartition("/")[2]


def parse_selection(target: str, namespace: str = "") -> Selection:
    """``KIND/NAME`` (kubectl's short names allowed); ValueError naming what is wrong."""
    kind, slash, name = target.partition("/")
    if not slash or not name or "/" in name:
        raise ValueError(f"target must be KIND/NAME (e.g. deploy/web), got {target!r}")
    if kind.lower() not in KINDS:
        known = "deploy, svc, po, ns"
        raise ValueError(f"unknown kind {kind!r} in {target!r} (one of {known})")
    return Selection(kind=KINDS[kind.lower()], name=name, namespace=namespace)


def select_data(data: object, sel: Selection) -> list[dict[str, str]]:
    """`select` over ``/debug/proxies``' JSON (`admin.proxies_data`): one entry per admin."""
    proxies = data.get("proxies", []) if isinstance(data, dict) else []
    found: dict[str, dict[str, str]] = {}
    for p in proxies:
        entry = {k: str(p.get(k) or "") for k in ("namespace", "workload", "pod", "admin")}
        if entry["admin"] and sel.matches_labels(
            entry["namespace"], entry["workload"], entry["pod"]
        ):
            found.setdefault(entry["admin"], entry)
    return list(found.values())
