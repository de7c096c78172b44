"""`mesh install`'s values: defaults, ``--ha``, ``-f FILE`` and ``--set`` in that order, and
one clear line (exit 2, nothing on stdout) for every value that does not fit."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from turnout.cli.main import main
from turnout.cluster.install.values import Values, build_values, flat_defaults


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_later_sources_win_defaults_ha_file_set(tmp_path: Path) -> None:
    f = tmp_path / "values.yaml"
    f.write_text("replicas: 5\nresources:\n  limits: {cpu: 2}\nidentity: {trustDomain: ex.org}\n")
    v = build_values(ha=True, files=(str(f),), sets=("replicas=4", "resources.limits.memory=null"))
    assert v.replicas == 4 and v.anti_affinity == "required" and v.pod_disruption_budget
    assert v.resources.limits.cpu == "2" and v.resources.limits.memory is None
    assert v.resources.requests == Values().resources.requests
    assert v.identity.trust_domain == "ex.org" and v.identity.leaf_lifetime == "24h"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("replicas=x", "--set replicas=x: must be a whole number, got 'x'"),
        ("replicaz=3", "--set replicaz=3: unknown key 'replicaz' (known: namespace, image,"),
        ("leaf_lifetime=1h", "unknown key 'leaf_lifetime'"),
        ("resources.requests.cpu=lots", "'lots' is not a quantity (100m, 1Gi)"),
        ("resources=1", "--set resources=1: resources is a mapping; set one of its keys"),
        ("replicas.x=1", "--set replicas.x=1: replicas is not a mapping"),
        ("identity.leafLifetime=10ms", "'10ms' must be at least 1s"),
        ("identity.trustDomain=Bad_Domain", "is not a DNS name"),
        ("namespace=Not_A_Name", "'Not_A_Name' is not a namespace name (RFC 1123 label)"),
        ("antiAffinity=sometimes", "must be one of none, preferred, required, got 'sometimes'"),
        ("injector.timeoutSeconds=60", "--set injector.timeoutSeconds=60: 60 must be 1..30"),
        ("podDisruptionBudget=yes", "must be true or false, got 'yes'"),
        ("replicas", "--set replicas: want KEY=VALUE (e.g. replicas=3)"),
    ],
)
def test_a_bad_set_is_one_line_and_exit_2(setting: str, message: str) -> None:
    code, out, err = run("install", "--set", setting)
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("replicas: [1]\n", "values.yaml: replicas: must be a whole number, got [1]"),
        ("resources:\n  requests: {cpuu: 1}\n", "values.yaml: resources.requests.cpuu: unknown"),
        ("resources: 3\n", "values.yaml: resources: resources is a mapping"),
        ("a: [\n", "values.yaml: not YAML (line 2)"),
        ("- 1\n", "values.yaml: want a mapping of values, got list"),
        ("image: {a: 1}\n", "values.yaml: image: must be a string"),
    ],
)
def test_a_bad_values_file_is_one_line_naming_it(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "values.yaml"
    f.write_text(text)
    code, out, err = run("install", "-f", str(f))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and f"error: {tmp_path}/{message}" in err


def test_a_missing_values_file_and_an_empty_one(tmp_path: Path) -> None:
    code, out, err = run("install", "-f", str(tmp_path / "none.yaml"))
    assert (code, out, err) == (2, "", f"error: {tmp_path}/none.yaml: No such file or directory\n")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert build_values(files=(str(empty),)) == Values()


def test_docs_list_every_key_with_its_default() -> None:
    table = (Path(__file__).resolve().parents[2] / "docs" / "cluster.md").read_text()
    for key, default in flat_defaults():
        shown = yaml.safe_dump(default).removesuffix("\n...\n").strip()
        assert f"| `{key}` | `{shown}` |" in table, key
