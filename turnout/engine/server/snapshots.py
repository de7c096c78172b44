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
```

A `Snapshot` owns its view cache, so the cache is "per namespace per table version": when a
newer snapshot replaces it and the last stream lets go, its views go with it. A view that
fails to translate (a bug, never the user's YAML: compile already judged that) is logged once
and is `None`; streams keep what they were sent.

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
from turnout.engine.xds import XdsResources, translate
from turnout.engine.xds.policy import POLICY_TYPE_URL, policy_resources

log = logging.getLogger(__name__)

Translator = Callable[[RouteTable, str | None], XdsResources]
"""`(table, client_namespace) -> XdsResources`; the seam tests use to serve a bad resource."""

View = Mapping[str, Mapping[str, any_pb2.Any]]
"""type_url -> resource name -> the resource packed as it goes on the wire (deterministic
bytes: equal resources pack equal, which is how a stream tells what changed). The decoded
messages are not kept: for 10,000 routes they weigh 6 times their wire bytes."""


def default_translator(table: RouteTable, namespace: str | None) -> XdsResources:
    return translate(table, client_namespace=namespace)


def build_view(resources: XdsResources) -> View:
    view = resources.packed()
    release_memory()  # the translated messages go with `resources` (see engine.memory)
    return view


@dataclass(slots=True, eq=False)
class Snapshot:
    """One published table and the views translated from it so far."""

    version: int
    """1, 2, ... per published table (0 is never published)."""
    table: RouteTable
    policy: PolicyTable | None = None
    """The authorization policy served with it; None = none (no policy resources)."""
    translator: Translator = default_translator
    _views: dict[str | None, asyncio.Task[View | None]] = field(default_factory=dict)
    _policy_view: dict[str, any_pb2.Any] | None = None

    @property
    def version_info(self) -> str:
        """The `version_info` every response built from this snapshot carries."""
        return str(self.version)

    async def view(self, namespace: str | None) -> View | None:
        """The view of a client in `namespace` (None = no namespace: producer routes only)."""
        task = self._views.get(namespace)
        if task is None:
            task = asyncio.create_task(
                self._translate(namespace), name=f"ads-translate v{self.version} ns={namespace}"
            )
            self._views[namespace] = task
        # Shielded: one stream going away must not cancel a translation others wait for.
        return await asyncio.shield(task)

    def policy_view(self) -> dict[str, any_pb2.Any]:
        """The policy resources by name, packed (built once; {} without a policy table)."""
        if self._policy_view is None:
            policy = self.policy
            self._policy_view = {} if policy is None else policy_resources(policy).packed()
        return self._policy_view

    def _build(self, namespace: str | None) -> View:
        view = dict(build_view(self.translator(self.table, namespace)))
        view[POLICY_TYPE_URL] = self.policy_view()
        return view

    async def _translate(self, namespace: str | None) -> View | None:
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
