"""The Grafana dashboards shipped in `turnout.viz.grafana`: each is a well-formed dashboard
model (schemaVersion 39, every panel on the ``DS_PROMETHEUS`` variable with PromQL targets,
no overlapping panels, no undefined variables), and every query parses in a real Prometheus.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.proxy.e2e.harness import bounded, dead_port
from tests.viz.grafana_kit import placeholders, substitute, targets, variables
from tests.viz.test_prom import free_port
from turnout.engine.server.prometheus import PrometheusSettings, start_prometheus
from turnout.viz.grafana import DASHBOARDS, dashboard, dashboard_text
from turnout.viz.prom import QueryError, instant_query

DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


def boxes(board: dict[str, Any]) -> list[tuple[str, dict[str, int]]]:
    return [(p["title"], p["gridPos"]) for p in board["panels"]]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_each_dashboard_is_a_grafana_model_on_the_prometheus_variable(name: str) -> None:
    board = dashboard(name)
    assert board["uid"] == f"turnout-{name}" and board["schemaVersion"] == 39
    assert board["id"] is None and board["title"].startswith("Turnout / ")
    assert "turnout" in board["tags"]
    assert dashboard_text(name).isascii()  # a ConfigMap's YAML keeps it a literal block
    ds = board["templating"]["list"][0]
    assert (ds["name"], ds["type"], ds["query"]) == ("DS_PROMETHEUS", "datasource", "prometheus")
    for var in board["templating"]["list"][1:]:
        assert var["type"] == "query" and var["datasource"] == DS, var["name"]
        assert var["definition"] == var["query"]["query"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DS, panel["title"]
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            assert t["datasource"] == DS and t["expr"].strip(), (panel["title"], t["refId"])
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    cells: dict[tuple[int, int], str] = {}
    for title, g in boxes(board):
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, title
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{title} overlaps {cells[(x, y)]}"
                cells[(x, y)] = title
    values = placeholders(board)
    for t in targets(board):
        substitute(t.expr, values)  # KeyError: a $variable the dashboard does not define
    for i, var in enumerate(variables(board)):
        substitute(var.query, {v.name: "x" for v in variables(board)[:i]})  # only earlier ones


def test_links_between_dashboards_name_shipped_uids() -> None:
    uids = {dashboard(n)["uid"] for n in DASHBOARDS}
    urls = re.findall(r'"url": "/d/([^/"]+)/', "".join(dashboard_text(n) for n in DASHBOARDS))
    assert urls, "the namespace table links to the workload dashboard"
    assert set(urls) <= uids, urls


@pytest.mark.slow
@bounded(40)
async def test_every_query_parses_in_a_real_prometheus(tmp_path: Path) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed: `make tools` installs Debian's package")
    (tmp_path / "targets.json").write_text(json.dumps([]))
    settings = PrometheusSettings(listen=f"127.0.0.1:{free_port()}")
    prom = await start_prometheus(
        tmp_path,
        targets_file=tmp_path / "targets.json",
        control_plane=f"127.0.0.1:{dead_port()}",
        settings=settings,
    )
    bad = []
    try:
        for name in DASHBOARDS:
            board = dashboard(name)
            for t in targets(board):
                try:
                    await instant_query(prom.url, substitute(t.expr, placeholders(board)))
                except QueryError as exc:
                    bad.append(f"{name}: {t.panel} {t.ref}: {exc}")
    finally:
        await prom.stop()
    assert not bad, "\n".join(bad)
