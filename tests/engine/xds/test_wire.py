"""`wire.struct_from` fills a Struct without protobuf's pure-Python `Struct.update`; it
must give the very same message (and bytes) for every value our metadata uses."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2

from turnout.engine.xds.wire import StructValue, metadata_from, struct_from

VALUES: list[dict[str, StructValue]] = [
    {},
    {"rule": "httproute/ns/r/rule/0", "source": "HTTPRoute/ns/r", "backends": ["a", "b"]},
    {"empty list": [], "empty map": {}, "nested": {"inner": [[], {}, [1, "x"]]}},
    {"none": None, "yes": True, "no": False, "zero": 0, "neg": -3, "big": 10**12},
    {"tuple": ("a", 1), "mixed": [True, None, "s", 2, {"k": ()}]},
]


@pytest.mark.parametrize("value", VALUES)
def test_struct_from_is_struct_update(value: dict[str, StructValue]) -> None:
    expected = struct_pb2.Struct()
    expected.update(value)
    got = struct_from(value)
    assert got == expected
    assert got.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )


def test_metadata_from_puts_the_struct_under_turnout() -> None:
    meta = metadata_from({"port": 80, "addresses": ["10.0.0.1"]})
    assert list(meta.filter_metadata) == ["turnout"]
    assert meta.filter_metadata["turnout"]["port"] == 80
    assert list(meta.filter_metadata["turnout"]["addresses"]) == ["10.0.0.1"]


def test_a_value_a_struct_cannot_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="unexpected type"):
        struct_from({"x": object()})  # type: ignore[dict-item]
