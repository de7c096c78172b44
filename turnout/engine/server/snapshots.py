"""Published tables and their per-namespace xDS views, translated once per version.

```
publish(table) ──(table != current)──> Snapshot(version=n+1, table)
                                          │ view(ns)   first caller per namespace starts
                                          v            one translation, off the loop
                    translate(table, client_namespace=ns) in a thread ─> View
                                          │            every later caller (any stream of
                                          v            that namespace) awaits the same task
                    View: {type_url: {name: (message, Any)}}
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
from google.protobuf.message import Message

from turnout.engine.ir import RouteTable
from turnout.engine.xds import XdsResources, translate

log = logging.getLogger(__name__)

Translator = Callable[[RouteTable, str | None], XdsResources]
"""`(table, client_namespace) -> XdsResources`; the seam tests use to serve a bad resource."""

View = Mapping[str, Mapping[str, tuple[Message, any_pb2.Any]]]
"""type_url -> resource name -> (message, the message packed as it goes on the wire)."""


def default_translator(table: RouteTable, namespace: str | None) -> XdsResources:
    return translate(table, client_namespace=namespace)


def build_view(resources: XdsResources) -> View:
    packed = resources.packed()
    return {
        url: {name: (message, packed[url][name]) for name, message in named.items()}
        for url, named in resources.by_type_url().items()
    }


@dataclass(slots=True, eq=False)
class Snapshot:
    """One published table and the views translated from it so far."""

    version: int
    """1, 2, ... per published table (0 is never published)."""
    table: RouteTable
    translator: Translator = default_translator
    _views: dict[str | None, asyncio.Task[View | None]] = field(default_factory=dict)

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

    async def _translate(self, namespace: str | None) -> View | None:
        try:
            resources = await asyncio.to_thread(self.translator, self.table, namespace)
            return await asyncio.to_thread(build_view, resources)
        except Exception:
            log.error(
                "xds translation failed, streams keep their last resources version=%d namespace=%s",
                self.version,
                namespace,
                exc_info=True,
            )
            return None
