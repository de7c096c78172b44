"""`ir.store_by_slot`: the IR's faster ``__init__`` builds what `@dataclass`'s own would."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from turnout.engine import ir, ir_policy


def _classes() -> list[type]:
    return [
        c
        for m in (ir, ir_policy)
        for c in vars(m).values()
        if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == m.__name__
    ]


def test_every_ir_class_has_the_slot_init() -> None:
    classes = _classes()
    assert len(classes) > 60
    for cls in classes:
        names = cls.__init__.__code__.co_names  # type: ignore[misc]
        assert {f"_set_{f.name}" for f in dataclasses.fields(cls)} == set(names), cls


def test_construction_keeps_fields_defaults_and_frozenness() -> None:
    ref = ir.SourceRef(kind="HTTPRoute", namespace="shop", name="web")
    assert (ref.kind, ref.namespace, ref.name, ref.section) == ("HTTPRoute", "shop", "web", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.name = "other"  # type: ignore[misc]
    assert ref == ir.SourceRef(kind="HTTPRoute", namespace="shop", name="web", section=None)
    assert hash(ref) == hash(ir.SourceRef(kind="HTTPRoute", namespace="shop", name="web"))
    moved = dataclasses.replace(ref, section="rule/0")
    assert moved.section == "rule/0" and moved.name == "web"
    assert pickle.loads(pickle.dumps(moved)) == moved


def test_bad_calls_fail_as_a_dataclass_init_does() -> None:
    with pytest.raises(TypeError, match="name"):
        ir.SourceRef(kind="HTTPRoute", namespace="shop")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ir.SourceRef("HTTPRoute", "shop", "web")  # type: ignore[misc]
    with pytest.raises(TypeError, match="nope"):
        ir.SourceRef(kind="HTTPRoute", namespace="shop", name="web", nope=1)  # type: ignore[call-arg]


def test_unsupported_fields_are_refused_at_import() -> None:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Bad:
        items: tuple[int, ...] = dataclasses.field(default_factory=tuple)

    with pytest.raises(TypeError, match="plain fields"):
        ir.store_by_slot(Bad)


def test_positional_fields_stay_positional() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Pair:
        a: int
        b: str = "x"

    ir.store_by_slot(Pair)
    assert Pair(1) == Pair(a=1, b="x") and Pair(1, "y").b == "y"
    with pytest.raises(TypeError):
        Pair(1, "y", 3)  # type: ignore[call-arg]
