"""`runner.settle_heap` after a table swap: a young collection and a freeze, not a full
pass over the heap on the event loop (40-100 ms for 2,000 routes), unless the heap has
grown `FULL_SETTLE_GROWTH` times over since the last full pass."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from turnout.proxy import runner


@contextmanager
def generations() -> Iterator[list[int]]:
    """The generations collected meanwhile."""
    seen: list[int] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(record)
    try:
        yield seen
    finally:
        gc.callbacks.remove(record)


def test_a_settle_collects_the_young_generations_and_freezes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner.settle_heap()  # whatever came before: settled (the first is a full pass)
    # the last full pass as if it had just been made (the heap far from doubling since)
    monkeypatch.setattr(runner, "_blocks_after_full", [sys.getallocatedblocks()])
    table = [{"route": i} for i in range(5000)]  # a new table's objects, not frozen yet
    with generations() as seen:
        runner.settle_heap()
    assert 1 in seen and 2 not in seen
    assert gc.get_freeze_count() >= len(table)


def test_a_heap_grown_past_the_bound_gets_a_full_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner.settle_heap()
    monkeypatch.setattr(runner, "_blocks_after_full", [1])  # as if the heap had been tiny
    with generations() as seen:
        runner.settle_heap()
    assert 2 in seen
    assert runner._blocks_after_full[0] > 1  # the bound starts over from the heap as it is
