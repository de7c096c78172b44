"""The caps on manifest input (`engine.model.limits`): an alias bomb, deep nesting, an
oversized file or document is one `LimitExceeded` naming file, document and cap, raised
before anything expands it; what people write (a few anchors, big but legal files) loads as
before, the same objects whichever composer reads it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from tests.engine.model import hostile
from turnout.engine.errors import LimitExceeded, LoadError
from turnout.engine.model import limits as limits_mod
from turnout.engine.model import load_documents, parse_documents
from turnout.engine.model.contract import load_contracts
from turnout.engine.model.limits import (
    DEFAULT_LIMITS,
    MAX_DOCUMENT_NODES,
    MIB,
    BadYAML,
    ManifestLimits,
    compose_yaml,
    load_yaml,
)
from turnout.engine.validate import load_crds


def load_error(tmp_path: Path, text: str, **limits: int) -> LimitExceeded:
    f = tmp_path / "m.yaml"
    f.write_text(text)
    with pytest.raises(LimitExceeded) as info:
        load_documents([str(f)], limits=ManifestLimits(**limits))
    return info.value


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(hostile.laughs_in_spec(), id="billion-laughs-in-spec"),
        pytest.param(hostile.laughs_in_annotations(), id="billion-laughs-in-annotations"),
        pytest.param(hostile.laughs_in_spec(levels=6), id="a-million-laughs"),
    ],
)
def test_an_alias_bomb_is_refused_by_its_expanded_size(tmp_path: Path, text: str) -> None:
    exc = load_error(tmp_path, hostile.service() + "---\n" + text)
    assert exc.file.endswith("m.yaml") and exc.doc_index == 1
    assert "more than 1,000,000 values" in exc.message and "alias" in exc.message
    assert "\n" not in str(exc)


def test_an_alias_inside_its_own_anchor_is_an_endless_expansion(tmp_path: Path) -> None:
    text = hostile.ROUTE_HEAD + "  annotations: &a {x: *a}\nspec: {}\n"
    exc = load_error(tmp_path, text)
    assert exc.doc_index == 0 and "endless expansion" in exc.message and "(line 6)" in exc.message


@pytest.mark.parametrize(
    ("text", "name"),
    [
        pytest.param(hostile.nested(150), "m.yaml", id="flow-150"),
        pytest.param(hostile.nested(5000), "m.yaml", id="flow-5000-past-libyaml-own-cap"),
        pytest.param(hostile.nested(150, flow=False), "m.yaml", id="block-150"),
        pytest.param(hostile.nested_json(5000), "m.json", id="json-5000"),
    ],
)
def test_nesting_deeper_than_the_cap_is_refused(tmp_path: Path, text: str, name: str) -> None:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(LimitExceeded, match=r"nested more than 100 levels deep") as info:
        load_documents([str(f)])
    assert info.value.doc_index == 0


def test_nesting_through_aliases_counts_as_written_out(tmp_path: Path) -> None:
    """Each anchor is 60 deep, well under the cap; the alias puts one inside another."""
    inner = "[" * 60 + "]" * 60
    text = (
        hostile.ROUTE_HEAD + f"  annotations:\n    a: &a {inner}\n    b: {'[' * 59}*a{']' * 59}\n"
    )
    exc = load_error(tmp_path, text + "spec: {}\n")
    assert "nested more than 100" in exc.message


def test_a_file_over_the_cap_is_refused_unread(tmp_path: Path) -> None:
    f = tmp_path / "huge.yaml"
    with f.open("wb") as out:  # sparse: 17 MiB of nothing, never read
        out.truncate(17 * MIB)
    with pytest.raises(LimitExceeded) as info:
        load_documents([str(f)])
    assert str(info.value) == (
        f"{f}: file is 17 MiB, over the 16 MiB limit on one file (--max-file-size)"
    )
    small = ManifestLimits(max_file_bytes=100)
    (tmp_path / "huge.yaml").write_text(hostile.service() * 12)  # 1164 bytes
    with pytest.raises(LimitExceeded, match=r"is 1\.1 KiB, over the 100 bytes limit"):
        load_documents([str(f)], limits=small)


def test_stdin_over_the_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(hostile.service() * 20))
    with pytest.raises(LimitExceeded, match=r"^-: file is"):
        load_documents(["-"], limits=ManifestLimits(max_file_bytes=1000))


def test_a_document_over_3_mib_is_refused_with_its_index(tmp_path: Path) -> None:
    text = "---\n".join(
        [hostile.service("a"), hostile.service("b"), hostile.big_annotation(3 * MIB)]
    )
    exc = load_error(tmp_path, text)
    assert exc.doc_index == 2
    assert exc.message == (
        "document is 3.0 MiB, over the 3 MiB limit on one document (the API server's request limit)"
    )


def test_a_big_file_of_documents_under_the_cap_loads(tmp_path: Path) -> None:
    """4 MiB in two documents, each under 3 MiB: the file cap, not the document's, applies."""
    f = tmp_path / "two.yaml"
    f.write_text(hostile.big_annotation(2 * MIB, "a") + "---\n" + hostile.big_annotation(2 * MIB))
    docs, diags = load_documents([str(f)])
    assert not diags and [d.pos.doc_index for d in docs] == [0, 1]


