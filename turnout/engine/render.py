"""IR, status and diagnostics -> plain data (and YAML/JSON text), deterministically.

This is the format of `mesh routes -o yaml|json` and of the golden `.out.yaml` files:
dataclass fields in snake_case, union members tagged with ``type: <ClassName>``, `None`
and empty tuples left out, file paths made relative to a root. No timestamps, no randomness.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from turnout.engine import ir
from turnout.engine.diagnostics import Diagnostic

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


def to_data(value: object) -> Data:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, object] = {}
        if isinstance(value, TAGGED):
            out["type"] = type(value).__name__
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if v is None or v == ():
                continue
            out[f.name] = to_data(v)
        return out
    if isinstance(value, tuple | list):
        return [to_data(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_data(v) for k, v in value.items()}
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
) -> dict[str, object]:
    return {
        "table": to_data(table),
        "status": [to_data(s) for s in statuses],
        "diagnostics": [diagnostic_data(d, root=root) for d in diagnostics],
    }


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
