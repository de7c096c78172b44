"""Published tables and their per-namespace xDS views, translated once per version.

```
publish(table, policy) ──(either != current)──> Snapshot(version=n+1, table, policy)
                                          │ view(ns)   first caller per namespace starts
                                          v            one translation, off the loop
                    translate(table, client_namespace=ns) in a thread ─> View
                                          │            every later caller (any stream of
                                          v            that namespace) awaits the same task
                    View: {type_url: {name: Any}}   (wire bytes only)
                      + POLICY_TYPE_URL: the policy table's resources, packed once per
                        snapshot and the same in every namespace's view
                      + versions {type_url: {name: SHA-256, 64 bits hex}} (delta streams)
```

The default translator goes through the server's `ResourceCache` (`engine.xds.cache`): a
parent or cluster equal to one of the previous table is not translated again, and a client
namespace that no parent has consumer routes for shares the producer view (one build, the
same objects). `changes(ns)` is what differs from the previous snapshot's view of the same
namespace, once per namespace, so a delta stream that had the previous view looks at the
changed names only.

A `Snapshot` owns its view cache, so the cache is "per namespace per table version": when a
newer snapshot replaces it and the last stream lets go, its views go with it. A view that
fails to translate (a bug, never the user's YAML: compile already judged that) is logged once
and is `None`; streams keep what they were sent.

The Listeners grpcio xDS servers ask for (``grpc/server?xds.resource.listening_address=IP:PORT``,
docs/proxyless.md) depend on the node (namespace and labels), not only on its namespace, so
they are not in a view: `server_listeners` builds them from the snapshot's policy table for
the names one stream asked for, cached per (name, namespace, labels), and the stream merges
them into its view (`with_server_listeners`).

Deliberately not here: which resources one stream gets and when (`streams.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from google.protobuf import any_pb2

from turnout.engine.ir import RouteTable
from turnout.engine.ir_policy import PolicyTable
from turnout.engine.memory import release_memory
from turnout.engine.server.encoded import BodyKey
from turnout.engine.xds import LISTENER_TYPE, XdsResources, translate
from turnout.engine.xds.cache import ResourceCache, consumer_namespaces, translate_view, version_of
from turnout.engine.xds.grpc_security import (
    SERVER_LISTENER_PREFIX,
    grpc_server_listener,
    listening_address,
    mtls_mode,
    permissive_warning,
)
from turnout.engine.xds.policy import POLICY_TYPE_URL, policy_resources
from turnout.engine.xds.wire import pack

log = logging.getLogger(__name__)

RELEASE_AFTER_BYTES = 1 << 20
"""A view whose misses packed more than this gives the freed heap back (`release_memory`):
one parent with 10,000 routes leaves ~20 MB of translated rules behind."""

Translator = Callable[[RouteTable, str | None], XdsResources]
"""`(table, client_namespace) -> XdsResources`; the seam tests use to serve a bad resource."""

View = Mapping[str, Mapping[str, any_pb2.Any]]
"""type_url -> resource name -> the resource packed as it goes on the wire (deterministic
bytes: equal resources pack equal, which is how a stream tells what changed). The decoded
messages are not kept: for 10,000 routes they weigh 6 times their wire bytes."""


def default_translator(table: RouteTable, namespace: str | None) -> XdsResources:
    return translate(table, client_namespace=namespace)


Versions = Mapping[str, Mapping[str, str]]
"""type_url -> resource name -> version (`engine.xds.cache.version_of` of its bytes)."""


def build_view(resources: XdsResources) -> View:
    view = resources.packed()
    release_memory()  # the translated messages go with `resources` (see engine.memory)
    return view


@dataclass(frozen=True, slots=True)
class Built:
    """One namespace's view of a snapshot and the version of each of its resources."""

    view: View
    versions: Versions
    bodies: dict[BodyKey, bytes] = field(default_factory=dict, compare=False, repr=False)
    """Delta responses serialized for this view, shared by its streams (`encoded.py`)."""


def _versions(view: View) -> dict[str, dict[str, str]]:
    return {url: {n: version_of(a) for n, a in named.items()} for url, named in view.items()}


