"""A CRD's `openAPIV3Schema` applied to a raw document, the way the API server applies it.

```
raw document --apply_defaults(schema)--> defaulted copy
             --structural_errors(jsonschema)--> Diagnostics (same wording as engine.model)
             --list_errors(x-kubernetes-list-type)--> FieldValueDuplicate Diagnostics
```

OpenAPI v3 is turned into JSON Schema (Draft 7) by `to_json_schema`: `nullable: true` adds
`null` to the type, `x-kubernetes-int-or-string` allows integer or string, every other
`x-kubernetes-*` key is dropped, and an object with declared `properties` and no
`additionalProperties` rejects unknown fields (as `kubectl apply` does with strict field
validation) unless it has `x-kubernetes-preserve-unknown-fields`; `properties` inside
`oneOf`/`anyOf` branches only constrain values. Formats (`ipv4`, `ipv6`,
...) are checked with jsonschema's format checker.

This module does not evaluate CEL rules (`validate.cel`) or pick a CRD (`validate.crds`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import cast

import jsonschema

from turnout.engine.diagnostics import Diagnostic, SourcePos, error
from turnout.engine.validate.common import DUPLICATE, duplicate_message

Schema = Mapping[str, object]


def sub(schema: Schema, key: str) -> Schema:
    """A sub-schema (`items`, `additionalProperties`) or {} when absent or boolean."""
    value = schema.get(key)
    return cast(Schema, value) if isinstance(value, Mapping) else {}


def props(schema: Schema) -> Mapping[str, Schema]:
    value = schema.get("properties")
    return cast(Mapping[str, Schema], value) if isinstance(value, Mapping) else {}


def to_json_schema(schema: object) -> object:
    """OpenAPI v3 (Kubernetes structural schema) -> JSON Schema Draft 7."""
    if isinstance(schema, list):
        return [to_json_schema(s) for s in schema]
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, object] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "description", "default"):
            continue
        if key == "properties" and isinstance(value, Mapping):
            out[key] = {name: to_json_schema(s) for name, s in value.items()}
        else:
            out[key] = to_json_schema(value)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["type"] = ["integer", "string"]
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    preserve = schema.get("x-kubernetes-preserve-unknown-fields")
    # Only real object nodes; a `properties` inside oneOf/anyOf branches is a value check.
    is_object = schema.get("type") == "object" and "properties" in schema
    if is_object and "additionalProperties" not in schema and not preserve:
        out["additionalProperties"] = False
    return out


def make_validator(schema: Schema) -> jsonschema.protocols.Validator:
    """A compiled Draft 7 validator (with format checks) for one CRD version's schema."""
    return jsonschema.Draft7Validator(
        to_json_schema(schema), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


def apply_defaults(value: object, schema: Schema) -> object:
    """A copy of `value` with the schema's `default`s filled in, recursively, as the API
    server does before validation (a defaulted object gets its own nested defaults)."""
    if isinstance(value, Mapping):
        out: dict[str, object] = dict(value)
        for name, prop in props(schema).items():
            if name not in out and "default" in prop:
                out[name] = copy.deepcopy(prop["default"])
            if name in out:
                out[name] = apply_defaults(out[name], prop)
        extra = sub(schema, "additionalProperties")
        if extra:
            for key in list(out):
                if key not in props(schema):
                    out[key] = apply_defaults(out[key], extra)
        return out
    if isinstance(value, list):
        items = sub(schema, "items")
        return [apply_defaults(v, items) for v in value]
    return value


# --------------------------------------------------------------------------- error mapping


def path_text(parts: Iterator[object] | list[object]) -> str:
    """jsonschema's absolute path -> ``spec.rules[0].backendRefs[1].port``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _quote(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping | list):
        return '"object"' if isinstance(value, Mapping) else '"array"'
    return json.dumps(value)


_TYPE_NAMES = {"object", "array", "string", "integer", "number", "boolean", "null"}


def diagnostic_from(err: jsonschema.ValidationError, base: SourcePos) -> Diagnostic:
    """One jsonschema error, worded like the model's schema errors (`engine.model.kinds`)."""
    path = path_text(list(err.absolute_path))
    pos = base.child(path) if path else base
    kw, arg, value = err.validator, err.validator_value, err.instance
    if kw == "required":
        missing = err.message.split("'")[1] if "'" in err.message else str(arg)
        return error("FieldValueRequired", "Required value", pos.child(missing))
    if kw == "additionalProperties":
        extras = (
            sorted(set(value) - set(err.schema.get("properties", {})))
            if isinstance(value, Mapping)
            else []
        )
        name = extras[0] if extras else "?"
        return error("FieldValueUnknown", f'unknown field "{name}"', pos.child(name))
    if kw == "enum":
        allowed = ", ".join(_quote(a) for a in arg)
        msg = f"Unsupported value: {_quote(value)}: supported values: {allowed}"
        return error("FieldValueNotSupported", msg, pos)
    if kw == "pattern":
        return error(
            "FieldValueInvalid", f"Invalid value: {_quote(value)}: should match '{arg}'", pos
        )
    if kw == "maxLength":
        return error("FieldValueTooLong", f"Too long: may not be more than {arg} bytes", pos)
    if kw == "minLength":
        msg = f"Invalid value: {_quote(value)}: should be at least {arg} chars long"
        return error("FieldValueInvalid", msg, pos)
    if kw == "maxItems":
        msg = f"Too many: {len(value)}: must have at most {arg} items"
        return error("FieldValueTooMany", msg, pos)
    if kw == "minItems":
        msg = f"Invalid value: {len(value)}: should have at least {arg} items"
        return error("FieldValueInvalid", msg, pos)
    if kw == "minimum":
        msg = f"Invalid value: {value}: should be greater than or equal to {arg}"
        return error("FieldValueInvalid", msg, pos)
    if kw == "maximum":
        msg = f"Invalid value: {value}: should be less than or equal to {arg}"
        return error("FieldValueInvalid", msg, pos)
    if kw == "type":
        expected = arg if isinstance(arg, str) and arg in _TYPE_NAMES else " or ".join(arg)
        msg = f"Invalid value: {_quote(value)}: must be of type {expected}"
        return error("FieldValueTypeInvalid", msg, pos)
    if kw == "format":
        msg = f"Invalid value: {_quote(value)}: must be of type {arg}"
        return error("FieldValueInvalid", msg, pos)
    if kw in ("oneOf", "anyOf"):
        how = "one and only one schema (oneOf)" if kw == "oneOf" else "at least one schema (anyOf)"
        return error(
            "FieldValueInvalid", f"Invalid value: {_quote(value)}: must validate {how}", pos
        )
    return error("FieldValueInvalid", f"Invalid value: {_quote(value)}: {err.message}", pos)


def structural_errors(
    validator: jsonschema.protocols.Validator, instance: object, base: SourcePos
) -> list[Diagnostic]:
    """Every schema violation of `instance` (a whole document), as diagnostics."""
    return [diagnostic_from(e, base) for e in validator.iter_errors(instance)]


# --------------------------------------------------------------------------- list types


def list_errors(value: object, schema: Schema, pos: SourcePos) -> list[Diagnostic]:
    """Duplicates in `x-kubernetes-list-type: map` (by `x-kubernetes-list-map-keys`) and
    `set` lists anywhere in `value`, reported at the repeated item."""
    out: list[Diagnostic] = []
    if isinstance(value, Mapping):
        for name, prop in props(schema).items():
            if name in value:
                out += list_errors(value[name], prop, pos.child(name))
        extra = sub(schema, "additionalProperties")
        if extra:
            for key, v in value.items():
                if key not in props(schema):
                    out += list_errors(v, extra, pos.child(str(key)))
    elif isinstance(value, list):
        out += _duplicates(value, schema, pos)
        items = sub(schema, "items")
        for i, v in enumerate(value):
            out += list_errors(v, items, pos.child(f"[{i}]"))
    return out


def _duplicates(value: list[object], schema: Schema, pos: SourcePos) -> list[Diagnostic]:
    kind = schema.get("x-kubernetes-list-type")
    keys = schema.get("x-kubernetes-list-map-keys")
    seen: set[str] = set()
    out: list[Diagnostic] = []
    for i, item in enumerate(value):
        if kind == "map" and isinstance(keys, list) and isinstance(item, Mapping):
            shown: object = {str(k): item.get(str(k)) for k in keys if str(k) in item}
        elif kind == "set":
            shown = item
        else:
            return []
        text = json.dumps(shown, sort_keys=True)
        if text in seen:
            out.append(error(DUPLICATE, duplicate_message(shown), pos.child(f"[{i}]")))
        seen.add(text)
    return out
