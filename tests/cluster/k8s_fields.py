"""Field names checked against the Kubernetes API's own models (the `kubernetes` client's
generated `V1*` classes: `attribute_map` is each field's JSON name, `openapi_types` its type),
so a misspelt field in what the injector writes fails a test instead of being dropped by the
API server ("unknown field" is only a warning there)."""

from __future__ import annotations

from typing import Any

import kubernetes.client as k8s

SCALARS = frozenset({"str", "int", "bool", "float", "object", "datetime", "date"})


def unknown_fields(data: Any, type_name: str, path: str = "") -> list[str]:
    """Paths in `data` that the model `type_name` (``V1Pod``) has no field for."""
    if type_name in SCALARS:
        return []
    # the generator's spellings: list[V1X] / dict(str, V1X) up to v32, List[...] / Dict[...] since
    if type_name.lower().startswith("list["):
        inner = type_name[5:-1]
        return [
            p for i, item in enumerate(data) for p in unknown_fields(item, inner, f"{path}[{i}]")
        ]
    if type_name.lower().startswith(("dict(", "dict[")):
        inner = type_name.split(", ", 1)[1][:-1]
        return [p for k, v in data.items() for p in unknown_fields(v, inner, f"{path}.{k}")]
    cls = getattr(k8s, type_name)
    fields = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    out: list[str] = []
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            out.append(where)
        else:
            out.extend(unknown_fields(value, cls.openapi_types[fields[key]], where))
    return out
