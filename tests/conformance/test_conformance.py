"""The Gateway API conformance folders (tests/conformance/cases) on the wire, one pytest item
per upstream test: real `mesh proxy` processes in front of echo backends on 127.0.0.1.

The folders of the selected items run once per session, two at a time (runner.py); each
item then reports its upstream test's outcome. `make conformance` prints the same results
as a table (`python -m tests.conformance`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conformance.cases import CaseError, UpstreamTest, folders, load_folder
from tests.conformance.features import PARTIAL, SUPPORTED
from tests.conformance.runner import Outcome, run_folders

HERE = Path(__file__).resolve()
FOLDERS = {p.name: p for p in folders()}
LOADED = [(f.name, t) for f in map(load_folder, FOLDERS.values()) for t in f.tests]
TESTS = [(folder, t.name) for folder, t in LOADED]

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


def _partial(t: UpstreamTest) -> list[str]:
    return [f for f in t.features if f in PARTIAL]


def test_a_known_failure_needs_a_partial_feature_so_no_claimed_feature_fails() -> None:
    claimed_but_failing = [t.name for _, t in LOADED if t.xfail and not _partial(t)]
    assert not claimed_but_failing, "drop their features from SUPPORTED or fix Turnout"


def test_every_claimed_feature_is_exercised_by_a_test_that_must_pass() -> None:
    exercised = {f for _, t in LOADED if t.xfail is None for f in t.features}
    assert not (SUPPORTED | set(PARTIAL)) - exercised


def test_a_typo_in_a_case_file_is_an_error_naming_the_file_and_field(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "manifests.yaml").write_text("")
    (folder / "conformance.yaml").write_text(
        "tests:\n- name: T\n  features: [Gateway]\n  cases:\n  - name: c\n"
        "    via: {kind: Gateway, namespace: n, name: g, port: 80}\n"
        "    request: {url: 'http://x/'}\n    expect: {status: 200, staus: 404}\n"
    )
    with pytest.raises(
        CaseError,
        match=r"^bad/conformance.yaml tests\[0\]\.cases\[0\]\.expect: "
        r"unknown field\(s\) staus$",
    ):
        load_folder(folder)
