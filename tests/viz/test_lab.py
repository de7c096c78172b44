"""The shared lab (`lab.py`): the demo's mesh, its Prometheus scraping every proxy."""

from __future__ import annotations

import pytest

from tests.viz.lab import LAB_PODS, Lab


@pytest.mark.slow
def test_the_demo_mesh_has_a_prometheus_scraping_every_proxy(viz_lab: Lab) -> None:
    proxies = viz_lab.debug("/debug/proxies")["proxies"]
    admins = {p["pod"]: p["admin"] for p in proxies if p["admin"]}
    assert admins == viz_lab.admin, proxies
    up = viz_lab.query('up{job="turnout-proxies"}')
    assert sorted(s.labels["pod"] for s in up if s.value == 1) == sorted(LAB_PODS), up
    assert "request_total{" in viz_lab.metrics("vote-bot")
