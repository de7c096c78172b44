"""What the control plane's compiles can reuse of the policy between changes.

```
policy_reads(o)   compile_policy reads o?  every object but a route without a Server parent
PolicyCache       compile_policy(those objects), again only when one is not the same object
SMI_KINDS         objects that make smi_to_routes necessary
```
The policy adapter reads routes only through a `policy.linkerd.io` Server parentRef
(`adapters/policy/linkerd.py`), so a route edit elsewhere costs no policy compile; a test
checks the equality on every golden policy input.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from turnout.adapters.policy import PolicyResult, compile_policy
from turnout.engine.model import GRPCRoute, HTTPRoute, Loaded, Resource, Resources
from turnout.engine.model.authz import LINKERD_POLICY_GROUP
from turnout.engine.model.smi import AnyTrafficSplit, TrafficSplitRoute

SMI_KINDS = (*AnyTrafficSplit.__args__, TrafficSplitRoute)


def policy_reads(o: Loaded[Resource]) -> bool:
    """Whether `compile_policy` reads `o`: any object but a route without a Server parent."""
    obj = o.obj
    if not isinstance(obj, HTTPRoute | GRPCRoute):
        return True
    return any(p.group == LINKERD_POLICY_GROUP and p.kind == "Server" for p in obj.spec.parent_refs)


@dataclass(slots=True)
class PolicyCache:
    """`compile_policy` of a snapshot, from only what it reads (`policy_reads`), recompiled
    only when one of those objects is not the same object as last time."""

    _last: tuple[tuple[Loaded[Resource], ...], PolicyResult] | None = None

    def __call__(self, objects: Iterable[Loaded[Resource]]) -> PolicyResult:
        reads = tuple(o for o in objects if policy_reads(o))
        return self.of_reads(reads)

    def of_reads(self, reads: tuple[Loaded[Resource], ...]) -> PolicyResult:
        if self._last is None or self._last[0] != reads:
            self._last = (reads, compile_policy(Resources(reads)))
        return self._last[1]
