"""`mesh routes --live` with Linkerd's EFFECTIVE/ACTUAL columns and [DEFAULT] rows: unit
tests of the table, then the demo's mesh through its Prometheus and the direct scrape."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.viz.lab import Lab
from turnout.cli import live, views
from turnout.cli.main import main
from turnout.engine.pipeline import compile_files
from turnout.viz import stats as viz

ROOT = Path(__file__).resolve().parents[2]
WEB_API = "httproute/emojivoto/web/rule/1"


def counters(rule: str, family: str, success: int, failure: int) -> str:
    labels = f'direction="outbound",namespace="loadgen",dst="web.emojivoto",rt_route="{rule}"'
    return (
        f'{family}{{{labels},status_code="200",classification="success"}} {success}\n'
        f'{family}{{{labels},status_code="500",classification="failure"}} {failure}\n'
    )


def test_wide_shows_effective_and_actual_and_unmatched_traffic_is_a_default_row() -> None:
    table = compile_files([str(ROOT / "examples" / "emojivoto" / "mesh")]).result.table
    after = (
        counters(WEB_API, "route_response_total", 18, 2)
        # 20 requests took 30 attempts: 10 retries, of which 8 failed
        + counters(WEB_API, "route_actual_response_total", 20, 10)
        + counters("", "route_response_total", 4, 0)
    )
    stats = viz.route_deltas("", after, seconds=2.0)
    text = live.live_table(views.route_rows(table), stats, wide=True)
    header, *lines = text.splitlines()
    assert header.split()[-7:] == list(live.WIDE_LIVE_COLUMNS)
    [api] = [line for line in lines if "PathPrefix /api" in line]
    assert api.split()[-7:-3] == ["90.00%", "10.0rps", "66.67%", "15.0rps"]
    [default] = [line for line in lines if "[DEFAULT]" in line]
    assert default.split()[:2] == ["service/emojivoto/web:80", "[DEFAULT]"]
    assert default.split()[-7:-3] == ["100.00%", "2.0rps", "-", "-"]
    narrow = live.live_table(views.route_rows(table), stats).splitlines()
    assert [line.split()[-5:-3] for line in narrow if "[DEFAULT]" in line] == [
        ["100.00%", "2.0rps"]
    ]


def routes(lab: Lab, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ("routes", "--control-plane", lab.control_plane, "--live", *argv)
    return main(list(argv), stdout=out, stderr=err), out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_live_routes_read_the_control_planes_prometheus(viz_lab: Lab) -> None:
    code, out, err = routes(viz_lab, "-t", "6s", "-o", "wide")
    assert code == 0 and "Prometheus" not in err, err
    lines = out.splitlines()
    assert lines[0].split()[-7:] == list(live.WIDE_LIVE_COLUMNS)
    [api] = [line for line in lines if "PathPrefix /api " in line]
    effective, eff_rps, actual, act_rps = api.split()[-7:-3]
    assert float(effective.rstrip("%")) < 100 and eff_rps.endswith("rps"), api
    # the demo's routes have no retry: every request is one attempt
    assert (actual, act_rps) == (effective, eff_rps), api
    # the proxyless web apps' gRPC calls (reported admin ports): the voting fault shows
    [doughnut] = [line for line in lines if "VoteDoughnut" in line]
    assert float(doughnut.split()[-7].rstrip("%")) < 100, doughnut


@pytest.mark.slow
def test_live_routes_without_prometheus_scrape_the_proxies_and_say_so(viz_lab: Lab) -> None:
    code, out, err = routes(viz_lab, "--window", "2", "-o", "json", "--prometheus", "")
    assert code == 0, err
    assert err.endswith("\nno Prometheus: scraping 8 proxies directly over 2s\n"), err
    rows = {r["rule"]: r for r in json.loads(out)}
    api = rows[WEB_API]
    assert 0 < api["success_rate"] < 1 and api["rps"] > 0
    assert api["actual_rps"] == pytest.approx(api["rps"])
