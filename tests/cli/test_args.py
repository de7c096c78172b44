"""Argument types of `turnout.cli.args` that the parser tests do not reach one by one."""

from __future__ import annotations

import argparse

import pytest

from turnout.cli.args import duration_ms


@pytest.mark.parametrize(
    ("text", "ms"),
    [("60s", 60_000), ("1m30s", 90_000), ("500ms", 500), ("1h", 3_600_000), ("0", 0)],
)
def test_a_duration_is_read_as_gateway_api_writes_it(text: str, ms: int) -> None:
    assert duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "5", "5x", "1.5s", "-1s", "123456s", "s", "0s0"])
def test_anything_else_is_a_usage_error(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="want a duration"):
        duration_ms(text)
