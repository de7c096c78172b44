"""`mesh demo canary` end to end: Flagger's steps replayed, judged by a real Prometheus.

Two runs as subprocesses (about 27 s each with `--step-seconds 3`): a healthy canary is
promoted through weights 10..50, a failing one (`--fail`: 3 answers in 4 are 500s) is rolled
back to 0/100 once `failedChecks` reaches the Canary's threshold (5). Each asserts the printed
outcome, the split seen by the inbound proxies, and that every child it reported is gone.
Without a `prometheus` binary both skip and say why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from turnout.demo.canary import EXAMPLES, load_analysis, load_steps

ROOT = Path(__file__).resolve().parents[2]
MESH = Path(sys.executable).parent / "mesh"

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="prometheus is not installed: `make tools` installs Debian's `prometheus` package; "
    "`mesh demo canary` evaluates Flagger's queries against a real Prometheus",
)


def run_demo(*flags: str) -> str:
    proc = subprocess.run(
        [str(MESH), "demo", "canary", "--step-seconds", "3", *flags],
        capture_output=True,
        text=True,
        timeout=80,
        cwd=ROOT,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "This is NOT Flagger" in out, out
    pids = [int(p) for p in re.findall(r"^started \S+ pid=(\d+)$", out, re.MULTILINE)]
    assert len(pids) == 8, out
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert re.search(r"^stopped 8 process\(es\): ", out, re.MULTILINE), out
    workdir = re.search(r"^work dir (\S+);", out, re.MULTILINE)
    assert workdir is not None and not Path(workdir.group(1)).exists()
    return out


def canary_share(line: str) -> int:
    m = re.search(r"\((\d+)% canary\)", line)
    assert m is not None, line
    return int(m.group(1))


@pytest.mark.slow
@needs_prometheus
def test_healthy_canary_is_promoted_through_every_weight() -> None:
    out = run_demo()
    assert "result: PROMOTED" in out, out
    for w in (10, 20, 30, 40, 50):
        assert f"Advance podinfo.test canary weight {w}:" in out, out
    assert "Halt" not in out, out
    rates = [float(x) for x in re.findall(r"request-success-rate ([\d.]+)%", out)]
    assert len(rates) == 5 and min(rates) >= 99, out
    splits = [line for line in out.splitlines() if "seen by inbound proxies" in line]
    assert canary_share(splits[0]) == 0, out  # initialized: all primary
    assert 30 <= canary_share(splits[5]) <= 70, out  # weight 50


@pytest.mark.slow
@needs_prometheus
def test_failing_canary_is_rolled_back_after_threshold_failed_checks() -> None:
    out = run_demo("--fail")
    assert "result: ROLLED BACK" in out and "PROMOTED" not in out, out
    # Each check fails: the success rate is far below 99%, or (a window with no success
    # sample yet) "no values found", which Flagger counts as a failed check too.
    halts = re.findall(r"Halt podinfo.test advancement (.*) \(failedChecks \d/5\)", out)
    assert len(halts) == 5, out
    rates = [float(r) for h in halts for r in re.findall(r"success rate ([\d.]+)% < 99%", h)]
    assert rates and max(rates) < 60, out
    assert "Rolling back podinfo.test failed checks threshold reached 5" in out, out
    assert "canary weight 20" not in out, out
    after = next(line for line in out.splitlines() if "after rollback:" in line)
    assert canary_share(after) <= 2, out  # the reload lands within the tick


def test_the_walkthrough_reads_its_own_steps_in_flaggers_order() -> None:
    for provider in ("linkerd", "gatewayapi"):
        steps, rollback = load_steps(EXAMPLES / provider)
        assert [(s.phase, s.canary, s.primary) for s in steps] == [
            ("initialized", 0, 100),
            *(("weight", w, 100 - w) for w in (10, 20, 30, 40, 50)),
            ("promoting", 50, 50),
            ("finalising", 0, 100),
        ]
        assert (rollback.canary, rollback.primary) == (0, 100)
        a = load_analysis(EXAMPLES / provider / "canary.yaml")
        assert (a.threshold, a.min_success, a.max_duration_ms) == (5, 99, 500)
