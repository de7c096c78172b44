"""Small protobuf builders shared by the xDS translator modules: names, durations, fractions.

Data flow: the feature modules (`listeners`, `routes`, `filters`, `clusters`) call these to
build the leaf messages every resource needs (an ADS config source, a `Duration` from IR
milliseconds, a per-million `FractionalPercent`, the `turnout` metadata `Struct`). Keeping them
here means each xDS convention of docs/xds.md is spelled out once.

It deliberately holds no policy: it does not decide which message goes where, and it never
reads the IR beyond plain ints and strings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TypeAlias

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2, struct_pb2
from google.protobuf.message import Message

from turnout.engine.ir import PER_MILLION

log = logging.getLogger(__name__)

METADATA_KEY = "turnout"
"""Key of our entry in `Metadata.filter_metadata` on Routes and Clusters."""

INVALID_CLUSTER = "turnout/invalid"
"""EDS cluster that invalid backends point at; it never has an endpoint."""

FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"
BACKEND_FILTER = "turnout.filters.http.backend"
"""`typed_per_filter_config` key on a `ClusterWeight` for what Envoy cannot say per weighted
cluster: a backend's redirect or path rewrite (docs/xds.md "Backend filters"); no HTTP filter
has this name, so it is always wrapped in an optional `FilterConfig`."""
ROUTER_FILTER = "envoy.filters.http.router"
HCM_FILTER = "envoy.filters.network.http_connection_manager"
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

TYPE_PREFIX = "type.googleapis.com/"

# Envoy's regex syntax (RE2) treats a backslash before punctuation as a literal; these are the
# only characters that need one in a path.
_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")


def pack(message: Message) -> any_pb2.Any:
    """`Any` with the standard `type.googleapis.com/` prefix, serialized deterministically
    (map entries sorted), so equal messages pack to equal bytes."""
    packed = any_pb2.Any()
    packed.Pack(message, deterministic=True)
    return packed


def type_url(message: Message) -> str:
    return TYPE_PREFIX + message.DESCRIPTOR.full_name


def ads_config_source() -> config_source_pb2.ConfigSource:
    """`{ads: {}, resource_api_version: V3}`: fetch over the same ADS stream."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )


def duration_from_ms(ms: int) -> duration_pb2.Duration:
    """IR milliseconds -> `Duration` (negative values are clamped to 0: never valid in xDS)."""
    out = duration_pb2.Duration()
    fill_duration(out, ms)
    return out


def fill_duration(out: duration_pb2.Duration, ms: int) -> None:
    """`duration_from_ms` into a message field in place (no copy of a built `Duration`)."""
    ms = max(ms, 0)
    out.seconds, out.nanos = ms // 1000, (ms % 1000) * 1_000_000


def fraction_per_million(per_million: int) -> percent_pb2.FractionalPercent:
    """A per-million IR fraction over Envoy's MILLION denominator, clamped to 0..100%."""
    return percent_pb2.FractionalPercent(
        numerator=min(max(per_million, 0), PER_MILLION),
        denominator=percent_pb2.FractionalPercent.DenominatorType.MILLION,
    )


StructValue: TypeAlias = str | int | bool | list["StructValue"] | Mapping[str, "StructValue"] | None


def struct_from(value: Mapping[str, StructValue]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    fill_struct(out, value)
    return out


def fill_struct(out: struct_pb2.Struct, value: Mapping[str, StructValue]) -> None:
    """`out.update(value)` without protobuf's pure-Python well-known-type helpers (a route's
    metadata is built 10,000 times in a full compile): the same fields, the same bytes."""
    fields = out.fields
    for key, item in value.items():
        _fill_value(fields[key], item)


def _fill_value(out: struct_pb2.Value, item: StructValue) -> None:
    kind = type(item)
    if kind is str:
        out.string_value = item  # type: ignore[assignment]
    elif kind is list:
        list_value = out.list_value
        list_value.SetInParent()  # an empty list is still a list_value
        values = list_value.values
        for element in item:  # type: ignore[union-attr]
            _fill_value(values.add(), element)
    elif item is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(item, bool):
        out.bool_value = item
    elif isinstance(item, str):
        out.string_value = item
    elif isinstance(item, int | float):
        out.number_value = item
    elif isinstance(item, Mapping):
        out.struct_value.SetInParent()
        fill_struct(out.struct_value, item)
    elif isinstance(item, list | tuple):
        _fill_value(out, list(item))
    else:
        raise ValueError(f"unexpected type {kind.__name__} in a Struct")


def metadata_from(value: Mapping[str, StructValue]) -> base_pb2.Metadata:
    """`Metadata` whose `filter_metadata["turnout"]` is `value`."""
    meta = base_pb2.Metadata()
    fill_struct(meta.filter_metadata[METADATA_KEY], value)
    return meta


def re2_escape(text: str) -> str:
    """Quote `text` so an RE2 pattern matches it literally."""
    return "".join("\\" + ch if ch in _RE2_SPECIAL else ch for ch in text)


def varint(n: int) -> bytes:
    """`n` (>= 0) as a protobuf base-128 varint, for the modules that write wire bytes."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def framed(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field: its tag, the length of `data` as a varint, then `data`."""
    return tag + varint(len(data)) + data
