"""The JSONPatch (RFC 6902) that turns one object into another: what the webhook answers.

```
json_patch(before, after) -> [{"op": "add", "path": "/spec/containers/0", "value": {...}}, ...]
```

Objects are compared key by key: a new key is an ``add``, a gone one a ``remove``, a changed
one is compared further (or ``replace``d when it is not an object on both sides). A list
that is the old list with items inserted (what injection does) gets one ``add`` per new item,
at its final index, in ascending order, so each applies to the list as the previous ones
left it; any other change of a list ``replace``s it whole. Keys are escaped as JSON Pointer
wants (RFC 6901: ``~`` -> ``~0``, ``/`` -> ``~1``), so ``turnout.dev/injected`` is
``/metadata/annotations/turnout.dev~1injected``. Nothing here knows what a pod is.
"""

from __future__ import annotations

from typing import Any

Op = dict[str, Any]


def pointer_token(key: str) -> str:
    """One JSON Pointer reference token (RFC 6901 section 3)."""
    return key.replace("~", "~0").replace("/", "~1")


def json_patch(before: Any, after: Any, path: str = "") -> list[Op]:
    """The operations that turn `before` into `after` (both JSON data)."""
    if isinstance(before, dict) and isinstance(after, dict):
        return _objects(before, after, path)
    if isinstance(before, list) and isinstance(after, list):
        return _lists(before, after, path)
    if before == after and type(before) is type(after):
        return []
    return [{"op": "replace", "path": path, "value": after}]


def _objects(before: dict[str, Any], after: dict[str, Any], path: str) -> list[Op]:
    ops: list[Op] = []
    for key in before:
        if key not in after:
            ops.append({"op": "remove", "path": f"{path}/{pointer_token(key)}"})
    for key, value in after.items():
        where = f"{path}/{pointer_token(key)}"
        if key in before:
            ops.extend(json_patch(before[key], value, where))
        else:
            ops.append({"op": "add", "path": where, "value": value})
    return ops


def _lists(before: list[Any], after: list[Any], path: str) -> list[Op]:
    inserted = _insertions(before, after)
    if inserted is None:
        return [] if before == after else [{"op": "replace", "path": path, "value": after}]
    return [{"op": "add", "path": f"{path}/{i}", "value": after[i]} for i in inserted]


def _insertions(before: list[Any], after: list[Any]) -> list[int] | None:
    """Indices of `after` that are new, when `before` is `after` with them taken out."""
    if len(after) < len(before):
        return None
    new: list[int] = []
    j = 0
    for i, item in enumerate(after):
        if j < len(before) and before[j] == item:
            j += 1
        else:
            new.append(i)
    return new if j == len(before) else None
