"""Shared test plumbing: `--update-golden`, the location of the upstream reference data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
SHARED = Path(os.environ.get("TURNOUT_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference"
GATEWAY_API = REFERENCE / "gateway-api"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/**/*.out.yaml from the current output",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With --update-golden, delete outputs whose input is gone. An xDS output's input is the
    compile case of the same name (the two stages share their inputs); a policy xDS output's
    (`xds-policy/`) is the policy case of the same name."""
    if not session.config.getoption("--update-golden"):
        return
    for out in GOLDEN.rglob("*.out.yaml"):
        name = out.name.replace(".out.yaml", ".in.yaml")
        shared = GOLDEN / ("policy" if out.parent.name == "xds-policy" else "compile") / name
        if not (out.with_name(name).exists() or shared.exists()):
            out.unlink()


def require_reference(path: Path) -> Path:
    """Skip (with the reason) when the shared upstream reference data is not beside the repo."""
    if not path.exists():
        pytest.skip(f"upstream reference data not found at {path} (set TURNOUT_SHARED)")
    return path
