"""kubectl-style targets of the viz commands: ``deploy/web``, ``svc/web``, ``ns/emojivoto``,
``po/web-7f9c``, ``sts/db``, ``ds/agent``, or a bare kind (``deploy``: all of that kind).

```
parse_target("deploy/web", namespace="emojivoto", all_namespaces=False)
   ──alias table (KINDS)──> Target(kind="deployment", name="web", namespace="emojivoto")
Target.label          the series label naming it: "deployment", "pod", "namespace", "dst_service"
Target.matchers(...)  PromQL label matchers: namespace="emojivoto",deployment="web"
Target.matches(labels) the same test in Python (the direct-scrape source)
```

Workload targets select on the labels our proxies put on their own series (`namespace`,
``<kind>``, `pod`: `turnout.proxy.metrics`); a Service is seen from its clients' outbound
series (`dst_namespace`, `dst_service`), as in linkerd-viz. ``-A`` (or a namespace target)
drops the namespace matcher. A bad target is `TargetError`, one line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Kind = Literal["deployment", "statefulset", "daemonset", "pod", "service", "namespace"]

KINDS: Mapping[str, Kind] = {
    **dict.fromkeys(("deploy", "deployment", "deployments"), "deployment"),
    **dict.fromkeys(("sts", "statefulset", "statefulsets"), "statefulset"),
    **dict.fromkeys(("ds", "daemonset", "daemonsets"), "daemonset"),
    **dict.fromkeys(("po", "pod", "pods"), "pod"),
    **dict.fromkeys(("svc", "service", "services"), "service"),
    **dict.fromkeys(("ns", "namespace", "namespaces"), "namespace"),
}
"""kubectl's names, short names and plurals of the kinds the viz commands know."""

SHORT: Mapping[Kind, str] = {
    "deployment": "deploy",
    "statefulset": "sts",
    "daemonset": "ds",
    "pod": "po",
    "service": "svc",
    "namespace": "ns",
}

_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
"""A DNS-1123 name (what Kubernetes accepts for these kinds)."""


class TargetError(ValueError):
    """A target that names no known kind or no valid name; one line. Stands alone: it is
    the user's typo, raised before anything is asked of the mesh."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    kind: Kind
    name: str | None
    """None: every resource of the kind (``deploy``)."""
    namespace: str | None
    """None: every namespace (``-A``, or a namespace target)."""

    @property
    def label(self) -> str:
        """The label whose values are this kind's names (a row per value)."""
        if self.kind == "service":
            return "dst_service"
        return self.kind

    @property
    def namespace_label(self) -> str:
        return "dst_namespace" if self.kind == "service" else "namespace"

    def matchers(self) -> dict[str, str]:
        """Label name -> exact value the series must carry."""
        out: dict[str, str] = {}
        if self.kind == "namespace":
            if self.name is not None:
                out["namespace"] = self.name
            return out
        if self.namespace is not None:
            out[self.namespace_label] = self.namespace
        if self.name is not None:
            out[self.label] = self.name
        return out

    def promql(self, **extra: str) -> str:
        """``{...}`` of `matchers` plus `extra` (``direction="inbound"``)."""
        pairs = {**self.matchers(), **extra}
        return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(pairs.items())) + "}"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.matchers().items())

    def __str__(self) -> str:
        short = SHORT[self.kind]
        return short if self.name is None else f"{short}/{self.name}"


def parse_target(text: str, *, namespace: str, all_namespaces: bool = False) -> Target:
    """``KIND[/NAME]`` in `namespace` (every namespace with `all_namespaces`)."""
    kind_text, sep, name = text.partition("/")
    kind = KINDS.get(kind_text.lower())
    if kind is None:
        known = ", ".join(sorted({SHORT[k] for k in KINDS.values()}))
        raise TargetError(f"unknown target kind {kind_text!r} in {text!r} (one of: {known})")
    if sep and not _NAME.fullmatch(name):
        raise TargetError(f"not a valid name in target {text!r}: {name!r}")
    ns: str | None = None if all_namespaces or kind == "namespace" else namespace
    return Target(kind=kind, name=name if sep else None, namespace=ns)
