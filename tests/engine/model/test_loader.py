"""Loading like `kubectl -f`: files, directories (recursive), stdin, multi-document YAML,
JSON, `kind: List`, and every kind Turnout reads, with bad input reported, not fatal."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.conftest import GATEWAY_API, require_reference
from turnout.engine.diagnostics import Severity, SourcePos
from turnout.engine.errors import LoadError
from turnout.engine.model import HTTPRoute, Service, load_documents, parse_documents
from turnout.engine.model.kinds import served_kinds
from turnout.engine.model.loader import Document

SVC = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"ports": [{"port": 80}]},
}


def route(api: str = "gateway.networking.k8s.io/v1", name: str = "web") -> dict[str, object]:
    return {
        "apiVersion": api,
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"rules": [{"backendRefs": [{"name": "web", "port": 80}]}]},
    }


def test_multi_document_yaml_keeps_document_indices_including_empty_ones(tmp_path: Path) -> None:
    f = tmp_path / "all.yaml"
    f.write_text("---\n# empty\n---\n" + json.dumps(SVC) + "\n---\n" + json.dumps(route()))
    docs, diags = load_documents([str(f)])
    assert not diags
    assert [d.pos.doc_index for d in docs] == [1, 2]


def test_json_files_and_list_items_are_addressed_by_item(tmp_path: Path) -> None:
    f = tmp_path / "list.json"
    f.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [SVC, route()]}))
    docs, _ = load_documents([str(f)])
    assert [d.pos.path for d in docs] == ["items[0]", "items[1]"]
    resources, diags = parse_documents(docs)
    assert not diags
    assert [type(o.obj) for o in resources.objects] == [Service, HTTPRoute]


def test_directories_are_walked_recursively_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "r.yml").write_text(json.dumps(route()))
    (tmp_path / "a.yaml").write_text(json.dumps(SVC))
    (tmp_path / "notes.txt").write_text("not a manifest")
    docs, _ = load_documents([str(tmp_path)])
    assert [Path(d.pos.file).name for d in docs] == ["a.yaml", "r.yml"]


def test_stdin_is_read_for_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(SVC)))
    docs, _ = load_documents(["-"])
    assert docs[0].pos.file == "-"


def test_a_missing_path_raises_load_error() -> None:
    with pytest.raises(LoadError, match="no such file"):
        load_documents(["/nonexistent/routes.yaml"])


def test_bad_yaml_is_a_diagnostic_and_earlier_documents_still_load(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(json.dumps(SVC) + "\n---\nkey: [unclosed\n")
    docs, diags = load_documents([str(f)])
    assert len(docs) == 1
    (diag,) = diags
    assert diag.reason == "InvalidYAML" and diag.pos.doc_index == 1 and "line" in diag.message


def test_unknown_kinds_are_reported_not_fatal_and_unserved_versions_fail(tmp_path: Path) -> None:
    f = tmp_path / "mixed.yaml"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    f.write_text(
        "\n---\n".join(
            json.dumps(d) for d in (cm, route("gateway.networking.k8s.io/v1alpha1"), SVC)
        )
    )
    docs, _ = load_documents([str(f)])
    resources, diags = parse_documents(docs)
    assert [o.obj.kind for o in resources.objects] == ["Service"]
    by_reason = {d.reason: d for d in diags}
    assert by_reason["UnknownKind"].severity is Severity.INFO
    assert by_reason["NoKindMatch"].severity is Severity.ERROR
    assert by_reason["NoKindMatch"].pos.path == "apiVersion"


def test_httproute_v1beta1_is_served() -> None:
    doc = Document(
        pos=SourcePos(file="f", doc_index=0), raw=route("gateway.networking.k8s.io/v1beta1")
    )
    resources, diags = parse_documents([doc])
    assert not diags and isinstance(resources.objects[0].obj, HTTPRoute)


def test_a_later_object_with_the_same_name_replaces_the_earlier_one(tmp_path: Path) -> None:
    f = tmp_path / "dup.yaml"
    f.write_text(json.dumps(route()) + "\n---\n" + json.dumps(route()))
    resources, diags = parse_documents(load_documents([str(f)])[0])
    assert len(resources.objects) == 1 and resources.objects[0].pos.doc_index == 1
    assert [d.reason for d in diags] == ["DuplicateObject"]


def test_every_reference_valid_example_loads_without_errors() -> None:
    root = require_reference(GATEWAY_API / "valid-examples")
    for f in sorted(root.rglob("*.yaml")):
        _, diags = parse_documents(load_documents([str(f)])[0])
        assert not [d for d in diags if d.severity is Severity.ERROR], f


def doc_of(api: str, kind: str) -> Document:
    raw = {"apiVersion": api, "kind": kind, "metadata": {"name": "x", "namespace": "shop"}}
    return Document(pos=SourcePos(file="r.yaml", doc_index=0), raw=raw)


@pytest.mark.parametrize(
    ("api", "kind", "near"),
    [
        pytest.param("gateway.networking.k8s.io/v1", "HTTPRoutes", "HTTPRoute", id="plural"),
        pytest.param("gateway.networking.k8s.io/v1", "httproute", "HTTPRoute", id="lowercase"),
        pytest.param("gateway.networking.k8s.io/v1", "Gatway", "Gateway", id="missing-letter"),
        pytest.param("v1", "Services", "Service", id="core-group"),
        pytest.param("split.smi-spec.io/v1alpha4", "TrafficSplits", "TrafficSplit", id="smi"),
        pytest.param("gateway.networking.k8s.io/v1", "Frobnicator", None, id="no-near-kind"),
    ],
)
def test_a_kind_typo_in_a_known_group_is_kubectls_no_matches_error(
    api: str, kind: str, near: str | None
) -> None:
    resources, diags = parse_documents([doc_of(api, kind)])
    (diag,) = diags
    assert not resources.objects
    assert diag.severity is Severity.ERROR and diag.reason == "NoKindMatch"
    assert diag.pos.path == "kind"
    assert diag.message.startswith(f'no matches for kind "{kind}" in version "{api}" (')
    group = api.rpartition("/")[0]
    for served in served_kinds(group):
        assert served in diag.message
    if near is None:
        assert "did you mean" not in diag.message
    else:
        assert diag.message.endswith(f'did you mean "{near}"?)')


@pytest.mark.parametrize(
    ("api", "kind"),
    [
        pytest.param("gateway.networking.k8s.io/v1", "BackendTLSPolicy", id="served-not-used"),
        pytest.param("v1", "ConfigMap", id="core-not-used"),
        pytest.param("apps/v1", "Deployment", id="unknown-group"),
        pytest.param("flagger.app/v1beta1", "Canary", id="other-crd"),
    ],
)
def test_kinds_a_group_serves_but_turnout_does_not_use_stay_ignored(api: str, kind: str) -> None:
    _, diags = parse_documents([doc_of(api, kind)])
    assert [(d.severity, d.reason) for d in diags] == [(Severity.INFO, "UnknownKind")]


def test_every_kind_of_the_upstream_crds_is_served() -> None:
    """`OTHER_SERVED_KINDS` keeps up with the Gateway API CRDs: no real kind reads as a typo."""
    import yaml

    root = require_reference(GATEWAY_API / "crd" / "experimental")
    for f in sorted(root.glob("*.yaml")):
        for crd in yaml.safe_load_all(f.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            assert spec["names"]["kind"] in served_kinds(spec["group"]), f
