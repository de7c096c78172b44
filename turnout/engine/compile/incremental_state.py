"""The incremental compiler's state: views in tie-break order, per-port and per-cluster state,
and the snapshot values its change detection compares (see `incremental.py`).

```
View        one view of a Service port: (route_order, unit) -> that unit's rules, sorted
Ordered     values in route order by bisection (statuses, findings)
dep_values  every key a unit, parent or cluster can read -> what is there now
```
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from itertools import chain

from turnout.engine import ir
from turnout.engine.compile.backends import ReadyCheck, ReadyKey
from turnout.engine.compile.context import ClusterUse
from turnout.engine.compile.index import DepKey, Index
from turnout.engine.compile.parents import ServicePort
from turnout.engine.compile.table import GatewayPort
from turnout.engine.compile.units import RouteUnit, UnitKey
from turnout.engine.diagnostics import Diagnostic
from turnout.engine.model import GRPCRoute, HTTPRoute, Loaded, Resource

Owner = tuple[str, str, str, int | str]
"""Who uses a cluster: ``("unit", kind, ns, name)`` or ``("parent", ns, svc, port)``."""


@dataclass(slots=True)
class View:
    """One view of a Service port: each unit's rules, in tie-break order (`values[i]` are
    the rules of the unit at `order[i]`, so the view's rules are one C-level chain)."""

    order: list[tuple[tuple[str, str, str], UnitKey]] = field(default_factory=list)
    values: list[tuple[ir.Rule, ...]] = field(default_factory=list)
    rules: dict[UnitKey, tuple[ir.Rule, ...]] = field(default_factory=dict)

    def put(self, unit: RouteUnit, rules: tuple[ir.Rule, ...]) -> None:
        at = bisect_left(self.order, (unit.order, unit.key))
        if unit.key in self.rules:
            self.values[at] = rules
        else:
            self.order.insert(at, (unit.order, unit.key))
            self.values.insert(at, rules)
        self.rules[unit.key] = rules

    def drop(self, unit: RouteUnit) -> None:
        if self.rules.pop(unit.key, None) is not None:
            at = bisect_left(self.order, (unit.order, unit.key))
            del self.order[at]
            del self.values[at]

    def all_rules(self) -> list[ir.Rule]:
        return list(chain.from_iterable(self.values))


@dataclass(slots=True)
class Ordered:
    """Values kept in tie-break order (`route_order`, then the unit key), by bisection."""

    keys: list[tuple[tuple[str, str, str], UnitKey]] = field(default_factory=list)
    values: list[object] = field(default_factory=list)

    def put(self, unit: RouteUnit, value: object) -> None:
        at = bisect_left(self.keys, (unit.order, unit.key))
        self.keys.insert(at, (unit.order, unit.key))
        self.values.insert(at, value)

    def drop(self, unit: RouteUnit) -> None:
        at = bisect_left(self.keys, (unit.order, unit.key))
        if at < len(self.keys) and self.keys[at] == (unit.order, unit.key):
            del self.keys[at]
            del self.values[at]


@dataclass(slots=True)
class ReadyState:
    ready: tuple[bool, int]
    deps: frozenset[DepKey]
    per_unit: dict[UnitKey, list[Diagnostic]] = field(default_factory=dict)


@dataclass(slots=True)
class ServiceState:
    touched: dict[UnitKey, ServicePort] = field(default_factory=dict)
    """Units attached to this port, rules or not (they make it a parent)."""
    producer: View = field(default_factory=View)
    consumers: dict[str, View] = field(default_factory=dict)
    parent: ir.ServiceParent | None = None
    deps: frozenset[DepKey] = frozenset()
    uses: tuple[tuple[str, ClusterUse], ...] = ()


@dataclass(slots=True)
class ClusterState:
    owners: dict[Owner, ClusterUse] = field(default_factory=dict)
    grpc: set[Owner] = field(default_factory=set)
    """Owners that use it for a GRPCRoute (the cluster then speaks HTTP/2)."""

    def add(self, owner: Owner, use: ClusterUse) -> None:
        self.owners[owner] = use
        if use.grpc:
            self.grpc.add(owner)

    def drop(self, owner: Owner) -> None:
        self.owners.pop(owner, None)
        self.grpc.discard(owner)

    cluster: ir.Cluster | None = None
    deps: frozenset[DepKey] = frozenset()


def is_route(o: Loaded[Resource]) -> bool:
    return isinstance(o.obj, HTTPRoute | GRPCRoute)


def ready_key(check: ReadyCheck) -> ReadyKey:
    t = check.target
    return (t.namespace, t.service, t.port)


def same(a: object, b: object) -> bool:
    return a is b or a == b


def same_tuple(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """Equal, element by element, comparing identity first (what tuple `==` does)."""
    return a is b or (len(a) == len(b) and a == b)


def dep_values(
    index: Index, gports: dict[tuple[str, str, int], GatewayPort]
) -> dict[DepKey, object]:
    """Every key a unit, parent or cluster can read, with what it reads there."""
    out: dict[DepKey, object] = {}
    for (ns, name), svc in index.services.items():
        out[("Service", ns, name)] = svc
    for (ns, name), gw in index.gateways.items():
        out[("Gateway", ns, name)] = gw
    for name, ns_obj in index.namespaces.items():
        out[("Namespace", "", name)] = ns_obj
    for name, cls in index.classes.items():
        out[("GatewayClass", "", name)] = cls
    for ns, grants in index.grants.items():
        out[("grants", ns, "")] = tuple(grants)
    for (ns, name), fault in index.faults.items():
        out[("FaultInjection", ns, name)] = fault
    for (ns, name), secret in index.secrets.items():
        out[("Secret", ns, name)] = secret
    for (ns, name), slices in index.slices.items():
        out[("slices", ns, name)] = tuple(slices)
    for (ns, name), account in index.accounts.items():
        out[("Pod", ns, name)] = account
    for (ns, name), policy in index.policies.items():
        out[("policy", ns, name)] = policy
    served: dict[tuple[str, str], set[int]] = {}
    for ns, gw_name, port in gports:
        served.setdefault((ns, gw_name), set()).add(port)
    for (ns, gw_name), ports in served.items():
        out[("listeners", ns, gw_name)] = frozenset(ports)
    return out
