"""The incremental compiler: `compile_table` again, recompiling only what a change touches.

```
snapshot --build_index--> values: DepKey -> object      diffed with the last ones -> changed keys
units:    route -> RouteUnit    recompiled when the route or one of unit.deps changed
services: Service port -> producer/consumer views, each the units' rules in tie-break order
          (a sorted list of (route_order, unit)); rebuilt when a unit of it or its own deps
          (Service, Namespace) changed, else the SAME ir.ServiceParent as before
clusters: name -> owners (units, parents) -> ir.Cluster, rebuilt when its owners, its Service,
          slices, pods or policy changed (an EndpointSlice event rebuilds clusters only)
conflicts per virtual host (cached by the identity of its rules), NoReadyEndpoints per
Service port, statuses per unit; Gateways, their parents and statuses are redone (few)
```
`IncrementalTable.compile(resources)` returns a `CompileResult` equal to
`compile_table(resources)`, which stays the reference: tests apply random edit sequences and
compare both after each one, and `verify_every` (``TURNOUT_VERIFY_INCREMENTAL=N``, read by the
pipeline) makes the
control plane check every Nth result against a full compile and fall back to it (and start
over) when they differ. Unchanged parents, clusters and tuples are the same objects as in the
previous result, so table equality and the xDS server's per-parent caches short-circuit on
identity. Pure in the same sense as `compile_table`: no I/O, no clock; the state is a cache.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, insort
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain

from turnout.engine import ir
from turnout.engine.compile import CompileResult, compile_table
from turnout.engine.compile.backends import (
    ReadyCheck,
    ReadyKey,
    not_ready_warnings,
    ready_endpoints,
    report_fqdn_slices,
)
from turnout.engine.compile.conflicts import (
    MatchKey,
    Shadowed,
    first_reports,
    match_key,
    vhost_conflicts,
)
from turnout.engine.compile.conflicts import views_of as vhosts_of
from turnout.engine.compile.context import DEFAULT_COMPILE_OPTIONS, ClusterUse, CompileOptions, Ctx
from turnout.engine.compile.gateways import (
    Attachments,
    ListenerState,
    evaluate_gateways,
    gateway_status,
)
from turnout.engine.compile.incremental_state import (
    ClusterState,
    Ordered,
    Owner,
    ReadyState,
    ServiceState,
    View,
    dep_values,
    is_route,
    ready_key,
    same,
    same_tuple,
)
from turnout.engine.compile.index import DepKey, Index, build_index, index_objects
from turnout.engine.compile.parents import ServicePort
from turnout.engine.compile.table import (
    GatewayPort,
    ServiceViews,
    cluster_of,
    gateway_parent,
    gateway_ports,
    service_parent,
    service_ports,
)
from turnout.engine.compile.units import RouteUnit, ServiceKey, UnitKey, compile_unit, unit_key
from turnout.engine.diagnostics import Diagnostic, sorted_diagnostics
from turnout.engine.model import GRPCRoute, HTTPRoute, Loaded, Resource, Resources

log = logging.getLogger(__name__)


_MISSING = object()


@dataclass(slots=True)
class IncrementalTable:
    """`compile_table` with a memory: see the module docstring."""

    options: CompileOptions = DEFAULT_COMPILE_OPTIONS
    verify_every: int = 0
    """Check every Nth result against `compile_table` (0: never); the pipeline sets it from
    ``TURNOUT_VERIFY_INCREMENTAL``."""
    compiles: int = 0
    """Results returned so far (what `verify_every` counts)."""
    units_compiled: int = 0
    """Units compiled by the last call (all of them after a reset): for tests and the bench."""
    _values: dict[DepKey, object] = field(default_factory=dict)
    _units: dict[UnitKey, RouteUnit] = field(default_factory=dict)
    _order: list[tuple[tuple[str, str, str], UnitKey]] = field(default_factory=list)
    _statuses: Ordered = field(default_factory=Ordered)
    """Statuses of the units that have any, in route order."""
    _diags: Ordered = field(default_factory=Ordered)
    """Findings of the units that have any, in route order."""
    _gateway_units: dict[UnitKey, RouteUnit] = field(default_factory=dict)
    _services: dict[ServiceKey, ServiceState] = field(default_factory=dict)
    _ports: dict[ServiceKey, ServicePort] = field(default_factory=dict)
    _clusters: dict[str, ClusterState] = field(default_factory=dict)
    _parents: dict[str, ir.Parent] = field(default_factory=dict)
    _conflicts: dict[str, tuple[tuple[ir.Rule, ...], list[Shadowed]]] = field(default_factory=dict)
    _keys: dict[int, tuple[ir.Match, MatchKey]] = field(default_factory=dict)
    _hashes: dict[int, tuple[ir.Rule, tuple[int, ...]]] = field(default_factory=dict)
    """`match_key` hashes of each rule's matches, by the rule's identity."""
    _live_rules: int = 0
    _ready: dict[ReadyKey, dict[UnitKey, tuple[ReadyCheck, ...]]] = field(default_factory=dict)
    _ready_diags: dict[ReadyKey, ReadyState] = field(default_factory=dict)
    _rdeps: dict[DepKey, set[UnitKey]] = field(default_factory=dict)
    _ids: dict[int, Loaded[Resource]] = field(default_factory=dict)
    """The last snapshot's objects by identity (kept alive, so no id is reused)."""
    _others: dict[int, Loaded[Resource]] = field(default_factory=dict)
    """Its objects that are not routes: the index is rebuilt from them when one changed."""
    _index: Index | None = None
    _seen_index: Index | None = None
    """The index `_values` and `_ports` were taken from."""
    _tracking: bool = False
    _last: CompileResult | None = None

    def reset(self) -> None:
        """Forget everything: the next call compiles every unit."""
        fresh = IncrementalTable(options=self.options, verify_every=self.verify_every)
        fresh.compiles = self.compiles
        for name in self.__slots__:
            setattr(self, name, getattr(fresh, name))

    def compile(self, resources: Resources) -> CompileResult:
        result = self._incremental(resources)
        if result is None:  # two routes with one name: no unit identity
            self.reset()
            return compile_table(resources, options=self.options)
        self.compiles += 1
        if self.verify_every and self.compiles % self.verify_every == 0:
            full = compile_table(resources, options=self.options)
            if full != result:
                log.error("incremental compile differs from a full compile; using the full one")
                self.reset()
                return full
        return result

    # ------------------------------------------------------------------ one change

    def _incremental(self, resources: Resources) -> CompileResult | None:
        """The snapshot diffed with the last one by object identity: only the added and
        removed objects are looked at (a few for one edit), unless many changed or the
        non-route objects have a duplicate key: then every route is visited (`_scan`)."""
        objects = resources.objects
        ids = {id(o): o for o in objects}
        prev = self._ids
        added = [o for i, o in ids.items() if i not in prev]
        removed = [o for i, o in prev.items() if i not in ids]
        self._ids = ids
        index = self._index
        many = len(added) + len(removed) > 64 + len(ids) // 4
        if index is None or len(ids) != len(objects) or many:
            return self._scan(resources)
        if any(not is_route(o) for o in chain(added, removed)):
            for o in removed:
                self._others.pop(id(o), None)
            self._others.update((id(o), o) for o in added if not is_route(o))
            index = Index()
            if not index_objects(index, self._others.values()):
                return self._scan(resources)
        dirty: dict[UnitKey, Loaded[HTTPRoute] | Loaded[GRPCRoute] | None] = {}
        for o in removed:
            if is_route(o):
                dirty[unit_key(o)] = None  # type: ignore[arg-type]
        for o in added:
            if is_route(o):
                key = unit_key(o)  # type: ignore[arg-type]
                seen = dirty.get(key, _MISSING)
                if seen is not None and (seen is not _MISSING or key in self._units):
                    return self._scan(resources)  # a second route with this name
                dirty[key] = o  # type: ignore[assignment]
        self._index = index
        return self._compile(index, dirty)

    def _scan(self, resources: Resources) -> CompileResult | None:
        index = build_index(resources)
        keys = [unit_key(r) for r in index.routes]
        if len(set(keys)) != len(keys):
            return None
        self._others = {id(o): o for o in resources.objects if not is_route(o)}
        self._index = index
        return self._compile(index, dict(zip(keys, index.routes, strict=True)), scan=True)

    def _compile(
        self,
        index: Index,
        dirty: dict[UnitKey, Loaded[HTTPRoute] | Loaded[GRPCRoute] | None],
        *,
        scan: bool = False,
    ) -> CompileResult:
        """`dirty`: the routes added or changed (None: removed); with `scan`, every route
        there is (a unit whose route and reads are unchanged is kept)."""
        gctx = Ctx(index=index, options=self.options)
        listeners = evaluate_gateways(gctx)
        gports = gateway_ports(listeners)
        same_index = index is self._seen_index  # no object but routes changed
        changed = set() if same_index else self._diff(dep_values(index, gports))
        if self._tracking != bool(index.slices):  # NoReadyEndpoints is on only with slices
            self._tracking = bool(index.slices)
            self._ready_diags.clear()
        dirty_services: set[ServiceKey] = set()
        dirty_clusters: set[str] = set()
        dirty_ready: dict[ReadyKey, set[UnitKey]] = {}
        if scan:
            dirty.update((k, None) for k in self._units if k not in dirty)
        for dep in changed:
            for key in self._rdeps.get(dep, ()):
                dirty.setdefault(key, self._units[key].route)
        self.units_compiled = 0
        for key, route in dirty.items():
            old = self._units.get(key)
            if route is None:
                if old is not None:
                    self._replace(old, None, dirty_services, dirty_clusters, dirty_ready)
                continue
            if old is not None and same(old.route, route) and old.deps.isdisjoint(changed):
                continue
            new = compile_unit(index, self.options, route, gports)
            self.units_compiled += 1
            self._replace(old, new, dirty_services, dirty_clusters, dirty_ready)
        if not same_index:
            ports = service_ports(index)
            dirty_services.update(
                k for k in ports.keys() | self._ports.keys() if ports.get(k) != self._ports.get(k)
            )
            self._ports = ports
            dirty_services.update(
                k for k, st in self._services.items() if not st.deps.isdisjoint(changed)
            )
            self._seen_index = index
        for skey in dirty_services:
            self._rebuild_service(index, skey, dirty_clusters)
        gateway_parents = self._gateway_parents(gports)
        parents = self._assemble_parents(gateway_parents)
        clusters = self._rebuild_clusters(index, dirty_clusters, changed)
        table = ir.RouteTable(parents=parents, clusters=clusters)
        if (
            self._last is not None
            and same_tuple(self._last.table.parents, parents)
            and (same_tuple(self._last.table.clusters, clusters))
        ):
            table = self._last.table
        diags = self._findings(index, gctx, table, dirty_ready, changed)
        result = self._result(index, table, diags, listeners)
        self._last = result
        return result

    def _diff(self, values: dict[DepKey, object]) -> set[DepKey]:
        old = self._values
        changed = {k for k, v in values.items() if not same(old.get(k, _MISSING), v)}
        changed.update(k for k in old if k not in values)
        self._values = values
        return changed

    def _replace(
        self,
        old: RouteUnit | None,
        new: RouteUnit | None,
        dirty_services: set[ServiceKey],
        dirty_clusters: set[str],
        dirty_ready: dict[ReadyKey, set[UnitKey]],
    ) -> None:
        """Take `old`'s contributions out and put `new`'s in."""
        if old is not None:
            owner: Owner = ("unit", *old.key)
            for sr in old.services:
                st = self._services.get(sr.key)
                if st is not None:
                    st.touched.pop(old.key, None)
                    (
                        st.producer
                        if sr.consumer is None
                        else st.consumers.get(sr.consumer, View())
                    ).drop(old)
                    dirty_services.add(sr.key)
            for name, _ in old.clusters:
                self._clusters[name].drop(owner)
                dirty_clusters.add(name)
            for check in old.ready:
                rkey = ready_key(check)
                self._ready.get(rkey, {}).pop(old.key, None)
                dirty_ready.setdefault(rkey, set()).add(old.key)
            del self._order[bisect_left(self._order, (old.order, old.key))]
            self._statuses.drop(old)
            self._diags.drop(old)
            self._gateway_units.pop(old.key, None)
            for rule in chain.from_iterable(sr.rules for sr in old.services):
                self._hashes.pop(id(rule), None)
                for m in rule.matches:
                    self._keys.pop(id(m), None)
            for dep in old.deps:
                self._rdeps[dep].discard(old.key)
            del self._units[old.key]
        if new is None:
            return
        owner = ("unit", *new.key)
        views: dict[tuple[ServiceKey, str | None], list[ir.Rule]] = {}
        for sr in new.services:
            st = self._services.setdefault(sr.key, ServiceState())
            st.touched.setdefault(new.key, sr.port)
            views.setdefault((sr.key, sr.consumer), []).extend(sr.rules)
            dirty_services.add(sr.key)
        for (skey, consumer), rules in views.items():
            if not rules:
                continue
            st = self._services[skey]
            view = st.producer if consumer is None else st.consumers.setdefault(consumer, View())
            view.put(new, tuple(rules))
        for name, use in new.clusters:
            self._clusters.setdefault(name, ClusterState()).add(owner, use)
            dirty_clusters.add(name)
        grouped: dict[ReadyKey, list[ReadyCheck]] = {}
        for check in new.ready:
            grouped.setdefault(ready_key(check), []).append(check)
        for rkey, checks in grouped.items():
            self._ready.setdefault(rkey, {})[new.key] = tuple(checks)
            dirty_ready.setdefault(rkey, set()).add(new.key)
        insort(self._order, (new.order, new.key))
        if new.status.parents:
            self._statuses.put(new, new.status)
        if new.diagnostics:
            self._diags.put(new, new.diagnostics)
        if new.gateways or new.attached:
            self._gateway_units[new.key] = new
        for dep in new.deps:
            self._rdeps.setdefault(dep, set()).add(new.key)
        self._units[new.key] = new

    def _rebuild_service(self, index: Index, skey: ServiceKey, dirty_clusters: set[str]) -> None:
        st = self._services.setdefault(skey, ServiceState())
        port = self._ports.get(skey) or next(iter(st.touched.values()), None)
        owner: Owner = ("parent", *skey)
        for name, _ in st.uses:
            self._clusters[name].drop(owner)
            dirty_clusters.add(name)
        old = st.parent
        if old is not None:
            self._parents.pop(old.name, None)
        if port is None:  # no Service port and no route attached: not a parent any more
            del self._services[skey]
            return
        views = ServiceViews(port, producer=st.producer.all_rules())
        views.has_producer_routes = bool(views.producer)
        views.consumers = {ns: v.all_rules() for ns, v in st.consumers.items() if v.rules}
        reads: set[DepKey] = set()
        index.reads = reads
        pctx = Ctx(index=index, options=self.options)
        try:
            parent = service_parent(pctx, views)
        finally:
            index.reads = None
        st.parent = old if old is not None and old == parent else parent
        st.deps = frozenset(reads)
        st.uses = tuple(pctx.clusters.items())
        for name, use in st.uses:
            self._clusters.setdefault(name, ClusterState()).add(owner, use)
            dirty_clusters.add(name)
        self._parents[st.parent.name] = st.parent

    def _gateway_parents(self, gports: dict[tuple[str, str, int], GatewayPort]) -> list[ir.Parent]:
        """Gateway parents from scratch (Gateways are few), each the previous object when
        equal."""
        for unit in sorted(self._gateway_units.values(), key=lambda u: u.order):
            for gr in unit.gateways:
                gports[gr.key].hosts.setdefault(gr.host, []).extend(
                    (gr.listener, r) for r in gr.rules
                )
        out: list[ir.Parent] = []
        for g in gports.values():
            parent = gateway_parent(g)
            old = self._parents.get(parent.name)
            out.append(old if old is not None and old == parent else parent)
        return out

    def _assemble_parents(self, gateway_parents: list[ir.Parent]) -> tuple[ir.Parent, ...]:
        for name in [n for n, p in self._parents.items() if isinstance(p, ir.GatewayParent)]:
            del self._parents[name]
        for p in gateway_parents:
            self._parents[p.name] = p
        parents = tuple(self._parents[n] for n in sorted(self._parents))
        if self._last is not None and same_tuple(self._last.table.parents, parents):
            return self._last.table.parents
        return parents

    def _rebuild_clusters(
        self, index: Index, dirty: set[str], changed: set[DepKey]
    ) -> tuple[ir.Cluster, ...]:
        dirty.update(
            n for n, c in self._clusters.items() if c.owners and not c.deps.isdisjoint(changed)
        )
        for name in dirty:
            cs = self._clusters.get(name)
            if cs is None:
                continue
            if not cs.owners:
                del self._clusters[name]
                continue
            first = next(iter(cs.owners.values()))
            use = ClusterUse(first.namespace, first.service, first.port, bool(cs.grpc))
            reads: set[DepKey] = set()
            index.reads = reads
            try:
                cluster = cluster_of(Ctx(index=index, options=self.options), name, use)
            finally:
                index.reads = None
            cs.cluster = cs.cluster if cs.cluster == cluster else cluster
            cs.deps = frozenset(reads)
        clusters = tuple(
            c for n in sorted(self._clusters) if (c := self._clusters[n].cluster) is not None
        )
        if self._last is not None and same_tuple(self._last.table.clusters, clusters):
            return self._last.table.clusters
        return clusters

    # ------------------------------------------------------------------ findings and status

    def _findings(
        self,
        index: Index,
        gctx: Ctx,
        table: ir.RouteTable,
        dirty_ready: dict[ReadyKey, set[UnitKey]],
        changed: set[DepKey],
    ) -> list[Diagnostic]:
        report_fqdn_slices(gctx)
        diags = list(gctx.diags)  # evaluate_gateways' and the FQDN slices'
        diags.extend(chain.from_iterable(self._diags.values))  # type: ignore[arg-type]
        diags.extend(first_reports(self._vhost_conflicts(table)))
        if self._tracking:
            diags.extend(self._not_ready(index, dirty_ready, changed))
        return diags

    def _vhost_conflicts(self, table: ir.RouteTable) -> list[list[Shadowed]]:
        out: list[list[Shadowed]] = []
        fresh: dict[str, tuple[tuple[ir.Rule, ...], list[Shadowed]]] = {}
        for parent in table.parents:
            for vhost in vhosts_of(parent):
                cached = self._conflicts.get(vhost.name)
                if cached is not None and same_tuple(cached[0], vhost.rules):
                    shadowed = cached[1]
                elif self._unique_matches(vhost):
                    shadowed = []
                else:
                    shadowed = vhost_conflicts(vhost, self._route_of, self._keys)
                fresh[vhost.name] = (vhost.rules, shadowed)
                out.append(shadowed)
        self._conflicts = fresh
        if len(self._hashes) > 2 * self._live_rules + 1024:  # rules of rebuilt parents
            rules = [r for p in table.parents for v in vhosts_of(p) for r in v.rules]
            live = {id(r) for r in rules}
            matches = {id(m) for r in rules for m in r.matches}
            self._hashes = {i: h for i, h in self._hashes.items() if i in live}
            self._keys = {i: k for i, k in self._keys.items() if i in matches}
            self._live_rules = len(live)
        return out

    def _unique_matches(self, vhost: ir.VirtualHost) -> bool:
        """No two matches of `vhost` have one `match_key` hash (then none shadows another):
        a set of cached ints instead of the ordered walk, for the common case."""
        hashes = self._hashes
        per_rule: list[tuple[int, ...]] = []
        for rule in vhost.rules:
            cached = hashes.get(id(rule))
            if cached is None or cached[0] is not rule:
                cached = hashes[id(rule)] = (rule, tuple(hash(match_key(m)) for m in rule.matches))
            per_rule.append(cached[1])
        flat = list(chain.from_iterable(per_rule))
        return len(set(flat)) == len(flat)

    def _route_of(self, src: ir.SourceRef) -> Loaded[HTTPRoute] | Loaded[GRPCRoute] | None:
        unit = self._units.get((src.kind, src.namespace, src.name))
        return None if unit is None else unit.route

    def _not_ready(
        self, index: Index, dirty: dict[ReadyKey, set[UnitKey]], changed: set[DepKey]
    ) -> list[Diagnostic]:
        """`NoReadyEndpoints` per Service port: its readiness is re-read when its Service or
        slices changed; each unit's warnings are redone when that readiness or the unit's
        checks changed."""
        out: list[Diagnostic] = []
        for rkey in list(self._ready):
            units = self._ready[rkey]
            if not units:
                del self._ready[rkey]
                self._ready_diags.pop(rkey, None)
                continue
            st = self._ready_diags.get(rkey)
            redo: Iterable[UnitKey] = dirty.get(rkey, ())
            if st is None or not st.deps.isdisjoint(changed):
                reads: set[DepKey] = set()
                index.reads = reads
                try:
                    ready = ready_endpoints(Ctx(index=index, options=self.options), rkey)
                finally:
                    index.reads = None
                if st is None or st.ready != ready:
                    st = ReadyState(ready=ready, deps=frozenset(reads))
                    redo = units
                st.deps = frozenset(reads)
                self._ready_diags[rkey] = st
            for key in redo:
                if key in units:
                    st.per_unit[key] = not_ready_warnings(st.ready, units[key])
                else:
                    st.per_unit.pop(key, None)
            out.extend(chain.from_iterable(st.per_unit.values()))
        return out

    def _result(
        self,
        index: Index,
        table: ir.RouteTable,
        diags: list[Diagnostic],
        listeners: dict[tuple[str, str], list[ListenerState]],
    ) -> CompileResult:
        statuses: tuple[ir.RouteStatus, ...] = tuple(self._statuses.values)  # type: ignore[arg-type]
        attached = Attachments()
        for unit in self._gateway_units.values():
            for gw, listener, source in unit.attached:
                attached.add(gw, listener, source)
        gateway_statuses = tuple(
            gateway_status(index.gateways[key].obj, states, attached)
            for key, states in listeners.items()
        )
        return CompileResult(
            table=table,
            statuses=statuses,
            gateway_statuses=gateway_statuses,
            diagnostics=tuple(sorted_diagnostics(diags)),
        )
