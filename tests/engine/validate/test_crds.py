"""The CRD path (`--crds`): defaults, escaping, unsupported rules, and the entry points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import GATEWAY_API, require_reference
from tests.engine.validate.builders import as_document, mk_route, mk_rule
from turnout.engine.diagnostics import Severity
from turnout.engine.validate import load_crds, validate_paths, validate_with_crds
from turnout.engine.validate.cel import escape_name


def mk_crd(rules: list[dict[str, Any]], *, default_mode: str = "A") -> dict[str, Any]:
    """A tiny CRD `Thing` (example.io/v1) whose spec has `namespace`, `mode` and `items`."""
    spec_schema = {
        "type": "object",
        "properties": {
            "namespace": {"type": "string"},
            "mode": {"type": "string", "default": default_mode},
            "items": {
                "type": "array",
                "x-kubernetes-list-type": "set",
                "items": {"type": "string"},
            },
        },
        "x-kubernetes-validations": rules,
    }
    version = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    "spec": spec_schema,
                },
            }
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.io"},
        "spec": {"group": "example.io", "names": {"kind": "Thing"}, "versions": [version]},
    }


def mk_thing(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.io/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": spec}


def _run(tmp_path: Path, rules: list[dict[str, Any]], *things: dict[str, Any]) -> list[str]:
    crd_file = tmp_path / "crd.yaml"
    crd_file.write_text(yaml.safe_dump(mk_crd(rules)))
    crds, diags = load_crds([str(crd_file)])
    assert diags == []
    found = validate_with_crds([as_document(t) for t in things], crds)
    return [f"{d.severity.value} {d.pos.path}: {d.message} ({d.reason})" for d in found]


def test_reserved_field_names_are_escaped_for_cel(tmp_path: Path) -> None:
    rules = [{"rule": "self.__namespace__ == 'ok'", "message": "namespace must be ok"}]
    assert _run(tmp_path, rules, mk_thing(namespace="ok")) == []
    assert _run(tmp_path, rules, mk_thing(namespace="no")) == [
        "error spec: namespace must be ok (FieldValueInvalid)"
    ]


def test_schema_defaults_are_applied_before_cel_runs(tmp_path: Path) -> None:
    rules = [{"rule": "self.mode == 'A'", "message": "mode must default to A"}]
    assert _run(tmp_path, rules, mk_thing()) == []


def test_set_duplicates_are_reported_at_the_repeated_item(tmp_path: Path) -> None:
    assert _run(tmp_path, [], mk_thing(items=["a", "a"])) == [
        'error spec.items[1]: Duplicate value: "a" (FieldValueDuplicate)'
    ]


def test_unknown_fields_are_rejected_like_strict_kubectl(tmp_path: Path) -> None:
    assert _run(tmp_path, [], mk_thing(colour="red")) == [
        'error spec.colour: unknown field "colour" (FieldValueUnknown)'
    ]


def test_unsupported_cel_rule_is_one_warning_not_a_crash(tmp_path: Path) -> None:
    rules = [{"rule": "self.mode.noSuchFunction()", "message": "m"}]
    found = _run(tmp_path, rules, mk_thing(), mk_thing())
    assert len(found) == 1
    assert found[0].startswith("warning spec: CEL rule not checked")
    assert found[0].endswith("(CELUnsupported)")


def test_rule_that_does_not_compile_is_one_warning(tmp_path: Path) -> None:
    found = _run(tmp_path, [{"rule": "self.(", "message": "m"}], mk_thing())
    assert [f.endswith("(CELUnsupported)") for f in found] == [True]


def test_transition_rules_are_skipped_on_create(tmp_path: Path) -> None:
    assert _run(tmp_path, [{"rule": "self == oldSelf", "message": "immutable"}], mk_thing()) == []


def test_kubernetes_library_functions_are_bound(tmp_path: Path) -> None:
    rules = [
        {"rule": "!isIP(self.mode) && self.mode.split('/')[0].substring(1) == 'B'", "message": "m"}
    ]
    assert _run(tmp_path, rules, mk_thing(mode="AB/x")) == []


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        pytest.param("namespace", "__namespace__", id="reserved-word"),
        pytest.param("a.b-c/d", "a__dot__b__dash__c__slash__d", id="punctuation"),
        pytest.param("x__y", "x__underscores__y", id="double-underscore"),
        pytest.param("sectionName", "sectionName", id="plain"),
    ],
)
def test_property_names_are_escaped_like_kubernetes(name: str, escaped: str) -> None:
    assert escape_name(name) == escaped


def test_validate_paths_reports_load_schema_and_rule_problems_together(tmp_path: Path) -> None:
    good = mk_route(mk_rule())
    bad = mk_route(mk_rule(backendRefs=[{"name": "svc"}]))
    bad["metadata"]["name"] = "bad"
    manifest = tmp_path / "routes.yaml"
    manifest.write_text(yaml.safe_dump_all([good, bad]) + "---\n: [\n")
    report = validate_paths([str(manifest)])
    assert not report.ok
    assert len(report.resources.objects) == 2
    assert [(d.pos.doc_index, d.pos.path, d.reason) for d in report.errors] == [
        (1, "spec.rules[0].backendRefs[0]", "FieldValueInvalid"),
        (2, "", "InvalidYAML"),
    ]


def test_validate_paths_with_crds_adds_no_duplicate_findings() -> None:
    crd_dir = require_reference(GATEWAY_API / "crd" / "experimental")
    example = GATEWAY_API / "invalid-examples" / "standard" / "httproute"
    report = validate_paths([str(example / "invalid-filter-duplicate.yaml")], crds=str(crd_dir))
    assert [str(d) for d in report.diagnostics if d.severity is Severity.ERROR] == [
        f"{example / 'invalid-filter-duplicate.yaml'}[0] spec.rules[0].filters: "
        "RequestHeaderModifier filter cannot be repeated (FieldValueInvalid)"
    ]
