"""SMI adapter: TrafficSplit v1alpha1..v1alpha4 + HTTPRouteGroup -> HTTPRoute model objects.

```
Resources (parsed, validated) --smi_to_routes--> Resources + TrafficSplitRoute per apex port
   Services, HTTPRouteGroups -> SmiIndex
   TrafficSplits, oldest first -> claimed by an HTTPRoute/GRPCRoute?  -> TrafficSplitConflict
                                  claimed by an older TrafficSplit?   -> TrafficSplitConflict
                                  else trafficsplit_to_httproute (routes.py)
```

Runs in `engine.pipeline` between validation and compile, so the compiler sees nothing but
HTTPRoutes (HTTPROUTE-SEMANTICS §14: a TrafficSplit *is* a producer HTTPRoute on its apex
Service). Conflict rule: Gateway API is the standard, so when a producer HTTPRoute or GRPCRoute
(one in the Service's namespace) has the apex Service as a parent, the TrafficSplit is ignored
for that Service and a `TrafficSplitConflict` warning names both. Consumer routes (other
namespaces) do not conflict: as in GAMMA, they replace the split for their own namespace only.
Of two TrafficSplits for one apex, the older (then `namespace/name` first) wins.

Pure: no I/O; the same snapshot always yields the same routes.
"""

from __future__ import annotations

from datetime import UTC

from turnout.adapters.smi.routes import SmiIndex, http_matches, trafficsplit_to_httproute
from turnout.adapters.smi.weights import fit_weights, split_weights
from turnout.engine.diagnostics import Diagnostic, warning
from turnout.engine.model import GRPCRoute, HTTPRoute, Loaded, Resource, Resources, Service
from turnout.engine.model.smi import (
    AnyTrafficSplit,
    HTTPRouteGroup,
    TrafficSplit,
    TrafficSplitRoute,
    TrafficSplitV1alpha1,
    TrafficSplitV1alpha2,
)

__all__ = [
    "SmiIndex",
    "fit_weights",
    "http_matches",
    "smi_to_routes",
    "split_weights",
    "trafficsplit_to_httproute",
]

_SPLITS = (TrafficSplitV1alpha1, TrafficSplitV1alpha2, TrafficSplit)


def smi_to_routes(resources: Resources, diagnostics: list[Diagnostic]) -> Resources:
    """`resources` plus the routes its TrafficSplits stand for; findings go to `diagnostics`.

    Routes synthesized by an earlier call are dropped first, so calling it twice is harmless."""
    objects = [o for o in resources.objects if not isinstance(o.obj, TrafficSplitRoute)]
    services: dict[tuple[str, str], Service] = {}
    groups: dict[tuple[str, str], Loaded[HTTPRouteGroup]] = {}
    splits: list[Loaded[AnyTrafficSplit]] = []
    claims: dict[tuple[str, str], list[Loaded[Resource]]] = {}
    for o in objects:
        obj = o.obj
        if isinstance(obj, Service):
            services[(obj.namespace, obj.name)] = obj
        elif isinstance(obj, HTTPRouteGroup):
            groups[(obj.namespace, obj.name)] = o  # type: ignore[assignment]
        elif isinstance(obj, _SPLITS):
            splits.append(o)  # type: ignore[arg-type]
        elif isinstance(obj, HTTPRoute | GRPCRoute):
            for ref in obj.spec.parent_refs:
                ns = ref.namespace or obj.namespace
                if ref.group in ("", "core") and ref.kind == "Service" and ns == obj.namespace:
                    claims.setdefault((ns, ref.name), []).append(o)
    if not splits:
        return Resources(tuple(objects))
    index = SmiIndex(services=services, groups=groups)
    winners: dict[tuple[str, str], Loaded[AnyTrafficSplit]] = {}
    out: list[Loaded[Resource]] = list(objects)
    for split in sorted(splits, key=_split_order):
        obj = split.obj
        key = (obj.namespace, obj.spec.service)
        routes = claims.get(key, [])
        if routes:
            names = ", ".join(f"{r.obj.kind} {r.obj.namespace}/{r.obj.name}" for r in routes)
            msg = (
                f"TrafficSplit {obj.namespace}/{obj.name} is ignored: {names} also routes "
                f"Service {key[0]}/{key[1]}, and Gateway API routes take precedence"
            )
            diagnostics.append(warning("TrafficSplitConflict", msg, split.field("spec.service")))
            continue
        first = winners.setdefault(key, split)
        if first is not split:
            msg = (
                f"TrafficSplit {obj.namespace}/{obj.name} is ignored: TrafficSplit "
                f"{first.obj.namespace}/{first.obj.name} already splits Service "
                f"{key[0]}/{key[1]} and is older (or first by namespace/name)"
            )
            diagnostics.append(warning("TrafficSplitConflict", msg, split.field("spec.service")))
            continue
        routes_of = trafficsplit_to_httproute(split, index=index, diagnostics=diagnostics)
        out.extend(routes_of)  # type: ignore[arg-type]
    return Resources(tuple(out))


_NEWEST = "9999-12-31T23:59:59+00:00"


def _split_order(loaded: Loaded[AnyTrafficSplit]) -> tuple[str, str]:
    """Gateway API's tie-break, applied to splits: oldest first, then namespace/name."""
    meta = loaded.obj.metadata
    ts = meta.creation_timestamp
    if ts is None:
        return (_NEWEST, f"{meta.namespace}/{meta.name}")
    stamp = ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)
    return (stamp.isoformat(), f"{meta.namespace}/{meta.name}")
