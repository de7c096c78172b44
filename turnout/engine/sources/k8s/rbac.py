"""The least privilege `mesh serve --kubernetes` needs: the ClusterRole rules of what it does.

```
WATCHED_KINDS ─────────────> get, list, watch   on each watched collection
STATUS_KINDS  ─────────────> update, patch      on its /status subresource
CustomResourceDefinitions ─> get, list, watch   (a CRD installed later is picked up)
Leases ────────────────────> get, create, update (one leader writes status)
TokenReviews ──────────────> create             (the identity service checks SA tokens)
```

`mesh install` renders exactly these rules; the fake API server of the tests enforces
them, so a request the controller makes that is missing here fails a test, not a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from turnout.engine.sources.k8s.kinds import STATUS_KINDS, WATCHED_KINDS, KindSpec

READ = ("get", "list", "watch")
STATUS_WRITE = ("update", "patch")
CRD_GROUP = "apiextensions.k8s.io"
LEASE_GROUP = "coordination.k8s.io"
TOKEN_REVIEW_GROUP = "authentication.k8s.io"


@dataclass(frozen=True, slots=True)
class Rule:
    """One PolicyRule of a ClusterRole."""

    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]

    def to_raw(self) -> dict[str, list[str]]:
        """As a ClusterRole's `rules[]` entry."""
        return {
            "apiGroups": list(self.api_groups),
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }

    def allows(self, group: str, resource: str, verb: str) -> bool:
        """True when this rule grants `verb` on `resource` (``plural`` or ``plural/sub``)."""
        return (
            (group in self.api_groups or "*" in self.api_groups)
            and (resource in self.resources or "*" in self.resources)
            and (verb in self.verbs or "*" in self.verbs)
        )


def controller_rules(kinds: Sequence[KindSpec] = WATCHED_KINDS) -> tuple[Rule, ...]:
    """The ClusterRole rules of the controller, grouped by API group, in a stable order."""
    reads: dict[str, list[str]] = {}
    writes: dict[str, list[str]] = {}
    for spec in kinds:
        reads.setdefault(spec.group, []).append(spec.plural)
        if spec.kind in STATUS_KINDS:
            writes.setdefault(spec.group, []).append(f"{spec.plural}/status")
    rules = [Rule((g,), _unique(rs), READ) for g, rs in reads.items()]
    rules += [Rule((g,), _unique(rs), STATUS_WRITE) for g, rs in writes.items()]
    rules += [
        Rule((CRD_GROUP,), ("customresourcedefinitions",), READ),
        Rule((LEASE_GROUP,), ("leases",), ("get", "create", "update")),
        Rule((TOKEN_REVIEW_GROUP,), ("tokenreviews",), ("create",)),
    ]
    return tuple(rules)


def allowed(rules: Iterable[Rule], group: str, resource: str, verb: str) -> bool:
    """True when any rule grants `verb` on `group`/`resource`."""
    return any(r.allows(group, resource, verb) for r in rules)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
