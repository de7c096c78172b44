"""Every table the translator emits for the golden cases (`tests/golden/compile/*.in.yaml`)
is read back by the proxy without a `TableError`, and between them the cases carry every
`typed_per_filter_config` the translator emits (on routes and on weighted clusters)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from envoy.config.route.v3 import route_components_pb2 as rc

from tests.conftest import GOLDEN
from turnout.engine.pipeline import compile_files
from turnout.engine.xds import translate
from turnout.proxy import RuntimeTable

CASES = sorted((GOLDEN / "compile").glob("*.in.yaml"))
FILTER_CONFIG = "envoy.config.route.v3.FilterConfig"
EMITTED = {
    ("route", "envoy.filters.http.fault", "envoy.extensions.filters.http.fault.v3.HTTPFault"),
    (
        "route",
        "envoy.filters.http.cors",
        f"{FILTER_CONFIG}/envoy.extensions.filters.http.cors.v3.CorsPolicy",
    ),
    ("cluster", "envoy.filters.http.fault", "envoy.extensions.filters.http.fault.v3.HTTPFault"),
    (
        "cluster",
        "turnout.filters.http.backend",
        f"{FILTER_CONFIG}/envoy.config.route.v3.RedirectAction",
    ),
    (
        "cluster",
        "turnout.filters.http.backend",
        f"{FILTER_CONFIG}/envoy.config.route.v3.RouteAction",
    ),
}
"""(where, filter key, packed type) the translator writes (`turnout/engine/xds/routes.py`);
a `FilterConfig` wrapper is followed by the type it wraps."""


def _type_of(packed: Any) -> str:
    if packed.TypeName() != FILTER_CONFIG:
        return str(packed.TypeName())
    wrapper = rc.FilterConfig()
    assert packed.Unpack(wrapper)
    return f"{FILTER_CONFIG}/{wrapper.config.TypeName()}"


def per_filter_configs(route_configs: Any) -> set[tuple[str, str, str]]:
    seen: set[tuple[str, str, str]] = set()
    for rcfg in route_configs:
        for vh in rcfg.virtual_hosts:
            for route in vh.routes:
                for key, packed in route.typed_per_filter_config.items():
                    seen.add(("route", key, _type_of(packed)))
                for cw in route.route.weighted_clusters.clusters:
                    for key, packed in cw.typed_per_filter_config.items():
                        seen.add(("cluster", key, _type_of(packed)))
    return seen


def read_back(src: Path) -> set[tuple[str, str, str]]:
    res = translate(compile_files([src]).result.table)
    RuntimeTable.from_xds(
        res.listeners,
        res.route_configs,
        clusters=res.clusters,
        load_assignments=res.load_assignments,
    )
    return per_filter_configs(res.route_configs)


@pytest.mark.parametrize("src", CASES, ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_the_proxy_reads_back_the_golden_case(src: Path) -> None:
    read_back(src)


def test_the_golden_cases_carry_every_emitted_per_filter_config() -> None:
    seen: set[tuple[str, str, str]] = set()
    for src in CASES:
        seen |= read_back(src)
    assert seen == EMITTED
