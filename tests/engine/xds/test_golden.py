"""Golden tests of the xDS stage: every compile case `tests/golden/compile/<case>.in.yaml`
(Kubernetes manifests, as users write them) is compiled and translated; the rendered
resources must equal `tests/golden/xds/<case>.out.yaml`. The inputs are shared with the
compile stage so the two goldens of a case always describe the same manifests.
`pytest --update-golden` rewrites the outputs (STYLE.md §3).

An output is the default view (`translate(table)`) as YAML; when the table has GAMMA consumer
routes, `consumer_views` adds each consumer namespace's listeners and route configurations
(clusters and assignments are the same in every view).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import GOLDEN
from turnout.engine import ir
from turnout.engine.pipeline import compile_files
from turnout.engine.xds import XdsResources, translate

CASES = sorted((GOLDEN / "compile").glob("*.in.yaml"))


def dump_yaml(data: object) -> str:
    """Deterministic YAML: sorted keys, block style, resources in name order."""
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False, width=100)


def render(table: ir.RouteTable) -> str:
    data: dict[str, object] = dict(translate(table).to_dict())
    namespaces = sorted(
        {c.namespace for p in table.parents if isinstance(p, ir.ServiceParent) for c in p.consumers}
    )
    if namespaces:
        views: dict[str, object] = {}
        for ns in namespaces:
            view = translate(table, client_namespace=ns).to_dict()
            views[ns] = {"listeners": view["listeners"], "route_configs": view["route_configs"]}
        data["consumer_views"] = views
    return dump_yaml(data)


def render_resources(resources: XdsResources) -> str:
    return dump_yaml(resources.to_dict())


def compile_case(src: Path) -> ir.RouteTable:
    return compile_files([src]).result.table


@pytest.mark.parametrize("src", CASES, ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_xds_golden(src: Path, update_golden: bool) -> None:
    got = render(compile_case(src))
    out = GOLDEN / "xds" / src.name.replace(".in.yaml", ".out.yaml")
    if update_golden:
        out.write_text(got)
    assert out.exists(), f"{out.name} missing: run pytest --update-golden and review it"
    assert got == out.read_text()


def test_rendering_is_deterministic() -> None:
    from tests.engine.xds.builders import mk_full_table

    first = render(mk_full_table())
    assert first == render(mk_full_table())
    assert "path_separated_prefix" not in first
    assert "consumer_views" in first