def test_a_document_over_the_node_cap_without_aliases_is_stopped_while_composed(
    tmp_path: Path,
) -> None:
    """240 KiB of `1,`: 120,000 values, under the byte cap, over a node cap of 100,000
    (the default, 1,000,000, is the same code at ten times the cost: 8 s of composing); the
    counting composer stops at the cap instead of building them all."""
    assert MAX_DOCUMENT_NODES == 1_000_000
    text = hostile.ROUTE_HEAD + "  annotations:\n    a: [" + "1," * 120_000 + "]\nspec: {}\n"
    exc = load_error(tmp_path, text, max_nodes=100_000)
    assert "more than 100,000 values" in exc.message


def test_benign_anchors_and_aliases_load_as_if_written_out(tmp_path: Path) -> None:
    f = tmp_path / "web.yaml"
    f.write_text(hostile.BENIGN_ALIASES)
    docs, diags = load_documents([str(f)])
    assert not diags
    resources, diags = parse_documents(docs)
    assert not diags and len(resources.objects) == 2
    rules = docs[0].raw["spec"]["rules"]  # type: ignore[index]
    assert rules[1]["backendRefs"] == rules[0]["backendRefs"]
    assert rules[1]["matches"][0]["path"] == {"type": "PathPrefix", "value": "/api"}


STREAMS = [
    pytest.param(hostile.BENIGN_ALIASES, id="aliases"),
    pytest.param("a: !!str 1\nb: !!int '2'\nc: 2024-01-01\nd: [~, yes, 0x1f, 1.5]\n", id="tags"),
    pytest.param("---\n# empty\n---\na: 1\n...\n%YAML 1.1\n---\nb: {c: [1, 2]}\n", id="directives"),
    pytest.param("? !!str k\n: &k {x: 1}\nz: *k\n", id="complex-key"),
    pytest.param("s: |\n  one\n  two\nf: >-\n  folded\n  text\n", id="block-scalars"),
]


def expanded_nodes(node: yaml.Node) -> int:
    if isinstance(node, yaml.MappingNode):
        return 1 + sum(expanded_nodes(k) + expanded_nodes(v) for k, v in node.value)
    if isinstance(node, yaml.SequenceNode):
        return 1 + sum(expanded_nodes(n) for n in node.value)
    return 1


@pytest.mark.parametrize("text", STREAMS)
def test_the_counting_composer_reads_what_libyaml_reads(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Documents whose text could hold more nodes than the cap are composed by the counting
    composer: with the cap at the largest document's size, it reads all of these (exactly
    at the cap is allowed) into the same objects libyaml's composer gives."""
    fast = list(load_yaml(text, file="x"))
    assert all(not isinstance(d, BadYAML) for d in fast)
    cap = max(expanded_nodes(n) for n in yaml.compose_all(text, Loader=yaml.SafeLoader))
    used: list[int] = []

    class Spy(limits_mod.CountingComposer):
        def document(self) -> yaml.Node:
            used.append(1)
            return super().document()

    monkeypatch.setattr(limits_mod, "CountingComposer", Spy)
    counted = list(load_yaml(text, file="x", limits=ManifestLimits(max_nodes=cap)))
    assert counted == fast and used
    with pytest.raises(LimitExceeded):
        list(load_yaml(text, file="x", limits=ManifestLimits(max_nodes=cap - 1)))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("a: *nope\n", "found undefined alias", id="undefined-alias"),
        pytest.param("a: [1,\n", "expected", id="unclosed"),
    ],
)
def test_bad_yaml_is_a_finding_either_way(text: str, problem: str) -> None:
    for limits in (DEFAULT_LIMITS, ManifestLimits(max_nodes=5)):  # libyaml's, then ours
        [bad] = list(load_yaml(text, file="x", limits=limits))
        assert isinstance(bad, BadYAML) and problem in bad.message


def test_lines_count_from_the_top_of_the_file_in_later_documents() -> None:
    text = "a: 1\n---\nb: 2\n---\nc: [\n"
    docs = list(compose_yaml(text, file="x"))
    assert isinstance(docs[-1], BadYAML) and docs[-1].line == 6
    loaded = [d for d in docs if not isinstance(d, BadYAML)]
    assert [d.node.start_mark.line + 1 + d.line_offset for d in loaded] == [1, 3]


def test_contract_and_crd_files_are_capped_too(tmp_path: Path) -> None:
    with pytest.raises(LimitExceeded):
        load_contracts("cases: []\n---\n" + hostile.laughs_in_annotations(), file="c.yaml")
    crd = tmp_path / "crd.yaml"
    crd.write_text(hostile.laughs_in_annotations().replace("HTTPRoute", "CustomResourceDefinition"))
    with pytest.raises(LimitExceeded):
        load_crds([str(crd)])


def test_a_contract_line_in_a_later_document_is_the_files_line() -> None:
    text = "cases:\n- name: a\n  via: svc/shop/web\n  request: {url: /}\n  expect: {status: 200}\n"
    text += (
        "---\ncases:\n- name: b\n  via: svc/shop/web\n  request: {url: /}\n  expect: {nope: 1}\n"
    )
    _, problems = load_contracts(text, file="c.yaml")
    assert [p.line for p in problems] == [11]


def test_limit_exceeded_is_a_load_error() -> None:
    assert issubclass(LimitExceeded, LoadError)
    assert yaml.__with_libyaml__  # the fast path these figures assume
