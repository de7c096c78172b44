"""Proxyless gRPC in tap and metrics: the demo's web apps call emoji and voting through
grpcio's xDS client with `grpcmesh.client.MeshClientInterceptor`, so `mesh tap deploy/web-v1`
(through the control plane, which knows the app's admin from its bootstrap's node metadata)
shows those calls, and the app's /metrics has the outbound request/response families."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from tests.viz.lab import Lab

pytestmark = pytest.mark.slow


def test_proxyless_calls_show_in_tap_by_workload_and_in_metrics(viz_lab: Lab) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "turnout",
            "tap",
            "deploy/web-v1",
            "-n",
            "emojivoto",
            "--control-plane",
            viz_lab.control_plane,
            "--path",
            "/emojivoto.v1.",
            "--limit",
            "6",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines()]
    reqs = [e for e in events if e["type"] == "req"]
    assert reqs and all(e["direction"] == "outbound" for e in reqs)
    assert {e["dst_service"] for e in reqs} <= {"emoji", "voting"}
    assert all(e["proxy"]["workload"] == "web-v1" and e["dst"] != "0.0.0.0:0" for e in events)
    ends = [e for e in events if e["type"] == "end"]
    assert ends and all("grpc_status" in e for e in ends)
    admin = viz_lab.demo.ports.web_admin["v1"]
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    [line] = [
        x
        for x in text.splitlines()
        if x.startswith('response_total{direction="outbound"')
        and 'dst_service="emoji"' in x
        and 'classification="success"' in x
    ][:1]
    assert 'deployment="web-v1"' in line and 'grpc_status="0"' in line
    assert float(line.rsplit(" ", 1)[1]) > 0


def test_a_proxyless_server_shows_its_calls_in_tap_and_in_metrics(viz_lab: Lab) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "turnout",
            "tap",
            "deploy/emoji",
            "-n",
            "emojivoto",
            "--control-plane",
            viz_lab.control_plane,
            "--limit",
            "3",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    req, rsp, end = (json.loads(line) for line in res.stdout.splitlines())
    assert (req["type"], rsp["type"], end["type"]) == ("req", "rsp", "end")
    assert req["direction"] == "inbound" and req["path"].startswith("/emojivoto.v1.EmojiService/")
    assert req["dst"] == f"127.0.0.1:{viz_lab.demo.ports.slices['emoji']}"
    assert end["grpc_status"] == 0 and req["proxy"]["workload"] == "emoji"
    admin = viz_lab.demo.ports.service_admin["emoji"]
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert any(
        x.startswith('response_total{direction="inbound"')
        and 'deployment="emoji"' in x
        and 'classification="success"' in x
        for x in text.splitlines()
    )
