"""A small RFC 6902 applier (add, remove, replace, test) for the injector's tests.

Written from the RFC, not from `cluster.inject.patch`, so a test that applies the webhook's
patch with it checks the patch against the standard: JSON Pointer tokens are unescaped
``~1`` -> ``/`` then ``~0`` -> ``~`` (RFC 6901 section 4), ``-`` appends to an array, an
``add`` at an array index inserts, ``add`` onto an existing object member replaces it, and a
path that does not exist fails (`PatchError`).
"""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    """The patch does not apply (RFC 6902 section 5: the whole patch fails)."""


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"not a JSON Pointer: {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, *, adding: bool) -> int:
    if token == "-" and adding:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(f"not an array index: {token!r}")
    i = int(token)
    if i > len(container) or (i == len(container) and not adding):
        raise PatchError(f"index out of range: {i}")
    return i


def apply_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    out = copy.deepcopy(doc)
    for op in ops:
        tokens = _tokens(op["path"])
        if not tokens:
            if op["op"] in ("add", "replace"):
                out = copy.deepcopy(op["value"])
                continue
            raise PatchError(f"cannot {op['op']} the whole document")
        parent = out
        for token in tokens[:-1]:
            if isinstance(parent, list):
                parent = parent[_index(parent, token, adding=False)]
            elif isinstance(parent, dict) and token in parent:
                parent = parent[token]
            else:
                raise PatchError(f"path not found: {op['path']}")
        last = tokens[-1]
        kind = op["op"]
        if isinstance(parent, list):
            i = _index(parent, last, adding=kind == "add")
            if kind == "add":
                parent.insert(i, copy.deepcopy(op["value"]))
            elif kind == "remove":
                del parent[i]
            elif kind == "replace":
                parent[i] = copy.deepcopy(op["value"])
            elif kind == "test" and parent[i] != op["value"]:
                raise PatchError(f"test failed at {op['path']}")
        elif isinstance(parent, dict):
            if kind != "add" and last not in parent:
                raise PatchError(f"path not found: {op['path']}")
            if kind in ("add", "replace"):
                parent[last] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[last]
            elif kind == "test" and parent[last] != op["value"]:
                raise PatchError(f"test failed at {op['path']}")
        else:
            raise PatchError(f"path not found: {op['path']}")
    return out
