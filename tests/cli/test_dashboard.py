"""`mesh dashboard`'s errors: one line, exit 2, nothing served (tests/dashboard drives the
views in a browser)."""

from __future__ import annotations

import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_control_plane_is_one_error_line() -> None:
    cp = f"127.0.0.1:{free_port()}"
    got = subprocess.run(
        [sys.executable, "-m", "turnout", "dashboard", "--control-plane", cp, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert got.returncode == 2, got
    assert got.stderr.startswith(f"error: cannot reach the control plane at {cp}"), got.stderr
    assert len(got.stderr.splitlines()) == 1 and "Traceback" not in got.stderr
    assert "dashboard listening" not in got.stdout


def test_a_bad_port_is_a_usage_error() -> None:
    got = subprocess.run(
        [sys.executable, "-m", "turnout", "dashboard", "--port", "70000"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert got.returncode == 2 and got.stderr == "error: --port must be 0..65535, got 70000\n"
