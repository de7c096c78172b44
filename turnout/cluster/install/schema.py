"""Every object `mesh install` prints, checked against the Kubernetes API's models.

```
raw object ──(apiVersion, kind)──> MODELS ──> V1* model class name
    │ ApiClient deserialize          the models refuse a missing required field or a
    v                                value of the wrong type (int for a string, ...)
 model ──sanitize_for_serialization──> raw again ──== input?──> ok | InvalidObject
                                         a field the model does not know (a misspelt
                                         key) is dropped here, so the round trip differs
```

The `kubernetes` client's models are generated from the API server's OpenAPI document, so
this is the schema check `kubectl apply --dry-run=client` would make, without a cluster.
CRDs are checked as `apiextensions.k8s.io/v1` CustomResourceDefinitions (their own
schemas are data here, as the API server treats them). Deliberately not here: what the
API server adds on top (defaults, admission, value formats the models keep as strings).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

# Recent kubernetes releases ship py.typed, older ones do not: accept both.
from kubernetes.client import ApiClient  # type: ignore[import-untyped, unused-ignore]

from turnout.cluster.install.errors import InvalidObject

MODELS: Mapping[tuple[str, str], str] = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "Secret"): "V1Secret",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    (
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
    ): "V1MutatingWebhookConfiguration",
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): "V1CustomResourceDefinition",
}
"""The kinds `mesh install` renders and the model each is checked as."""


@functools.cache
def _client() -> Any:
    """One ApiClient for every check: only its (de)serializers are used, never a request."""
    return ApiClient()


def describe(obj: Mapping[str, Any]) -> str:
    """``Deployment turnout/turnout-controller``: what a message names."""
    meta = obj.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {ns}{meta.get('name')}"


def first_difference(a: object, b: object, path: str = "") -> str | None:
    """The path of the first place two JSON values differ (None: they are equal)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                return f"{path}.{key}".lstrip(".")
            found = first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return path.lstrip(".") or "."
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if a == b and type(a) is type(b) else (path.lstrip(".") or ".")


def _one_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith("For further information")]
    return "; ".join(useful[:3]) or type(exc).__name__


def check_object(obj: Mapping[str, Any]) -> None:
    """`InvalidObject` unless `obj` deserializes into its model and back unchanged."""
    what = describe(obj)
    model = MODELS.get((str(obj.get("apiVersion")), str(obj.get("kind"))))
    if model is None:
        raise InvalidObject(f"{what}: {obj.get('apiVersion')} {obj.get('kind')} has no model")
    api = _client()
    try:
        parsed = api._ApiClient__deserialize(dict(obj), model)
    except (ValueError, TypeError) as exc:
        raise InvalidObject(f"{what}: not a valid {model}: {_one_line(exc)}") from None
    back = api.sanitize_for_serialization(parsed)
    where = first_difference(obj, back)
    if where is not None:
        raise InvalidObject(
            f"{what}: {where}: not a field of {model}, or not of its type (the model"
            " dropped or changed it)"
        )
