"""One manifest must not take `mesh` down: an alias bomb, deep nesting or an oversized
file or document is one error line naming the file (and document) and the cap, exit 2, in
`mesh validate`, `routes` and `test`; `mesh serve --dir` rejects that file and keeps serving
the others.

Each command runs as a real process under a memory limit (RLIMIT_AS), so a regression fails
the test instead of exhausting the machine (the billion laughs took 3.3 GB and a minute).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.engine.model import hostile
from tests.engine.server.builders import manifest, mk_route, mk_service, weighted
from tests.reliability.plane import ServeProcess

ROOT = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 1536 * 1024 * 1024
"""Address space for each `mesh` process: a few times what it needs (the interpreter,
pydantic and grpc map about 0.8 GB), far from what an expanded bomb takes."""
TIMEOUT_S = 60.0
MAIN = "import sys; from turnout.cli.main import main; sys.exit(main(sys.argv[1:]))"
ENV = {**os.environ, "MALLOC_ARENA_MAX": "2"}  # threads' malloc arenas count against the limit


def limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def mesh(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", MAIN, *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=ROOT,
        env=ENV,
        preexec_fn=limited,
    )


def good_manifests() -> str:
    docs = (mk_service("web"), mk_service("web-v2"))
    return manifest(*docs, mk_route("web", rules=weighted(("web", 90), ("web-v2", 10))))


CASES = [
    pytest.param(
        hostile.laughs_in_spec(), "bomb.yaml[0]: document holds more than 1,000,000", id="spec"
    ),
    pytest.param(
        hostile.laughs_in_annotations(),
        "bomb.yaml[0]: document holds more than 1,000,000",
        id="annotations",
    ),
    pytest.param(hostile.nested(5000), "bomb.yaml[0]: document is nested more", id="nested"),
    pytest.param(
        hostile.service() + "---\n" + hostile.big_annotation(3 * 1024 * 1024 + 1),
        "bomb.yaml[1]: document is 3.0 MiB, over the 3 MiB limit",
        id="document-over-3mib",
    ),
]


@pytest.mark.parametrize(("text", "line"), CASES)
def test_validate_refuses_the_manifest_in_one_line_and_exits_2(
    tmp_path: Path, text: str, line: str
) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(text)
    got = mesh("validate", "-f", bomb)
    assert (got.returncode, got.stdout) == (2, "")
    [err] = got.stderr.splitlines()
    assert err.startswith(f"error: {tmp_path}/{line}")


def test_a_file_over_max_file_size_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(hostile.service() * 400)  # 40 KB
    got = mesh("validate", "-f", big, "--max-file-size", "16Ki")
    assert got.returncode == 2
    size = big.stat().st_size / 1024
    assert got.stderr == (
        f"error: {big}: file is {size:.1f} KiB, over the 16 KiB limit on one file"
        " (--max-file-size)\n"
    )
    assert mesh("validate", "-f", big, "--max-file-size", "1Mi").returncode == 0


def test_routes_and_test_refuse_it_the_same_way(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(good_manifests())
    (tmp_path / "bomb.yaml").write_text(hostile.laughs_in_spec())
    for argv in (["routes", "-f", tmp_path], ["test", "-f", tmp_path, tmp_path / "good.yaml"]):
        got = mesh(*argv)
        assert got.returncode == 2, got.stderr
        assert got.stderr.startswith(f"error: {tmp_path}/bomb.yaml[0]: document holds more")
        assert len(got.stderr.splitlines()) == 1


def test_a_contract_file_bomb_is_refused(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(good_manifests())
    contract = tmp_path / "contract.yaml"
    contract.write_text(hostile.laughs(0)[0] + "cases: *l8\n")
    got = mesh("test", "-f", tmp_path / "good.yaml", contract)
    assert got.returncode == 2
    assert got.stderr == (
        f"error: {contract}[0]: document holds more than 1,000,000 values (mappings, lists,"
        " scalars; an alias counts as the values it repeats)\n"
    )


def test_benign_aliases_still_validate(tmp_path: Path) -> None:
    f = tmp_path / "web.yaml"
    f.write_text(hostile.BENIGN_ALIASES)
    got = mesh("validate", "-f", f)
    assert (got.returncode, got.stdout) == (0, "2 object(s) valid\n"), got.stderr


# ---- mesh serve --dir


def get(plane: ServeProcess, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{plane.admin}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def admin(plane: ServeProcess, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(get, plane, path)


async def diagnostics(plane: ServeProcess) -> dict[str, object]:
    status, text = await admin(plane, "/debug/diagnostics")
    assert status == 200
    data: dict[str, object] = json.loads(text)
    return data


@pytest.fixture
async def serving(tmp_path: Path) -> AsyncIterator[ServeProcess]:
    (tmp_path / "good.yaml").write_text(good_manifests())
    plane = ServeProcess(tmp_path, tmp_path / "serve.log", env=ENV, preexec=limited)
    try:
        yield await plane.start()
    finally:
        await plane.kill()  # also when stuck in a compile (the bug this tests)


async def test_serve_rejects_a_bomb_added_to_the_folder_and_keeps_serving(
    tmp_path: Path, serving: ServeProcess
) -> None:
    assert await admin(serving, "/ready") == (200, "ok version=1\n")
    (tmp_path / "bomb.yaml").write_text(hostile.laughs_in_spec())
    async with asyncio.timeout(TIMEOUT_S):
        while not (await diagnostics(serving))["rejected"]:
            assert serving.proc is not None and serving.proc.returncode is None, "mesh serve died"
            await asyncio.sleep(0.05)
    data = await diagnostics(serving)
    [rejected] = data["rejected"]  # type: ignore[misc]
    assert rejected["file"] == str(tmp_path / "bomb.yaml") and not rejected["kept"]
    [why] = rejected["diagnostics"]
    assert why["reason"] == "LimitExceeded"
    assert why["message"].startswith("document holds more than 1,000,000 values")
    assert await admin(serving, "/ready") == (200, "ok version=1\n")
    status, table = await admin(serving, "/debug/table")
    assert status == 200 and "service/shop/web:80" in table
    _, metrics = await admin(serving, "/metrics")
    assert "turnout_control_plane_rejected_changes_total 1" in metrics
    assert serving.proc is not None and serving.proc.returncode is None
