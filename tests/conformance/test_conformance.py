"""The Gateway API conformance folders (tests/conformance/cases) on the wire, one pytest item
per upstream test: real `mesh proxy` processes in front of echo backends on 127.0.0.1.

The folders of the selected items run once per session, two at a time (runner.py); each
item then reports its upstream test's outcome. `make conformance` prints the same results
as a table (`python -m tests.conformance`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conformance.cases import folders, load_folder
from tests.conformance.features import SUPPORTED
from tests.conformance.runner import Outcome, run_folders

HERE = Path(__file__).resolve()
FOLDERS = {p.name: p for p in folders()}
TESTS = [(f.name, t.name) for f in map(load_folder, FOLDERS.values()) for t in f.tests]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def results(request: pytest.FixtureRequest) -> dict[tuple[str, str], Outcome]:
    wanted = sorted(
        {
            item.callspec.params["test"][0]
            for item in request.session.items
            if item.path == HERE and hasattr(item, "callspec") and "test" in item.callspec.params
        }
    )
    done = asyncio.run(run_folders([FOLDERS[name] for name in wanted], parallel=2))
    return {(r.folder, r.name): r for r in done}


def test_the_suite_covers_the_upstream_profiles() -> None:
    names = {name for _, name in TESTS}
    assert len(FOLDERS) >= 36
    assert {"HTTPRouteWeight", "MeshBasic", "HTTPRouteRequestMirror"} <= names


@pytest.mark.parametrize("test", TESTS, ids=[f"{folder}:{name}" for folder, name in TESTS])
def test_upstream_conformance_test(
    test: tuple[str, str], results: dict[tuple[str, str], Outcome]
) -> None:
    r = results[test]
    details = "\n".join(r.details)
    if r.outcome == "SKIP":
        pytest.skip(details)
    if r.outcome == "XFAIL":
        pytest.xfail(f"known Turnout bug:\n{details}")
    assert r.outcome == "PASS", f"{r.name} ({', '.join(r.features)}):\n{details}"
    assert all(f in SUPPORTED for f in r.features)
