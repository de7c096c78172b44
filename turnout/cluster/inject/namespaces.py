"""Where the webhook learns a namespace's annotations: it is sent only the pod.

```
snapshot_namespaces(latest)    --kubernetes: the Kubernetes source's latest snapshot (the
                               source watches Namespaces already), indexed once per snapshot
directory_namespaces(dir)      --dir: the directory's Namespace objects, read again only when
                               a manifest file changed (mtime, size)
no_namespaces                  nothing known: only the pod's own annotation counts
```

Each is a `NamespaceAnnotations`: namespace name -> its annotations, or None when the
namespace is not known (yet). Nothing here writes or asks the API server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from turnout.engine.model import Namespace, Resources
from turnout.engine.model.limits import DEFAULT_LIMITS, ManifestLimits
from turnout.engine.model.loader import load_documents
from turnout.engine.sources.directory import fingerprint

NamespaceAnnotations = Callable[[str], Awaitable[Mapping[str, str] | None]]
Index = Mapping[str, Mapping[str, str]]


async def no_namespaces(namespace: str) -> Mapping[str, str] | None:
    return None


def snapshot_namespaces(latest: Callable[[], Resources | None]) -> NamespaceAnnotations:
    """`latest()`: the source's newest snapshot's objects (None before the first)."""
    seen: list[tuple[Resources, Index]] = []  # the last snapshot indexed, and its index

    async def lookup(namespace: str) -> Mapping[str, str] | None:
        resources = latest()
        if resources is None:
            return None
        if not seen or seen[0][0] is not resources:
            index = {
                o.obj.name: MappingProxyType(dict(o.obj.metadata.annotations))
                for o in resources.of(Namespace)
            }
            seen[:] = [(resources, index)]
        return seen[0][1].get(namespace)

    return lookup


def directory_namespaces(
    directory: Path, *, limits: ManifestLimits = DEFAULT_LIMITS
) -> NamespaceAnnotations:
    state: dict[str, object] = {}

    def read() -> Index:
        seen = fingerprint(directory)
        if state.get("fingerprint") == seen:
            return state["index"]  # type: ignore[return-value]
        docs, _ = load_documents([str(directory)], limits=limits)
        index: dict[str, Mapping[str, str]] = {}
        for doc in docs:
            meta = doc.raw.get("metadata")
            if doc.raw.get("kind") != "Namespace" or not isinstance(meta, Mapping):
                continue
            annotations = meta.get("annotations")
            if isinstance(meta.get("name"), str) and isinstance(annotations, Mapping):
                index[meta["name"]] = {str(k): str(v) for k, v in annotations.items()}
        state.update(fingerprint=seen, index=index)
        return index

    async def lookup(namespace: str) -> Mapping[str, str] | None:
        index = await asyncio.to_thread(read)
        return index.get(namespace)

    return lookup


__all__ = [
    "NamespaceAnnotations",
    "directory_namespaces",
    "no_namespaces",
    "snapshot_namespaces",
]
