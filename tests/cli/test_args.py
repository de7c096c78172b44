"""Argument types of `turnout.cli.args` that the parser tests do not reach one by one."""

from __future__ import annotations

import argparse

import pytest

from turnout.cli.args import byte_size, duration_ms


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


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("3145728", 3 * 1024 * 1024),
        ("16Mi", 16 * 1024 * 1024),
        ("16MiB", 16 * 1024 * 1024),
        ("512Ki", 512 * 1024),
        ("20M", 20_000_000),
        ("1Gi", 1024**3),
    ],
)
def test_max_file_size_takes_bytes_or_a_quantity(text: str, size: int) -> None:
    assert byte_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "16x", "Mi", "-1", "1.5Mi", "16iB"])
def test_max_file_size_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="want a size like 16Mi"):
        byte_size(text)
