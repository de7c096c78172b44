"""IR, status and diagnostics -> plain data (and YAML/JSON text), deterministically, and back.

```
to_data(RouteTable | RouteStatus | ...) ──> {snake_case: ..., "type": "ServiceParent"} ──┐
                                     dump_yaml / dump_json (mesh routes -o, golden files)  │
dump_yaml / dump_json_compact(IR)   the same text from the IR itself, without the copy     │
                                     (the control plane's /debug/table, ?format=json)      │
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
import io
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal, TypeVar, Union, cast

import yaml

from turnout.engine import ir, ir_policy
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
    ir_policy.ExactIdentity,
    ir_policy.IdentitySuffix,
    ir_policy.ServiceAccountIdentity,
    ir_policy.PrincipalMatch,
)
"""Members of IR unions: rendered with a `type` key so the reader knows which one it is."""

Data = dict[str, object] | list[object] | str | int | bool | None
T = TypeVar("T")


@functools.cache
def camel_case(name: str) -> str:
    """``observed_generation`` -> ``observedGeneration`` (Kubernetes' JSON field names)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


_FIELD_NAMES: dict[tuple[type, bool], tuple[tuple[str, str, bool], ...]] = {}

REDACTED = "[redacted]"
"""What a render prints for a field marked ``metadata={"redact": True}`` (private keys)."""


def _field_names(cls: type, camel: bool) -> tuple[tuple[str, str, bool], ...]:
    """(attribute, rendered name, redacted) of each field of dataclass `cls`, in order."""
    names = _FIELD_NAMES.get((cls, camel))
    if names is None:
        fields = dataclasses.fields(cls)
        names = tuple(
            (f.name, camel_case(f.name) if camel else f.name, bool(f.metadata.get("redact")))
            for f in fields
        )
        _FIELD_NAMES[(cls, camel)] = names
    return names


def fields_data(value: object, *, camel: bool = False) -> list[tuple[str, object]]:
    """A dataclass instance's rendered (name, value) pairs, values as they are: its `type` tag
    first if it is a union member, then each field that is not `None` or empty."""
    out: list[tuple[str, object]] = []
    if isinstance(value, TAGGED):
        out.append(("type", type(value).__name__))
    for attr, name, redact in _field_names(type(value), camel):
        v = getattr(value, attr)
        if v is None or v == ():
            continue
        out.append((name, REDACTED if redact else v))
    return out


def to_data(value: object, *, camel: bool = False) -> Data:
    """`value` as plain data; `camel` spells dataclass field names in camelCase (mapping keys
    are the user's own, e.g. header names, and stay as they are)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_data(v, camel=camel) for k, v in fields_data(value, camel=camel)}
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
    gateways: Iterable[ir.GatewayStatus] = (),
) -> dict[str, object]:
    """Table, route status, Gateway status (when there is any) and diagnostics; `camel`:
    Kubernetes field names (see `to_data`)."""
    data: dict[str, object] = {
        "table": to_data(table, camel=camel),
        "status": [to_data(s, camel=camel) for s in statuses],
    }
    gateway_data = [to_data(g, camel=camel) for g in gateways]
    if gateway_data:
        data["gatewayStatus"] = gateway_data
    data["diagnostics"] = [diagnostic_data(d, root=root) for d in diagnostics]
    return data


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
    names = [f.name for f in dataclasses.fields(cls)]  # in order: the first bad field is named
    extra = set(raw) - set(names) - ({"type"} if cls in TAGGED else set())
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

YAML_WIDTH = 100


def dump_yaml(data: object) -> str:
    """`data` (plain data, or IR objects, rendered as `to_data` would) as block YAML, keys
    sorted. The text is what ``yaml.dump(to_data(data), sort_keys=True, width=100)`` with
    `_Dumper` gives (`tests/engine/test_render_yaml.py` holds them equal), written event by
    event to libyaml's emitter: no node graph, no `to_data` copy. What libyaml would write
    otherwise (one dict or list in two places, which YAML writes as an anchor and an alias; a
    bare scalar; an empty key; a string YAML must write double-quoted, which only control or
    non-ASCII characters make it) takes `yaml.dump` itself."""
    out = io.StringIO()
    try:
        if not isinstance(data, dict | list | tuple | Mapping) and not dataclasses.is_dataclass(
            data
        ):
            raise _Fallback  # a bare scalar: libyaml leaves out the `...` yaml.dump ends it with
        _YamlEvents(out).document(data)
    except _Fallback:
        return yaml.dump(
            data, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=YAML_WIDTH
        )
    return out.getvalue()


def dump_json(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def dump_json_compact(value: object) -> str:
    """`value` (plain data or IR objects) as one line of JSON, keys sorted: the same document
    `dump_json(to_data(value))` holds, encoded by the C encoder, each dataclass turned into
    a mapping only as the encoder reaches it (no `to_data` copy of the whole)."""
    return json.dumps(value, default=_json_default, sort_keys=True, separators=(",", ":")) + "\n"


def _json_default(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dict(fields_data(value))
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    raise TypeError(f"cannot render {type(value).__name__}")


_EMITTER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_Make = Callable[..., yaml.Event]
_SCALAR = cast(_Make, yaml.ScalarEvent)
_MAP_START = cast(_Make, yaml.MappingStartEvent)
_MAP_END = cast(_Make, yaml.MappingEndEvent)
_SEQ_START = cast(_Make, yaml.SequenceStartEvent)
_SEQ_END = cast(_Make, yaml.SequenceEndEvent)
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


_BREAKS = "\n\x85\u2028\u2029"


def _pyyaml_only(v: str, *, plain: bool) -> bool:
    """`v` is one libyaml would write otherwise than PyYAML: double-quoted (libyaml breaks
    long lines elsewhere), or a literal block ending in two line breaks (PyYAML ends the
    document with `...` after one). `plain`: a plain `v` would read back as a string.
    Follows `Emitter.choose_scalar_style` for block data."""
    a = _ANALYZER.analyze_scalar(v)
    if "\n" in v:  # asked for as a literal block
        if not a.allow_block:
            return True  # double-quoted
        return v[-1] in _BREAKS and (len(v) == 1 or v[-2] in _BREAKS)
    return not (plain and a.allow_block_plain) and not a.allow_single_quoted


_ANALYZER = yaml.emitter.Emitter(io.StringIO(), width=YAML_WIDTH)


class _Fallback(Exception):
    """Data libyaml would write otherwise than `yaml.dump` with `_Dumper` (see `dump_yaml`):
    a dict or list met twice (an alias), a bare scalar, an empty key, some strings with
    control or non-ASCII characters (`_pyyaml_only`)."""


class _YamlEvents:
    """Walks plain data or IR and emits the events `yaml.dump` would serialize it into."""

    def __init__(self, stream: io.StringIO) -> None:
        self._dumper = _EMITTER(stream, width=YAML_WIDTH)
        self._emit = self._dumper.emit
        self._resolve = cast(Callable[..., object], self._dumper.resolve)
        implicit = cast(Mapping[str, object], self._dumper.yaml_implicit_resolvers)
        self._implicit_first = frozenset(implicit) if None not in implicit else None
        """First characters a plain scalar can have and still resolve to another type (None:
        any can, a resolver without a first character is installed)."""
        self._seen: set[int] = set()

    def document(self, data: object) -> None:
        emit = self._emit
        try:
            emit(yaml.StreamStartEvent())
            emit(yaml.DocumentStartEvent(explicit=False))
            self._value(data)
            emit(yaml.DocumentEndEvent(explicit=False))
            emit(yaml.StreamEndEvent())
        finally:
            self._dumper.dispose()

    def _value(self, v: object) -> None:
        t = type(v)
        if t is str:
            self._str(cast(str, v))
        elif t is bool:
            self._scalar(_BOOL, "true" if v else "false")
        elif t is int:
            self._scalar(_INT, str(v))
        elif v is None:
            self._scalar(_NULL, "null")
        elif t is dict or t is list:
            if id(v) in self._seen:
                raise _Fallback
            self._seen.add(id(v))
            if t is dict:
                self._mapping(list(cast(dict[object, object], v).items()))
            else:
                self._sequence(cast(list[object], v))
        elif t is tuple:
            self._sequence(cast(tuple[object, ...], v))
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            self._mapping(fields_data(v))
        elif isinstance(v, Mapping):
            self._mapping([(str(k), x) for k, x in v.items()])
        else:
            self._other(v)

    def _str(self, v: str) -> None:
        first = self._implicit_first
        plain = (first is not None and v[:1] not in first) or (
            self._resolve(yaml.ScalarNode, v, (True, False)) == _STR
        )
        if not (v.isascii() and v.isprintable()) and _pyyaml_only(v, plain=plain):
            raise _Fallback
        style = "|" if "\n" in v else None
        self._emit(_SCALAR(None, _STR, (plain, True), v, style=style))

    def _scalar(self, tag: str, text: str) -> None:
        plain = self._resolve(yaml.ScalarNode, text, (True, False)) == tag
        self._emit(_SCALAR(None, tag, (plain, False), text))

    def _mapping(self, items: Sequence[tuple[object, object]]) -> None:
        with contextlib.suppress(TypeError):  # as yaml.dump: unorderable keys keep their order
            items = sorted(items)
        self._emit(_MAP_START(None, _MAP, True, flow_style=False))
        for k, v in items:
            if k == "":
                raise _Fallback  # PyYAML writes `? ''`, libyaml `'':`
            self._value(k)
            self._value(v)
        self._emit(_MAP_END())

    def _sequence(self, items: Sequence[object]) -> None:
        self._emit(_SEQ_START(None, _SEQ, True, flow_style=False))
        for v in items:
            self._value(v)
        self._emit(_SEQ_END())

    def _other(self, v: object) -> None:
        """Any other scalar (a float, a date): represented as `_Dumper` represents it."""
        node = _Dumper(io.StringIO()).represent_data(v)
        if not isinstance(node, yaml.ScalarNode):
            raise _Fallback  # not ours to flatten: let yaml.dump do all of it
        tag, text = str(node.tag), str(node.value)
        plain = self._resolve(yaml.ScalarNode, text, (True, False)) == tag
        quoted = self._resolve(yaml.ScalarNode, text, (False, True)) == tag
        self._emit(_SCALAR(None, tag, (plain, quoted), text, style=node.style))
