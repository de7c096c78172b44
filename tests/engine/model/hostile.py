"""Hostile manifests: YAML alias bombs, deep nesting, oversized documents.

Each builder returns the text of a manifest that looks like an ordinary HTTPRoute or
Service around the payload, so the payload reaches the stages a real one would (the
schema walks a route's spec, the annotations are checked as strings). Shared by the model
tests, the CLI tests and the watched-directory test.
"""

from __future__ import annotations

import json

ROUTE_HEAD = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: bomb
  namespace: shop
"""
PARENT = "  parentRefs: [{group: '', kind: Service, name: web, port: 80}]\n"


def laughs(indent: int, *, levels: int = 9, width: int = 10) -> tuple[str, str]:
    """The classic billion laughs: `levels` anchors, each a list of `width` aliases of the
    one before (9 x 10: 10**9 strings once expanded, 1 KiB of text). Returns the mapping
    lines at `indent` and the name of the last anchor."""
    pad = " " * indent
    lines = [f"{pad}l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"{pad}l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n", f"l{levels - 1}"


def laughs_in_spec(**kw: int) -> str:
    """The bomb in a route's spec: its anchors in the rule's matches, the last one as the
    headers of a match (the schema walks every header it is given)."""
    body, top = laughs(10, **kw)
    return (
        ROUTE_HEAD
        + "spec:\n"
        + PARENT
        + "  rules:\n  - matches:\n    - headers:\n      - name: x\n        value:\n"
        + body
        + f"    - headers: *{top}\n"
    )


def laughs_in_annotations(**kw: int) -> str:
    """The bomb in metadata.annotations (values must be strings: each one is looked at)."""
    body, _ = laughs(4, **kw)
    return ROUTE_HEAD + "  annotations:\n" + body + "spec:\n" + PARENT


def nested(depth: int, *, flow: bool = True) -> str:
    """A route whose annotation value is `depth` lists deep (flow style: `[[[...]]]`; block
    style: one `-` per line, each indented once more)."""
    if flow:
        value = " " + "[" * depth + "]" * depth
    else:
        value = "".join("\n" + " " * (4 + 2 * i) + "-" for i in range(depth)) + " x"
    return ROUTE_HEAD + "  annotations:\n    deep:" + value + "\nspec:\n" + PARENT


def nested_json(depth: int) -> str:
    doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "deep"}}
    text = json.dumps(doc)
    return text[:-1] + ', "spec": ' + "[" * depth + "]" * depth + "}"


def service(name: str = "web") -> str:
    return (
        f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: shop\n"
        "spec:\n  ports: [{port: 80}]\n"
    )


def big_annotation(size: int, name: str = "big") -> str:
    """A Service with one annotation `size` bytes long (a legal object, too big to apply)."""
    return (
        f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: shop\n"
        f"  annotations:\n    blob: {'x' * size}\nspec:\n  ports: [{{port: 80}}]\n"
    )


BENIGN_ALIASES = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web
  namespace: shop
  labels: &labels {app: web, tier: front}
  annotations:
    note: plain
spec:
  parentRefs: [{group: '', kind: Service, name: web, port: 80}]
  rules:
  - matches:
    - path: &api {type: PathPrefix, value: /api}
      headers: &canary [{name: x-canary, value: "true"}]
    backendRefs: &both
    - {name: web, port: 80, weight: 90}
    - {name: web-v2, port: 80, weight: 10}
  - matches:
    - path: *api
    backendRefs: *both
---
apiVersion: v1
kind: Service
metadata:
  name: web-v2
  namespace: shop
  labels: &app {app: web-v2}
spec:
  selector: *app
  ports: [{port: 80}]
"""
"""A route and a Service that use anchors and aliases as people do: to repeat a few lines."""
