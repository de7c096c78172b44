"""`mesh demo --duration 8 --grpc-via-proxy` end to end: real subprocesses on 127.0.0.1,
real traffic; web v1 calls emoji and voting proxyless, web v2 through its proxy (HTTP/2 over
mesh TLS to the STRICT xDS servers), so both paths run in one demo.

Asserts the live table has numbers for the web routes, that the failing vote shows in the
voting route's success rate, that web v2's proxy is one of the metrics sources, and that
every child the demo reported is gone afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from turnout.demo.orchestrate import rewrite_endpoints

ROOT = Path(__file__).resolve().parents[2]
MESH = Path(sys.executable).parent / "mesh"


def cells(line: str) -> list[str]:
    """The five live columns at the end of a table row."""
    return line.split()[-5:]


@pytest.mark.slow
def test_mesh_demo_runs_shows_live_stats_and_leaves_nothing_behind() -> None:
    proc = subprocess.run(
        [str(MESH), "demo", "--duration", "8", "--grpc-via-proxy"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    pids = [int(p) for p in re.findall(r"^started \S+ pid=(\d+)$", out, re.MULTILINE)]
    assert len(pids) == 10, out
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert re.search(r"^stopped 10 process\(es\): ", out, re.MULTILINE), out

    assert "web v2 through its proxy" in out, out
    tables = out.split("\n$ mesh routes ")[1:]
    assert tables, out
    assert tables[0].splitlines()[0].count("--metrics ") == 4, out  # + web v2's proxy
    last = tables[-1].splitlines()
    web = [line for line in last if line.startswith("service/emojivoto/web:80 ")]
    assert len(web) == 3, out
    api = next(line for line in web if "PathPrefix /api " in line)
    # "PathPrefix /" alone: not the canary rule "PathPrefix / header x-canary=true", which the
    # vote-bot's traffic does not match
    default = next(
        line
        for line in web
        if line.split()[2:4] == ["PathPrefix", "/"] and line.split()[4] != "header"
    )
    for line in (api, default):
        assert cells(line)[0] != "-" and cells(line)[0].endswith("%"), line
    # The failing vote, in any window: the voting rule and the web /api rule (web answers 500).
    rows = [line for t in tables for line in t.splitlines()]
    doughnut = [cells(line)[0] for line in rows if "VoteDoughnut" in line]
    assert any(c != "-" and float(c.rstrip("%")) < 100 for c in doughnut), doughnut
    apis = [cells(line)[0] for line in rows if "PathPrefix /api " in line]
    assert any(c != "-" and float(c.rstrip("%")) < 100 for c in apis), apis
    workdir = re.search(r"work dir (\S+)\)", out)
    assert workdir is not None and not Path(workdir.group(1)).exists()


def test_rewrite_endpoints_points_slices_at_the_given_ports(tmp_path: Path) -> None:
    path = tmp_path / "20-endpoints.yaml"
    path.write_text(
        (ROOT / "examples/emojivoto/mesh/20-endpoints.yaml").read_text(), encoding="utf-8"
    )
    rewrite_endpoints(path, {"web-v1": 40001, "voting": 40002})
    text = path.read_text()
    assert "port: 40001" in text and "port: 40002" in text
    assert "port: 18082" in text  # web-v2 untouched


def test_a_slice_of_a_service_on_the_same_pods_follows_them(tmp_path: Path) -> None:
    """`web` selects the pods of web-v1 and web-v2: its slices move with theirs."""
    path = tmp_path / "20-endpoints.yaml"
    path.write_text(
        (ROOT / "examples/emojivoto/mesh/20-endpoints.yaml").read_text(), encoding="utf-8"
    )
    rewrite_endpoints(path, {"web-v1": 40001, "web-v2": 40002})
    ports = {
        doc["metadata"]["name"]: doc["ports"][0]["port"]
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["metadata"]["labels"]["kubernetes.io/service-name"] == "web"
    }
    assert sorted(ports.values()) == [40001, 40002], ports
