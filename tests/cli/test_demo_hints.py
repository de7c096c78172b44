"""The demos' hints run as printed: every "run:" line, pasted into a new terminal (a fresh
`bash -c` with a bare PATH, no venv activated, another working directory) while the demo
runs, succeeds. The offline tour's commands say ``examples/...`` and run from where it says.
"""

from __future__ import annotations

import io
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from turnout.cli.main import main
from turnout.demo.orchestrate import EXAMPLES

MESH = Path(sys.executable).parent / "mesh"


def fresh_shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`command` as a new terminal would run it: bash, a bare PATH, no venv, no PYTHONPATH."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@contextmanager
def running(argv: list[str]) -> Iterator[queue.Queue[str | None]]:
    """Start a demo; yield its stdout lines as they come (None at the end); SIGINT it after,
    wait for it and check that it stopped cleanly."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield lines
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
            assert proc.stdout is not None
            proc.stdout.close()
    assert proc.returncode == 0


def read_until(lines: queue.Queue[str | None], last: str, timeout: float) -> list[str]:
    """The lines up to the first that starts with `last` (stripped), bounded by `timeout`."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail("timed out waiting for the hints:\n" + "\n".join(seen))
        if line is None:
            pytest.fail("the demo ended before its hints:\n" + "\n".join(seen))
        seen.append(line)
        if line.strip().startswith(last):
            return seen
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the hints:\n" + "\n".join(seen))


def run_lines(seen: list[str]) -> list[str]:
    return [line.split("- run: ", 1)[1] for line in seen if "- run: " in line]


@pytest.mark.slow
def test_live_demo_hints_run_as_printed_in_a_new_terminal(tmp_path: Path) -> None:
    with running([str(MESH), "demo", "--interval", "2", "--duration", "90"]) as lines:
        seen = read_until(lines, "- Ctrl-C stops everything", timeout=60)
        commands = run_lines(seen)
        assert len(commands) == 2, seen
        outputs = []
        for command in commands:
            assert shlex.split(command)[0] == str(MESH), command  # the full path, not `mesh`
            done = fresh_shell(command, tmp_path)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr
            outputs.append(done.stdout)
        live, tap = outputs
        web = [row for row in live.splitlines() if row.startswith("service/emojivoto/web:80 ")]
        assert len(web) == 3 and any(row.split()[-5].endswith("%") for row in web), live
        assert len(tap.splitlines()) == 9 and tap.startswith(("req ", "rsp ", "end ")), tap
        edits = [line.split("- edit ", 1)[1].split(":", 1)[0] for line in seen if "- edit " in line]
        assert edits and all(Path(shlex.split(e)[0]).is_file() for e in edits), seen


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs prometheus (make tools)")
def test_canary_demo_hints_run_as_printed_in_a_new_terminal(tmp_path: Path) -> None:
    with running([str(MESH), "demo", "canary", "--step-seconds", "5"]) as lines:
        seen = read_until(lines, "- the routing object now served:", timeout=90)
        steps = next(line for line in seen if "the routing objects of " in line)
        folder = re.search(r"the routing objects of (\S+)/ are written", steps)
        assert folder is not None and Path(folder.group(1)).is_dir(), steps
        commands = run_lines(seen)
        assert len(commands) == 2, seen
        for command in commands:
            assert shlex.split(command)[0] == str(MESH), command
            done = fresh_shell(command, tmp_path)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr
            assert done.stdout.strip(), command
        served = seen[-1].split("now served: ", 1)[1]
        assert Path(shlex.split(served)[0]).is_file()


@pytest.mark.slow
def test_offline_tour_says_examples_and_its_commands_run_where_it_says(tmp_path: Path) -> None:
    out = io.StringIO()
    assert main(["demo", "--offline"], stdout=out, stderr=io.StringIO()) == 0
    text = out.getvalue()
    assert str(EXAMPLES) not in text  # no absolute paths into the package
    assert str(EXAMPLES.resolve()) not in text
    first = text.splitlines()[0]
    here = re.search(r"to run these yourself: cd (\S+);", first)
    assert here is not None, first
    commands = [line.removeprefix("$ ") for line in text.splitlines() if line.startswith("$ ")]
    assert commands[0] == "mesh validate -f examples/emojivoto/"
    assert commands[-1].startswith("mesh test -f examples/emojivoto/ examples/contracts/")
    path = f"{MESH.parent}{os.pathsep}/usr/bin:/bin"

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", f"cd {here.group(1)} && {command}"],
            env={"PATH": path, "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )

    # read-only commands, independent of one another: two at a time (one per core)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for command, done in zip(commands, pool.map(run, commands), strict=True):
            assert done.returncode == 0, (command, done.stderr)
    diagnostics_and_tables = "\n".join(line for line in text.splitlines() if "/emojivoto/" in line)
    assert "/turnout/demo/" not in diagnostics_and_tables
