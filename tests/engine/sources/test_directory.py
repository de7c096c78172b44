"""`DirectorySource` on a real tmp directory with watchfiles: change -> compile -> publish.

`publish` is a recorder standing in for `AdsServer.publish`; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.engine.server.builders import manifest, mk_route, mk_service, weighted
from turnout.engine.ir import RouteTable, ServiceParent
from turnout.engine.sources import DirectorySettings, DirectorySource

TIMEOUT_S = 5.0
SETTINGS = DirectorySettings(debounce_ms=50, watch_tick_ms=100, stop_timeout_ms=2_000)
SERVICES = (mk_service("web"), mk_service("web-v2"))


def routes(v1: int, v2: int) -> str:
    return mk_route("web", rules=weighted(("web", v1), ("web-v2", v2)))


def weights(table: RouteTable) -> list[int]:
    parent = table.parent("service/shop/web:80")
    assert isinstance(parent, ServiceParent)
    [rule] = parent.producer.rules
    return [b.weight for b in rule.backends]


class Published:
    """The `publish` callback: versions 1, 2, ... per table, awaitable."""

    def __init__(self) -> None:
        self.tables: list[RouteTable] = []
        self._queue: asyncio.Queue[RouteTable] = asyncio.Queue()

    def __call__(self, table: RouteTable) -> int:
        self.tables.append(table)
        self._queue.put_nowait(table)
        return len(self.tables)

    async def next(self) -> RouteTable:
        async with asyncio.timeout(TIMEOUT_S):
            return await self._queue.get()


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[tuple[DirectorySource, Published]]:
    (tmp_path / "services.yaml").write_text(manifest(*SERVICES))
    (tmp_path / "routes.yaml").write_text(routes(90, 10))
    published = Published()
    src = DirectorySource(tmp_path, publish=published, settings=SETTINGS)
    await src.start()
    await src.wait_watching(timeout_ms=int(TIMEOUT_S * 1000))
    try:
        yield src, published
    finally:
        await src.stop()


async def test_initial_load_publishes_the_directory(
    source: tuple[DirectorySource, Published],
) -> None:
    src, published = source
    assert [weights(t) for t in published.tables] == [[90, 10]]
    assert src.status.good_version == 1 and src.status.applied
    assert src.table == published.tables[0]


async def test_weight_change_publishes_a_new_table(
    source: tuple[DirectorySource, Published], tmp_path: Path
) -> None:
    src, published = source
    await published.next()
    (tmp_path / "routes.yaml").write_text(routes(50, 50))
    table = await published.next()
    assert weights(table) == [50, 50]
    assert src.status.good_version == 2


async def test_a_change_made_before_the_watch_is_on_is_loaded_all_the_same(
    tmp_path: Path,
) -> None:
    """Written right after the first load, before the watch task ran at all (as a control
    plane restarted and edited at once): the watch, once on, finds the directory changed."""
    (tmp_path / "services.yaml").write_text(manifest(*SERVICES))
    (tmp_path / "routes.yaml").write_text(routes(90, 10))
    published = Published()
    src = DirectorySource(tmp_path, publish=published, settings=SETTINGS)
    await src.start()
    (tmp_path / "routes.yaml").write_text(routes(0, 100))  # no await since the load
    try:
        assert weights(await published.next()) == [90, 10]
        assert weights(await published.next()) == [0, 100]
        assert src.status.good_version == 2
    finally:
        await src.stop()


async def test_invalid_edit_is_logged_and_keeps_the_last_good_table_until_fixed(
    source: tuple[DirectorySource, Published],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    src, published = source
    good = await published.next()
    caplog.set_level(logging.WARNING, logger="turnout.engine.sources")
    loads = src.status.loads
    (tmp_path / "routes.yaml").write_text(routes(-5, 10))
    async with asyncio.timeout(TIMEOUT_S):
        while src.status.loads == loads:
            await asyncio.sleep(0.02)
    assert not src.status.applied
    assert src.table == good and src.status.good_version == 1
    assert len(published.tables) == 1
    [diag] = [d for d in src.status.diagnostics if d.severity.value == "error"]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"routes.yaml[0] {diag.pos.path}: " in text
    assert "keeping the last good table" in text
    (tmp_path / "routes.yaml").write_text(routes(30, 70))
    table = await published.next()
    assert weights(table) == [30, 70]
    assert src.status.applied and src.status.good_version == 2


async def test_unparseable_yaml_keeps_the_last_good_table(
    source: tuple[DirectorySource, Published], tmp_path: Path
) -> None:
    src, published = source
    await published.next()
    loads = src.status.loads
    (tmp_path / "routes.yaml").write_text("kind: [unclosed\n")
    async with asyncio.timeout(TIMEOUT_S):
        while src.status.loads == loads:
            await asyncio.sleep(0.02)
    assert not src.status.applied
    assert src.status.good_version == 1 and len(published.tables) == 1
    assert src.status.diagnostics or src.status.error


async def test_other_files_do_not_trigger_a_load(
    source: tuple[DirectorySource, Published], tmp_path: Path
) -> None:
    src, published = source
    await published.next()
    loads = src.status.loads
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / ".routes.yaml.swp").write_text("x")
    (tmp_path / "services.yaml").write_text(manifest(*SERVICES, mk_service("api")))
    async with asyncio.timeout(TIMEOUT_S):
        while src.status.loads == loads:
            await asyncio.sleep(0.02)
    assert src.status.loads == loads + 1


async def test_a_start_on_a_directory_with_errors_serves_nothing(tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text(manifest(*SERVICES, routes(-1, 10)))
    published = Published()
    src = DirectorySource(tmp_path, publish=published, settings=SETTINGS)
    await src.start()
    try:
        assert published.tables == [] and src.table is None
        assert src.status.good_version is None and src.status.diagnostics
    finally:
        await src.stop()
