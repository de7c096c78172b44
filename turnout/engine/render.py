"""IR, status and diagnostics -> plain data (and YAML/JSON text), deterministically, and back.

```
to_data(RouteTable | RouteStatus | ...) ──> {snake_case: ..., "type": "ServiceParent"} ──┐
                                     dump_yaml / dump_json (mesh routes -o, golden files,
                                     the control plane's /debug/table?format=json)        │
from_data(RouteTable, data) <── json.loads <──────────────────────────────────────────────┘
```

This is the format of the golden `.out.yaml` files: dataclass fields in snake_case, union
members tagged with ``type: <ClassName>``, `None` and empty tuples left out, file paths made
relative to a root. No timestamps, no randomness. `from_data` is its exact inverse (a
left-out field is `None` or `()`, whichever its type allows), which is how `mesh routes`
reads the table a running control plane serves; data that does not fit raises `ValueError`
naming the field. With ``camel=True`` the field names are the Kubernetes spelling
(``parentRef``, ``controllerName``, ``observedGeneration``), which is what `mesh routes -o
yaml|json` prints, so route status reads like ``kubectl get httproute -o yaml``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal, TypeVar, Union, cast

import yaml

from turnout.engine import ir
from turnout.engine.diagnostics import Diagnostic, Severity, SourcePos

TAGGED: tuple[type, ...] = (
    ir.ExactPath,
    ir.PrefixPath,
    ir.RegexPath,
    ir.RequestHeaderFilter,
    ir.ResponseHeaderFilter,
    ir.RedirectFilter,
    ir.URLRewriteFilter,
    ir.MirrorFilter,
    ir.CorsFilter,
    ir.ErrorResponse,
    ir.ReplaceFullPath,
    ir.ReplacePrefix,
    ir.ServiceTarget,
    ir.InvalidBackend,
    ir.ServiceParent,
    ir.GatewayParent,
)
"""Members of IR unions: rendered with a `type` key so the reader knows which one it is."""

Data = dict[str, object] | list[object] | str | int | bool | None
T = TypeVar("T")


@functools.cache
def camel_case(name: str) -> str:
    """``observed_generation`` -> ``observedGeneration`` (Kubernetes' JSON field names)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def to_data(value: object, *, camel: bool = False) -> Data:
    """`value` as plain data; `camel` spells dataclass field names in camelCase (mapping keys
    are the user's own, e.g. header names, and stay as they are)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, object] = {}
        if isinstance(value, TAGGED):
            out["type"] = type(value).__name__
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if v is None or v == ():
                continue
            out[camel_case(f.name) if camel else f.name] = to_data(v, camel=camel)
        return out
    if isinstance(value, tuple | list):
        return [to_data(v, camel=camel) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_data(v, camel=camel) for k, v in value.items()}
    if isinstance(value, str | int | bool) or value is None:
        return value
    raise TypeError(f"cannot render {type(value).__name__}")


def diagnostic_data(diag: Diagnostic, *, root: Path | None = None) -> dict[str, object]:
    file = diag.pos.file
    if root is not None and file != "-":
        with contextlib.suppress(ValueError):
            file = Path(file).resolve().relative_to(root.resolve()).as_posix()
    return {
        "severity": diag.severity.value,
        "reason": diag.reason,
        "message": diag.message,
        "file": file,
        "doc": diag.pos.doc_index,
        "path": diag.pos.path,
    }


def result_data(
    table: ir.RouteTable,
    statuses: Iterable[ir.RouteStatus],
    diagnostics: Iterable[Diagnostic],
    *,
    root: Path | None = None,
    camel: bool = False,
) -> dict[str, object]:
    """Table, route status and diagnostics; `camel`: Kubernetes field names (see `to_data`)."""
    return {
        "table": to_data(table, camel=camel),
        "status": [to_data(s, camel=camel) for s in statuses],
        "diagnostics": [diagnostic_data(d, root=root) for d in diagnostics],
    }


def from_data(cls: type[T], data: object, *, path: str = "") -> T:
    """The IR (or status) object `to_data` rendered as `data`."""
    return cast(T, _value(cls, data, path or cls.__name__))


def diagnostic_from_data(data: object) -> Diagnostic:
    """The inverse of `diagnostic_data` (without a root: paths stay as given)."""
    d = _mapping(data, "diagnostic")
    try:
        pos = SourcePos(str(d["file"]), int(cast(int, d["doc"])), str(d.get("path", "")))
        return Diagnostic(
            severity=Severity(d["severity"]),
            reason=str(d["reason"]),
            message=str(d["message"]),
            pos=pos,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"diagnostic: not a diagnostic ({exc!r}): {data!r}") from None


@functools.cache
def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


def _mapping(data: object, path: str) -> Mapping[str, object]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping, got {type(data).__name__}")
    return data


def _value(tp: object, data: object, path: str) -> object:
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return _union(typing.get_args(tp), data, path)
    if origin is tuple:
        (item, _) = typing.get_args(tp)
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list, got {type(data).__name__}")
        return tuple(_value(item, v, f"{path}[{i}]") for i, v in enumerate(data))
    if origin is Literal:
        if data not in typing.get_args(tp):
            raise ValueError(f"{path}: {data!r} is not one of {typing.get_args(tp)}")
        return data
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp, data, path)
    if tp in (str, int, bool) and type(data) is tp:
        return data
    raise ValueError(f"{path}: expected {getattr(tp, '__name__', tp)}, got {data!r}")


def _union(members: tuple[object, ...], data: object, path: str) -> object:
    if data is None and type(None) in members:
        return None
    rest = [m for m in members if m is not type(None)]
    if len(rest) == 1:
        return _value(rest[0], data, path)
    tag = _mapping(data, path).get("type")
    for m in rest:
        if isinstance(m, type) and m.__name__ == tag:
            return _dataclass(m, data, path)
    names = ", ".join(getattr(m, "__name__", str(m)) for m in rest)
    raise ValueError(f"{path}: type {tag!r} is not one of {names}")


def _dataclass(cls: type, data: object, path: str) -> object:
    raw = _mapping(data, path)
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    extra = set(raw) - names - ({"type"} if cls in TAGGED else set())
    if extra:
        raise ValueError(f"{path}: unknown field(s) {', '.join(sorted(extra))}")
    if cls in TAGGED and raw.get("type", cls.__name__) != cls.__name__:
        raise ValueError(f"{path}: type {raw.get('type')!r} where {cls.__name__} belongs")
    kwargs: dict[str, object] = {}
    for name in names:
        tp = hints[name]
        if name in raw:
            kwargs[name] = _value(tp, raw[name], f"{path}.{name}")
        elif typing.get_origin(tp) is tuple:
            kwargs[name] = ()
        elif type(None) in typing.get_args(tp):
            kwargs[name] = None
        else:
            raise ValueError(f"{path}: missing field {name}")
    return cls(**kwargs)


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(data: object) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=100)


def dump_json(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
