"""`ResourceCache`: xDS resources packed once per (parent, effective view) and per cluster.

```
RouteTable ─ translate_view(table, ns, cache) ─> PackedView {type_url: {name: Packed}}
  ServiceParent ─ effective view: ns if the parent has a ConsumerView for ns, else None
     key (parent.name, effective ns) ─ stamp (authority, addresses, port, opaque, vhost)
        same stamp as cached (identity first, then ==) ─> the cached Listener + RouteConfiguration
        else ─> the Listener; the RouteConfiguration spliced from per-rule bytes (splice.py)
  GatewayParent  ─ key (parent.name, None) ─ stamp: the parent itself
  Cluster        ─ key cluster.name ─ stamp: the ir.Cluster itself ─> Cluster + ClusterLoadAssignment
Packed = (Any, version): version = SHA-256 of Any.value, 64 bits hex, computed once per resource
```

A view is a walk of the table's parents and clusters with dict lookups: a client namespace
without consumer routes anywhere gets the producer view itself (`shared_view`), and a table
that changed one parent translates and packs that parent only. When the compiler keeps clean
parents as the same objects (incremental compile), the stamp compare is an identity check;
otherwise an equal parent compares equal element by element and still hits.

The version is a digest of the wire bytes, so it is the same on every replica and after a
restart: what lets a delta client's `initial_resource_versions` skip what it already has.

Deliberately not here: which client gets what (`engine.server`), and eviction beyond `prune`
(the server keeps one cache and prunes it to each newly published table).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from google.protobuf import any_pb2
from google.protobuf.message import Message

from turnout.engine import ir
from turnout.engine.xds import clusters, listeners
from turnout.engine.xds.resources import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    LOAD_ASSIGNMENT_TYPE,
    ROUTE_CONFIGURATION_TYPE,
)
from turnout.engine.xds.splice import RouteBytesCache
from turnout.engine.xds.wire import INVALID_CLUSTER, pack

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Packed:
    """One resource as it goes on the wire, with its version."""

    any: any_pb2.Any
    version: str
    """The first 64 bits of SHA-256 of `any.value`, hex (16 characters)."""


def version_of(packed: any_pb2.Any) -> str:
    # SHA-256 (with the CPU's SHA instructions) hashes a 9 MB RouteConfiguration in about
    # half the time blake2b takes here.
    return hashlib.sha256(packed.value).hexdigest()[:16]


def packed(message: Message) -> Packed:
    p = pack(message)
    return Packed(p, version_of(p))


PackedView = Mapping[str, Mapping[str, Packed]]
"""type_url -> resource name -> packed resource and version."""


@dataclass(frozen=True, slots=True)
class _ParentEntry:
    stamp: object
    listener: tuple[str, Packed]
    route: tuple[str, Packed]
    uses_invalid: bool


@dataclass(frozen=True, slots=True)
class _ClusterEntry:
    cluster: ir.Cluster
    resource: Packed
    assignment: Packed


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0


@dataclass(slots=True)
class ResourceCache:
    """Packed resources by parent and cluster; safe to share between threads (dict reads
    and writes are atomic; two threads missing the same key both translate it, once)."""

    _parents: dict[tuple[str, str | None], _ParentEntry] = field(default_factory=dict)
    _clusters: dict[str, _ClusterEntry] = field(default_factory=dict)
    _invalid: tuple[Packed, Packed] | None = None
    routes: RouteBytesCache = field(default_factory=RouteBytesCache)
    """Route bytes per rule: a changed parent re-translates its changed rules only."""
    stats: CacheStats = field(default_factory=CacheStats)

    def prune(self, table: ir.RouteTable) -> None:
        """Forget the parents and clusters `table` does not have."""
        names = {p.name for p in table.parents}
        for key in [k for k in self._parents if k[0] not in names]:
            del self._parents[key]
        configs = {entry.route[0] for entry in self._parents.values()}
        self.routes.forget_except(
            {
                r.name
                for p in table.parents
                for v in (
                    (p.producer, *(c.vhost for c in p.consumers))
                    if isinstance(p, ir.ServiceParent)
                    else p.vhosts
                )
                for r in v.rules
            },
            configs,
        )
        cluster_names = {c.name for c in table.clusters}
        for name in [n for n in self._clusters if n not in cluster_names]:
            del self._clusters[name]

    def parent(self, parent: ir.Parent, namespace: str | None) -> _ParentEntry:
        """The Listener and RouteConfiguration of `parent` as a client in `namespace` sees it."""
        effective = effective_view(parent, namespace)
        key = (parent.name, effective)
        stamp = _stamp(parent, effective)
        found = self._parents.get(key)
        if found is not None and (found.stamp is stamp or found.stamp == stamp):
            self.stats.hits += 1
            return found
        self.stats.misses += 1
        if isinstance(parent, ir.ServiceParent):
            rc_name, vhost = listeners.view_of(parent, effective)
            listener = listeners.service_listener(parent, route_config_name=rc_name, vhost=vhost)
            routes, invalid = self.routes.route_configuration(rc_name, (vhost,))
        else:
            rc_name = parent.name
            listener = listeners.gateway_listener(parent)
            routes, invalid = self.routes.route_configuration(rc_name, parent.vhosts)
        entry = _ParentEntry(
            stamp=stamp,
            listener=(str(listener.name), packed(listener)),
            route=(rc_name, Packed(routes, version_of(routes))),
            uses_invalid=invalid,
        )
        self._parents[key] = entry
        return entry

    def cluster(self, cluster: ir.Cluster) -> _ClusterEntry:
        found = self._clusters.get(cluster.name)
        if found is not None and (found.cluster is cluster or found.cluster == cluster):
            self.stats.hits += 1
            return found
        self.stats.misses += 1
        entry = _ClusterEntry(
            cluster=cluster,
            resource=packed(clusters.cluster_from(cluster)),
            assignment=packed(clusters.load_assignment_from(cluster)),
        )
        self._clusters[cluster.name] = entry
        return entry

    def invalid(self) -> tuple[Packed, Packed]:
        if self._invalid is None:
            c, a = clusters.invalid_cluster()
            self._invalid = (packed(c), packed(a))
        return self._invalid


def effective_view(parent: ir.Parent, namespace: str | None) -> str | None:
    """`namespace` when `parent` has consumer routes for it, else None (the producer view)."""
    if namespace is None or not isinstance(parent, ir.ServiceParent):
        return None
    return namespace if any(v.namespace == namespace for v in parent.consumers) else None


def consumer_namespaces(table: ir.RouteTable) -> frozenset[str]:
    """Namespaces with consumer routes on some parent: every other namespace shares the
    producer view."""
    return frozenset(
        v.namespace for p in table.parents if isinstance(p, ir.ServiceParent) for v in p.consumers
    )


def _stamp(parent: ir.Parent, effective: str | None) -> object:
    """What the translation of `parent` in view `effective` reads."""
    if isinstance(parent, ir.GatewayParent):
        return parent
    _, vhost = listeners.view_of(parent, effective)
    return (parent.authority, parent.addresses, parent.port, parent.opaque_cluster, vhost)


def translate_view(
    table: ir.RouteTable, namespace: str | None, cache: ResourceCache
) -> dict[str, dict[str, Packed]]:
    """What `translate(table, client_namespace=namespace).packed()` gives, with versions,
    from `cache` wherever the parent or cluster is unchanged."""
    lds: dict[str, Packed] = {}
    rds: dict[str, Packed] = {}
    invalid = False
    for parent in table.parents:
        entry = cache.parent(parent, namespace)
        lds[entry.listener[0]] = entry.listener[1]
        rds[entry.route[0]] = entry.route[1]
        invalid = invalid or entry.uses_invalid
    cds: dict[str, Packed] = {}
    eds: dict[str, Packed] = {}
    for cluster in table.clusters:
        c = cache.cluster(cluster)
        cds[cluster.name] = c.resource
        eds[cluster.name] = c.assignment
    if invalid:
        cds[INVALID_CLUSTER], eds[INVALID_CLUSTER] = cache.invalid()
    return {
        LISTENER_TYPE: dict(sorted(lds.items())),
        ROUTE_CONFIGURATION_TYPE: dict(sorted(rds.items())),
        CLUSTER_TYPE: dict(sorted(cds.items())),
        LOAD_ASSIGNMENT_TYPE: dict(sorted(eds.items())),
    }
