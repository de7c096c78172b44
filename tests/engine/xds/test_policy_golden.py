"""Golden tests of the policy xDS resources: every policy case
`tests/golden/policy/<case>.in.yaml` is compiled and rendered as the Turnout-typed resources
(`engine.xds.policy`); the output must equal `tests/golden/xds-policy/<case>.out.yaml`.
`pytest --update-golden` rewrites the outputs (STYLE.md §3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import GOLDEN
from turnout.engine.pipeline import compile_policy_files
from turnout.engine.xds.policy import INBOUND_SERVER_TYPE, policy_resources

CASES = sorted((GOLDEN / "policy").glob("*.in.yaml"))


def render(src: Path) -> str:
    _, result = compile_policy_files([src])
    data = policy_resources(result.table).to_dict()
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False, width=100)


@pytest.mark.parametrize("src", CASES, ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_policy_xds_golden(src: Path, update_golden: bool) -> None:
    got = render(src)
    out = GOLDEN / "xds-policy" / src.name.replace(".in.yaml", ".out.yaml")
    if update_golden:
        out.write_text(got)
    assert out.exists(), f"{out.name} missing: run pytest --update-golden and review it"
    assert got == out.read_text()


def test_one_inbound_server_resource_per_server_port() -> None:
    _, result = compile_policy_files([GOLDEN / "policy" / "linkerd-default-policies.in.yaml"])
    resources = policy_resources(result.table)
    assert [n for n, _ in resources.servers] == [
        "server/strict/db",
        "server/strict/dry-run",
        "server/strict/metrics",
    ]
    (_, db) = resources.servers[0]
    assert db.type_url == INBOUND_SERVER_TYPE
    assert db.value["port"] == 5432 and db.value["protocol"] == "opaque"
    assert policy_resources(result.table) == resources
