"""`DirectorySource` on a real tmp directory with watchfiles: change -> control plane ->
compile -> publish, a bad file held back while every other file is applied.

`publish` is a recorder standing in for `AdsServer.publish`; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.engine.model import hostile
from tests.engine.server.builders import manifest, mk_route, mk_service, weighted
from turnout.engine.diagnostics import has_errors
from turnout.engine.ir import RouteTable, ServiceParent
from turnout.engine.model.limits import ManifestLimits
from turnout.engine.pipeline import IncrementalCompiler
from turnout.engine.plane import ControlPlane
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
    """The `publish` callback: versions 1, 2, ... per new table (an equal one keeps its
    version, as `AdsServer.publish` does), awaitable."""

    def __init__(self) -> None:
        self.tables: list[RouteTable] = []
        self._queue: asyncio.Queue[RouteTable] = asyncio.Queue()

    def __call__(self, table: RouteTable, policy: object = None) -> int:
        if self.tables and self.tables[-1] == table:
            return len(self.tables)
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
    src = DirectorySource(tmp_path, plane=ControlPlane(publish=published), settings=SETTINGS)
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
    assert src.status.version == 1 and src.status.applied
    assert src.table == published.tables[0]


async def test_weight_change_publishes_a_new_table(
    source: tuple[DirectorySource, Published], tmp_path: Path
) -> None:
    src, published = source
    await published.next()
    (tmp_path / "routes.yaml").write_text(routes(50, 50))
    table = await published.next()
    assert weights(table) == [50, 50]
    assert src.status.version == 2


async def test_a_change_made_before_the_watch_is_on_is_loaded_all_the_same(
    tmp_path: Path,
) -> None:
    """Written right after the first load, before the watch task ran at all (as a control
    plane restarted and edited at once): the watch, once on, finds the directory changed."""
    (tmp_path / "services.yaml").write_text(manifest(*SERVICES))
    (tmp_path / "routes.yaml").write_text(routes(90, 10))
    published = Published()
    src = DirectorySource(tmp_path, plane=ControlPlane(publish=published), settings=SETTINGS)
    await src.start()
    (tmp_path / "routes.yaml").write_text(routes(0, 100))  # no await since the load
    try:
        assert weights(await published.next()) == [90, 10]
        assert weights(await published.next()) == [0, 100]
        assert src.status.version == 2
    finally:
        await src.stop()


async def changed(src: DirectorySource, since: int) -> None:
    """Until the control plane took a change after the `since`-th."""
    async with asyncio.timeout(TIMEOUT_S):
        while src.status.changes == since:
            await asyncio.sleep(0.02)


async def test_an_invalid_edit_keeps_the_files_last_good_version_until_fixed(
    source: tuple[DirectorySource, Published],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    src, published = source
    good = await published.next()
    caplog.set_level(logging.WARNING, logger="turnout.engine")
    changes = src.status.changes
    (tmp_path / "routes.yaml").write_text(routes(-5, 10))
    await changed(src, changes)
    st = src.status
    assert not st.applied and st.error is None
    assert src.table == good and st.version == 1 and st.last_good_version == 1
    assert len(published.tables) == 1
    [rejected] = st.rejected
    assert rejected.file == str(tmp_path / "routes.yaml") and rejected.kept
    [diag] = rejected.diagnostics
    assert diag.reason == "FieldValueInvalid" and "-5" in diag.message
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"routes.yaml[0] {diag.pos.path}: " in text
    assert "keeping its last good version" in text
    (tmp_path / "routes.yaml").write_text(routes(30, 70))
    table = await published.next()
    assert weights(table) == [30, 70]
    assert src.status.applied and src.status.version == 2 and not src.status.rejected
    assert src.status.last_good_version == 2


async def test_a_bad_file_does_not_hold_back_a_good_change_in_another_file(
    source: tuple[DirectorySource, Published], tmp_path: Path
) -> None:
    src, published = source
    await published.next()
    changes = src.status.changes
    (tmp_path / "routes.yaml").write_text(routes(-5, 10))
    await changed(src, changes)
    (tmp_path / "services.yaml").write_text(manifest(*SERVICES, mk_service("api")))
    table = await published.next()
    assert table.parent("service/shop/api:80") is not None  # the good change is applied
    assert weights(table) == [90, 10]  # and the bad file is still at its last good version
    assert [r.file for r in src.status.rejected] == [str(tmp_path / "routes.yaml")]
    assert src.status.version == 2 and src.status.last_good_version == 1


async def test_a_file_that_never_was_good_is_left_out(
    source: tuple[DirectorySource, Published], tmp_path: Path
) -> None:
    src, published = source
    await published.next()
    (tmp_path / "more.yaml").write_text(
        manifest(mk_service("api"), mk_route("api", parent="api", rules=weighted(("api", -1))))
    )
    await changed(src, 1)
    [rejected] = src.status.rejected
    assert rejected.file == str(tmp_path / "more.yaml") and not rejected.kept
    assert src.table is not None and src.table.parent("service/shop/api:80") is None
    assert weights(src.table) == [90, 10]


async def test_unparseable_yaml_keeps_the_last_good_version(
    source: tuple[DirectorySource, Published], tmp_path: Path
) -> None:
    src, published = source
    await published.next()
    changes = src.status.changes
    (tmp_path / "routes.yaml").write_text("kind: [unclosed\n")
    await changed(src, changes)
    assert not src.status.applied
    assert src.status.version == 1 and len(published.tables) == 1
    [rejected] = src.status.rejected
    assert rejected.kept and rejected.diagnostics


async def test_other_files_do_not_trigger_a_load(
    source: tuple[DirectorySource, Published], tmp_path: Path
) -> None:
    src, published = source
    await published.next()
    changes = src.status.changes
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / ".routes.yaml.swp").write_text("x")
    (tmp_path / "services.yaml").write_text(manifest(*SERVICES, mk_service("api")))
    await changed(src, changes)
    assert src.status.changes == changes + 1


async def test_a_start_on_a_directory_whose_only_file_is_bad_serves_an_empty_table(
    tmp_path: Path,
) -> None:
    (tmp_path / "routes.yaml").write_text(manifest(*SERVICES, routes(-1, 10)))
    published = Published()
    src = DirectorySource(tmp_path, plane=ControlPlane(publish=published), settings=SETTINGS)
    await src.start()
    try:
        assert published.tables == [RouteTable()] and src.table == RouteTable()
        assert src.status.version == 1 and src.status.last_good_version is None
        [rejected] = src.status.rejected
        assert not rejected.kept and rejected.diagnostics
    finally:
        await src.stop()


def regex_route(pattern: str) -> str:
    rule = (
        f"  - matches: [{{path: {{type: RegularExpression, value: {pattern!r}}}}}]\n"
        "    backendRefs: [{name: web-v2, port: 80}]\n"
    )
    return mk_route("web", rules=rule + weighted(("web", 1)))


def test_an_error_the_compiler_finds_rejects_that_file_too(tmp_path: Path) -> None:
    """A regex RE2 refuses passes the schema; the compiler finds it, and only that file's
    new version is held back (the incremental compiler, as the directory source runs it)."""
    (tmp_path / "services.yaml").write_text(manifest(*SERVICES))
    (tmp_path / "routes.yaml").write_text(regex_route("/v[0-9]+"))
    compiler = IncrementalCompiler()
    first = compiler([tmp_path])
    assert first.rejected == () and not has_errors(first.diagnostics)
    (tmp_path / "routes.yaml").write_text(regex_route("/(?=lookahead)"))  # Python yes, RE2 no
    (tmp_path / "services.yaml").write_text(manifest(*SERVICES, mk_service("api")))
    second = compiler([tmp_path])
    [rejected] = second.rejected
    assert rejected.file == str(tmp_path / "routes.yaml") and rejected.kept
    assert [d.reason for d in rejected.diagnostics] == ["UnsupportedValue"]
    assert not has_errors(second.diagnostics)
    table = second.result.table
    assert table.parent("service/shop/api:80") is not None  # the other file's change
    assert table.parent("service/shop/web:80") == first.result.table.parent("service/shop/web:80")


@pytest.mark.parametrize(
    ("bad", "reason", "message"),
    [
        pytest.param(
            hostile.nested(1500).encode(), "LimitExceeded", "nested more", id="nested-past-the-cap"
        ),
        pytest.param(b"x" * 5000, "LimitExceeded", "file is 4.9 KiB", id="over-max-file-bytes"),
        pytest.param(b"kind: \xff\n", "FileUnreadable", "cannot read", id="not-utf8"),
    ],
)
def test_a_file_that_cannot_be_loaded_is_rejected_alone(
    tmp_path: Path, bad: bytes, reason: str, message: str
) -> None:
    """Over a cap or not text: that file keeps its last good version (the caps are
    `engine.model.limits`; here the file cap is 4 KiB) and the other file's change applies."""
    (tmp_path / "services.yaml").write_text(manifest(*SERVICES))
    (tmp_path / "routes.yaml").write_text(routes(90, 10))
    compiler = IncrementalCompiler(limits=ManifestLimits(max_file_bytes=4096))
    first = compiler([tmp_path])
    assert first.rejected == ()
    (tmp_path / "routes.yaml").write_bytes(bad)
    (tmp_path / "services.yaml").write_text(manifest(*SERVICES, mk_service("api")))
    second = compiler([tmp_path])
    [rejected] = second.rejected
    assert rejected.file == str(tmp_path / "routes.yaml") and rejected.kept
    [why] = rejected.diagnostics
    assert why.reason == reason and message in why.message
    table = second.result.table
    assert table.parent("service/shop/api:80") is not None
    assert weights(table) == [90, 10]
