"""Kubernetes quantities (TrafficSplit v1alpha1 weights) and their conversion to route weights."""

from __future__ import annotations

from decimal import Decimal

import pytest

from turnout.adapters.smi import fit_weights
from turnout.engine.model.smi import milli_units, quantity_value


@pytest.mark.parametrize(
    ("text", "milli"),
    [
        pytest.param("10", 10_000, id="flagger-string"),
        pytest.param(10, 10_000, id="plain-int"),
        pytest.param("0", 0, id="zero"),
        pytest.param("500m", 500, id="milli"),
        pytest.param("1", 1_000, id="one-is-1000m"),
        pytest.param("1.5", 1_500, id="decimal"),
        pytest.param(".5", 500, id="leading-dot"),
        pytest.param("+2", 2_000, id="plus-sign"),
        pytest.param("1k", 1_000_000, id="kilo"),
        pytest.param("1Ki", 1_024_000, id="binary-si"),
        pytest.param("2e3", 2_000_000, id="exponent"),
        pytest.param("1u", 1, id="micro-rounds-up-like-MilliValue"),
        pytest.param("1500n", 1, id="nano-rounds-up"),
    ],
)
def test_quantity_in_milli_units(text: int | str, milli: int) -> None:
    assert milli_units(text) == milli


@pytest.mark.parametrize("text", ["ten", "1 k", " 1", "1kk", "", "1KiB", "--1", "m"])
def test_malformed_quantity_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="quantities must match"):
        quantity_value(text)


def test_quantity_value_is_exact() -> None:
    assert quantity_value("100m") * 3 == Decimal("0.3")


@pytest.mark.parametrize(
    ("weights", "fitted", "rounded"),
    [
        pytest.param([10, 90], [10, 90], False, id="in-range-unchanged"),
        pytest.param([0, 0], [0, 0], False, id="all-zero-kept"),
        pytest.param([2_000_000, 1_000_000], [2, 1], False, id="gcd-exact"),
        pytest.param([3_000_001, 1], [1_000_000, 1], True, id="scaled-nonzero-stays-nonzero"),
        pytest.param([4_000_000, 2_000_001], [1_000_000, 500_000], True, id="scaled-ratio"),
    ],
)
def test_fit_weights_keeps_ratios_within_the_httproute_range(
    weights: list[int], fitted: list[int], rounded: bool
) -> None:
    assert fit_weights(weights) == (fitted, rounded)
