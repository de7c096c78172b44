"""The installed-wheel suite: run by `make wheel-test` (part of `make test`), which builds
the wheel, installs it into a fresh venv (not editable) and points `TURNOUT_WHEEL_VENV` at
it. Without that variable there is no installed wheel to test, and these tests skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def wheel_venv() -> Path:
    venv = os.environ.get("TURNOUT_WHEEL_VENV")
    if not venv:
        pytest.skip("no installed wheel: `make wheel-test` builds one and sets TURNOUT_WHEEL_VENV")
    return Path(venv)
