"""`kubectl apply -f -` and `kubectl delete -f -` of a manifest stream, on the fake API server.

Each YAML document (or each item of a ``kind: List``, as `-o json` prints) is applied with
`FakeApiServer.apply` (create or update, the admission the fake reproduces) or deleted by its
kind, namespace and name; a document the fake does not serve fails the test, naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from tests.engine.sources.k8s_fake import FakeApiServer, ServedKind

Obj = dict[str, Any]


def documents(text: str) -> Iterator[Obj]:
    """Every object of a YAML (or JSON) stream, a `List`'s items one by one."""
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        if doc.get("kind") == "List":
            yield from doc.get("items") or []
        else:
            yield doc


def served_kind(fake: FakeApiServer, obj: Obj) -> ServedKind:
    api_version, kind = obj["apiVersion"], obj["kind"]
    for k in fake.served.values():
        if k.api_version == api_version and k.kind == kind:
            return k
    raise AssertionError(f"the fake serves no {api_version} {kind} ({obj['metadata']['name']})")


def apply(fake: FakeApiServer, text: str) -> list[Obj]:
    """`kubectl apply -f -`: every document, in order; the objects as stored."""
    out = []
    for obj in documents(text):
        served_kind(fake, obj)
        out.append(fake.apply(obj))
    return out


def delete(fake: FakeApiServer, text: str) -> int:
    """`kubectl delete -f -` (without --ignore-not-found: a missing object fails)."""
    n = 0
    for ref in documents(text):
        meta = ref["metadata"]
        kind = served_kind(fake, ref)
        fake.delete(kind, meta.get("namespace", ""), meta["name"])
        n += 1
    return n
