"""`kubectl apply -f -` and `kubectl delete -f -` of a manifest stream, on the fake API server.

Each YAML document (or each item of a ``kind: List``, as `-o json` prints) is applied with
`FakeApiServer.apply` (create or update, the admission the fake reproduces) or deleted by its
kind, namespace and name (a Namespace with what is in it); a document the fake does not
serve fails the test, naming it. `ours` lists what is left of Turnout.
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
    """`kubectl delete -f -` (without --ignore-not-found: a missing object fails). Deleting a
    Namespace deletes what is in it, as the namespace controller does."""
    n = 0
    for ref in documents(text):
        meta = ref["metadata"]
        kind = served_kind(fake, ref)
        fake.delete(kind, meta.get("namespace", ""), meta["name"])
        n += 1
        if (kind.group, kind.kind) == ("", "Namespace"):
            for k in list(fake.served.values()):
                store = fake.objects.get((k.group, k.kind), {})
                for ns, name in [key for key in store if k.namespaced and key[0] == meta["name"]]:
                    fake.delete(k, ns, name)
    return n


def ours(fake: FakeApiServer) -> list[tuple[str, str, str]]:
    """(kind, namespace, name) of every stored object labelled part-of Turnout or in the
    control plane's namespace, sorted."""
    from turnout.cluster import names

    found = []
    for (_group, kind), store in fake.objects.items():
        for (namespace, name), obj in store.items():
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if labels.get(names.PART_OF_LABEL) == "turnout" or namespace == names.NAMESPACE:
                found.append((kind, namespace, name))
    return sorted(found)
