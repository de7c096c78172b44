"""A cheap protoc-gen-validate check: walk a message, read each field's `(validate.rules)`
annotation from the descriptor and enforce the common ones, recursing into `Any`s.

Covered: message `required`, oneof `(validate.required)`, string `min_len`, number/wrapper
`gt`/`gte`/`lt`/`lte`, duration `gt`/`gte`/`required`, repeated `min_items`, enum
`defined_only`; plus two basics for every message: no negative Duration anywhere, and a
non-empty `name` on the resources. Not covered: regex/well-known string rules, `in`/`not_in`.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, duration_pb2, symbol_database
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from validate import validate_pb2

_WRAPPERS = {
    "google.protobuf.UInt32Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.Int64Value",
    "google.protobuf.DoubleValue",
}
_NUMBER_RULES = ("uint32", "uint64", "int32", "int64", "double", "float")


def unpack_any(packed: any_pb2.Any) -> Message:
    name = packed.type_url.split("/")[-1]
    cls = symbol_database.Default().GetSymbol(name)
    message: Message = cls()
    assert packed.Unpack(message), packed.type_url
    return message


def _number_problems(rules: Any, value: float, where: str) -> list[str]:
    out = []
    if rules.HasField("gt") and not value > rules.gt:
        out.append(f"{where}: {value} must be > {rules.gt}")
    if rules.HasField("gte") and not value >= rules.gte:
        out.append(f"{where}: {value} must be >= {rules.gte}")
    if rules.HasField("lt") and not value < rules.lt:
        out.append(f"{where}: {value} must be < {rules.lt}")
    if rules.HasField("lte") and not value <= rules.lte:
        out.append(f"{where}: {value} must be <= {rules.lte}")
    return out


def _scalar_problems(field: Any, rules: Any, value: Any, where: str) -> list[str]:
    kind = rules.WhichOneof("type")
    if kind == "string" and rules.string.HasField("min_len") and len(value) < rules.string.min_len:
        return [f"{where}: shorter than {rules.string.min_len}"]
    if kind in _NUMBER_RULES:
        return _number_problems(getattr(rules, kind), value, where)
    enum = field.enum_type
    defined = kind != "enum" or (enum is not None and value in enum.values_by_number)
    if kind == "enum" and rules.enum.defined_only and not defined:
        return [f"{where}: {value} is not a defined enum value"]
    return []


def _duration_ms(d: duration_pb2.Duration) -> float:
    return d.seconds * 1000 + d.nanos / 1e6


def _message_field_problems(rules: Any, value: Message, where: str) -> list[str]:
    kind = rules.WhichOneof("type")
    name = value.DESCRIPTOR.full_name
    if name in _WRAPPERS and kind in _NUMBER_RULES:
        return _number_problems(getattr(rules, kind), value.value, where)  # type: ignore[attr-defined]
    if kind == "duration" and isinstance(value, duration_pb2.Duration):
        ms = _duration_ms(value)
        out = []
        if rules.duration.HasField("gt") and not ms > _duration_ms(rules.duration.gt):
            out.append(f"{where}: duration must be > {rules.duration.gt.ToJsonString()}")
        if rules.duration.HasField("gte") and not ms >= _duration_ms(rules.duration.gte):
            out.append(f"{where}: duration must be >= {rules.duration.gte.ToJsonString()}")
        return out
    return []


def pgv_problems(message: Message, where: str = "") -> list[str]:
    """Every violated rule in `message` and everything below it (Anys unpacked)."""
    where = where or message.DESCRIPTOR.name
    out: list[str] = []
    if isinstance(message, duration_pb2.Duration) and (message.seconds < 0 or message.nanos < 0):
        out.append(f"{where}: negative duration")
    if isinstance(message, any_pb2.Any):
        return out + pgv_problems(unpack_any(message), f"{where}<{message.type_url}>")
    for oneof in message.DESCRIPTOR.oneofs:
        opts = oneof.GetOptions()
        required = (
            opts.HasExtension(validate_pb2.required) and opts.Extensions[validate_pb2.required]
        )
        if required and message.WhichOneof(oneof.name) is None:
            out.append(f"{where}: oneof {oneof.name} is required")
    for field in message.DESCRIPTOR.fields:
        out.extend(_field_problems(message, field, f"{where}.{field.name}"))
    return out


def _field_problems(message: Message, field: Any, where: str) -> list[str]:
    opts = field.GetOptions()
    rules = opts.Extensions[validate_pb2.rules] if opts.HasExtension(validate_pb2.rules) else None
    value = getattr(message, field.name)
    is_message = field.type == FieldDescriptor.TYPE_MESSAGE
    out: list[str] = []
    oneof = field.containing_oneof
    if oneof is not None and message.WhichOneof(oneof.name) != field.name:
        return out  # PGV applies a oneof member's rules only when it is the one set
    if field.is_repeated:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if isinstance(item, Message):
                    out.extend(pgv_problems(item, f"{where}[{key}]"))
            return out
        if rules is not None and rules.WhichOneof("type") == "repeated":
            if rules.repeated.HasField("min_items") and len(value) < rules.repeated.min_items:
                out.append(f"{where}: fewer than {rules.repeated.min_items} items")
            item_rules = rules.repeated.items if rules.repeated.HasField("items") else None
        else:
            item_rules = None
        for i, item in enumerate(value):
            if is_message:
                out.extend(pgv_problems(item, f"{where}[{i}]"))
            elif item_rules is not None:
                out.extend(_scalar_problems(field, item_rules, item, f"{where}[{i}]"))
        return out
    if is_message:
        present = message.HasField(field.name)
        if rules is not None and rules.message.required and not present:
            return [f"{where}: required"]
        if (
            rules is not None
            and rules.WhichOneof("type") == "duration"
            and rules.duration.required
            and not present
        ):
            return [f"{where}: required"]
        if present:
            if rules is not None:
                out.extend(_message_field_problems(rules, value, where))
            out.extend(pgv_problems(value, where))
        return out
    if rules is not None:
        # proto3 scalars: rules apply to the value whether set or not (PGV's behaviour).
        out.extend(_scalar_problems(field, rules, value, where))
    return out
