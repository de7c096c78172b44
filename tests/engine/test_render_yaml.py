"""`render.dump_yaml` writes what `yaml.dump` with `render._Dumper` writes, byte for byte.

`dump_yaml` emits events straight to libyaml's emitter (no node graph, no `to_data` copy,
IR objects walked as they are); `yaml.dump` with the pure-Python `_Dumper` is what the golden
files were written with. Every case is dumped both ways: the scalars YAML must quote (they
would read back as another type, or start with an indicator), the ones it folds (past the
100-column width), keys that are not simple, multi-line text, and data that holds one list
twice (an alias: the fallback to `yaml.dump`).
"""

from __future__ import annotations

import random

import pytest
import yaml

from tests.conftest import ROOT
from turnout.engine.pipeline import compile_files
from turnout.engine.render import _Dumper, dump_json, dump_json_compact, dump_yaml, to_data

SCALARS = [
    "", "plain", "true", "True", "FALSE", "yes", "No", "on", "off", "y", "n", "null", "Null",
    "~", "123", "-7", "+3", "0x1F", "0o17", "1_000", "1.5", ".5", "1e3", ".inf", "-.Inf", ".nan",
    "2024-01-01", "2024-01-01T10:00:00Z", "12:30", "-", "- a", "-a", ":", ": x", "a: b", "a:b",
    "#x", "x #y", "x#y", "'single'", '"double"', "it's", "multi\nline", "trailing\n", "\nlead",
    "  lead", "trail ", "tab\there", "nul\x00", "bell\x07", "é", "emoji \U0001f600", "a\u2028b",
    "!tag", "&anchor", "*alias", "%pct", "@at", "`tick", "{a}", "[a]", "a, b", ",", "?", "? x",
    "|", ">", "=", "<<", "/svc1/api", "^/api/v[0-9]+$", "x-canary", "http://a:80/b?c=d#e",
    "word " * 30, "x" * 150, ("long-" * 25) + " tail", "a " + "b" * 120 + " c",
    "line one\nline two that is rather long " + "z" * 90 + "\nthree", "\n", "two\n\n", "\t- ?}",
    "a*,\u2028{}\ufeffa1?", "+%<\x85\xe9\n\",*9", "x \ny", "x\n y", "tab\tand é " * 12,
    0, 1, -1, 10**20, True, False, None, 1.5, float("inf"), -0.0,
]  # fmt: skip


EXAMPLES = ROOT / "examples" / "emojivoto"


def reference(data: object) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=100)


@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_each_scalar_as_yaml_dump_writes_it(value: object) -> None:
    data = {"k": value, "list": [value, [value]], "deep": {"a": {"b": {"c": [{"d": value}]}}}}
    assert dump_yaml(data) == reference(data)
    assert dump_yaml(value) == reference(value)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({}, id="empty-mapping"),
        pytest.param([], id="empty-list"),
        pytest.param({"a": {}, "b": [], "c": [{}, []]}, id="empty-inside"),
        pytest.param({"z": 1, "a": 2, "M": 3, "_": 4, "10": 5, "9": 6}, id="keys-sorted"),
        pytest.param({"true": 1, "null": 2, "": 3, "a: b": 4, "- x": 5}, id="keys-quoted"),
        pytest.param({"k" * 130: "long key", "multi\nline": "key"}, id="keys-not-simple"),
        pytest.param({1: "int key", 2: "two"}, id="int-keys"),
        pytest.param([[1, [2, [3, []]]], {"a": [{"b": [{}]}]}], id="nested"),
        pytest.param({"x" * 95: "y" * 20, "short": "w " * 60}, id="folding-at-the-key"),
        pytest.param({"x" * 95: "\t- ?}", "y" * 90: "a\u2028b"}, id="double-quoted-at-the-key"),
        pytest.param({"z": "last\n\n"}, id="literal-keep-at-the-end"),
    ],
)
def test_structures_as_yaml_dump_writes_them(data: object) -> None:
    assert dump_yaml(data) == reference(data)


def test_random_strings_as_yaml_dump_writes_them() -> None:
    rng = random.Random(11)
    chars = "ab yz019-_.:#,'\"!&*%@`{}[]|>?=<~\\/+\n\t\x00\x85\u2028\ufeff\xe9"
    for _ in range(1_500):
        s = "".join(rng.choice(chars) for _ in range(rng.choice((0, 1, 2, 5, 12, 40, 130))))
        for data in ({"k": s, "l": [{"d": s}]}, {s or "x": 1}, {"x" * rng.randint(0, 99): s}):
            assert dump_yaml(data) == reference(data), data


def test_a_list_held_twice_is_aliased_as_yaml_dump_does() -> None:
    shared = [1, 2]
    data = {"a": shared, "b": shared}
    assert dump_yaml(data) == reference(data)
    assert "&id001" in dump_yaml(data)


def test_ir_objects_are_written_as_their_to_data() -> None:
    result = compile_files([EXAMPLES]).result
    assert result.table.parents and result.statuses
    data = {"table": result.table, "status": result.statuses}
    plain = {"table": to_data(result.table), "status": [to_data(s) for s in result.statuses]}
    assert dump_yaml(data) == reference(plain)
    assert yaml.safe_load(dump_json_compact(data)) == yaml.safe_load(dump_json(plain))
