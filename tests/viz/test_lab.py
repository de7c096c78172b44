"""The shared lab (`lab.py`): the demo's mesh, its Prometheus scraping every proxy."""

from __future__ import annotations

import pytest

from tests.viz.lab import LAB_PODS, Lab


@pytest.mark.slow
def test_the_demo_mesh_has_a_prometheus_scraping_every_proxy(viz_lab: Lab) -> None:
    proxies = viz_lab.debug("/debug/proxies")["proxies"]
    admins = {p["pod"]: p["admin"] for p in proxies if p["admin"] and p["pod"]}
    assert admins == viz_lab.admin, proxies
    # the proxyless apps (web v1/v2 clients, emoji and voting v1/v2 servers) report their
    # metrics port too (grpcmesh's interceptors' families)
    web_apps = {p["admin"] for p in proxies if p["admin"] and not p["pod"]}
    assert len(web_apps) == 5, proxies
    up = viz_lab.query('up{job="turnout-proxies"}')
    scraped = {s.labels["instance"] for s in up if s.value == 1}
    assert scraped == {*viz_lab.admin.values(), *web_apps}, up
    assert set(LAB_PODS) <= {s.labels.get("pod") for s in up}
    assert "request_total{" in viz_lab.metrics("vote-bot")