@dataclass(slots=True, eq=False)
class Snapshot:
    """One published table and the views translated from it so far."""

    version: int
    """1, 2, ... per published table (0 is never published)."""
    table: RouteTable
    policy: PolicyTable | None = None
    """The authorization policy served with it (our proxies: the policy resources;
    proxyless gRPC servers: A41 RBAC in their Listener); None = none."""
    translator: Translator = default_translator
    cache: ResourceCache | None = None
    """Packed resources shared with earlier snapshots (default translator only)."""
    previous: Snapshot | None = None
    """The snapshot this one replaced (its views are what `changes` compares against); the
    server drops the link once this one is replaced in turn, so only one is kept."""
    _views: dict[str | None, asyncio.Task[Built | None]] = field(default_factory=dict)
    _changes: dict[str | None, dict[str, frozenset[str]] | None] = field(default_factory=dict)
    _consumer_ns: frozenset[str] | None = None
    _policy_view: dict[str, any_pb2.Any] | None = None
    _policy_versions: dict[str, str] | None = None
    _servers: dict[tuple[str, str, tuple[tuple[str, str], ...]], ServerListener] = field(
        default_factory=dict
    )

    @property
    def version_info(self) -> str:
        """The `version_info` every response built from this snapshot carries."""
        return str(self.version)

    async def view(self, namespace: str | None) -> View | None:
        """The view of a client in `namespace` (None = no namespace: producer routes only)."""
        built = await self.built(namespace)
        return None if built is None else built.view

    def view_key(self, namespace: str | None) -> str | None:
        """The namespace whose view a client in `namespace` gets: None (the producer view)
        when no parent has consumer routes for it."""
        if self.translator is not default_translator or self.cache is None:
            return namespace
        if self._consumer_ns is None:
            self._consumer_ns = consumer_namespaces(self.table)
        return namespace if namespace in self._consumer_ns else None

    async def built(self, namespace: str | None) -> Built | None:
        """The view of `namespace` and its versions; None when translation failed."""
        key = self.view_key(namespace)
        task = self._views.get(key)
        if task is None:
            task = asyncio.create_task(
                self._translate(key), name=f"ads-translate v{self.version} ns={key}"
            )
            self._views[key] = task
        if task.done():  # the common case: 1,000 streams wake for one built view
            return task.result()
        # Shielded: one stream going away must not cancel a translation others wait for.
        return await asyncio.shield(task)

    def changes(self, namespace: str | None) -> dict[str, frozenset[str]] | None:
        """type_url -> names added, changed or removed since the previous snapshot's view of
        `namespace`; None when that is not known (no previous snapshot, or it never built
        that view). Call once this snapshot's view of `namespace` is built."""
        key = self.view_key(namespace)
        if key in self._changes:
            return self._changes[key]
        out = None
        prev = self.previous
        mine = self._views.get(key)
        if prev is not None and mine is not None and mine.done():
            theirs = prev._views.get(prev.view_key(namespace))
            new = mine.result()
            old = theirs.result() if theirs is not None and theirs.done() else None
            if new is not None and old is not None:
                out = {
                    url: _diff(old.versions.get(url, {}), new.versions.get(url, {}))
                    for url in new.versions.keys() | old.versions.keys()
                }
        self._changes[key] = out
        return out

    def policy_view(self) -> dict[str, any_pb2.Any]:
        """The policy resources by name, packed (built once; {} without a policy table)."""
        if self._policy_view is None:
            policy = self.policy
            self._policy_view = {} if policy is None else policy_resources(policy).packed()
        return self._policy_view

    def policy_versions(self) -> dict[str, str]:
        if self._policy_versions is None:
            self._policy_versions = {n: version_of(a) for n, a in self.policy_view().items()}
        return self._policy_versions

    def _build(self, namespace: str | None) -> Built:
        if self.translator is default_translator and self.cache is not None:
            misses, size = self.cache.stats.misses, self.cache.routes.packed_bytes
            packed = translate_view(self.table, namespace, self.cache)
            view: dict[str, Mapping[str, any_pb2.Any]] = {
                url: {n: p.any for n, p in named.items()} for url, named in packed.items()
            }
            versions: dict[str, Mapping[str, str]] = {
                url: {n: p.version for n, p in named.items()} for url, named in packed.items()
            }
            if (
                self.cache.stats.misses - misses > 100
                or self.cache.routes.packed_bytes - size > RELEASE_AFTER_BYTES
            ):
                release_memory()
        else:
            view = dict(build_view(self.translator(self.table, namespace)))
            versions = dict(_versions(view))
        view[POLICY_TYPE_URL] = self.policy_view()
        versions[POLICY_TYPE_URL] = self.policy_versions()
        return Built(view=view, versions=versions)

    def server_listeners(
        self, names: frozenset[str], *, namespace: str | None, labels: Mapping[str, str]
    ) -> dict[str, ServerListener]:
        """The server Listeners among `names` for a node in `namespace` with `labels`."""
        ns = namespace or "default"
        key_labels = tuple(sorted(labels.items()))
        out = {}
        for name in sorted(n for n in names if n.startswith(SERVER_LISTENER_PREFIX)):
            key = (name, ns, key_labels)
            found = self._servers.get(key)
            if found is None:
                found = build_server_listener(self.policy or PolicyTable(), name, ns, labels)
                if found is None:
                    continue
                self._servers[key] = found
            out[name] = found
        return out

    async def _translate(self, namespace: str | None) -> Built | None:
        try:
            return await asyncio.to_thread(self._build, namespace)
        except Exception:
            log.error(
                "xds translation failed, streams keep their last resources version=%d namespace=%s",
                self.version,
                namespace,
                exc_info=True,
            )
            return None


def _diff(old: Mapping[str, str], new: Mapping[str, str]) -> frozenset[str]:
    if old is new:
        return frozenset()
    changed = {n for n, v in new.items() if old.get(n) != v}
    changed.update(n for n in old if n not in new)
    return frozenset(changed)


@dataclass(frozen=True, slots=True)
class ServerListener:
    packed: any_pb2.Any
    warning: str | None
    """Why the port is served as it is when that is probably not what was meant."""

    @property
    def version(self) -> str:
        return version_of(self.packed)


def build_server_listener(
    policy: PolicyTable, name: str, namespace: str, labels: Mapping[str, str]
) -> ServerListener | None:
    address = listening_address(name)
    if address is None:
        return None
    decision = mtls_mode(policy, namespace=namespace, labels=labels, port=address[1])
    listener = grpc_server_listener(
        policy, name=name, namespace=namespace, labels=labels, mode=decision.mode
    )
    if listener is None:
        return None
    warning = permissive_warning(decision, namespace=namespace, port=address[1])
    return ServerListener(packed=pack(listener), warning=warning)


def with_server_listeners(view: View, servers: Mapping[str, ServerListener]) -> View:
    """`view` plus these server Listeners (a new mapping: views are shared by streams)."""
    if not servers:
        return view
    listeners = dict(view.get(LISTENER_TYPE, {}))
    listeners.update({name: s.packed for name, s in servers.items()})
    return {**view, LISTENER_TYPE: listeners}
