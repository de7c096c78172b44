"""Every folder under tests/contracts (conformance behaviour as contract files) passes
`mesh test`: the manifests load cleanly and every case holds."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from turnout.cli.main import main

HERE = Path(__file__).resolve().parent
FOLDERS = sorted(p for p in HERE.iterdir() if (p / "contract.yaml").exists())


def test_there_are_contract_folders() -> None:
    assert len(FOLDERS) >= 30


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_contract_folder_passes_mesh_test(folder: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["test", "-f", str(folder / "manifests.yaml"), str(folder / "contract.yaml")],
        stdout=out,
        stderr=err,
    )
    failures = [line for line in out.getvalue().splitlines() if not line.startswith("PASS")]
    assert code == 0, "\n".join(failures) + err.getvalue()
    assert "PASS" in out.getvalue()
