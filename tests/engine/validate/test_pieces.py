"""`validate_pieces` gives what `validate_paths` gives for the same file, however it was edited,
and reads again only the documents whose text changed."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from turnout.engine.errors import LimitExceeded
from turnout.engine.model.limits import ManifestLimits
from turnout.engine.pipeline import OWN_CRDS
from turnout.engine.validate import load_crds, validate_paths
from turnout.engine.validate.pieces import Piece, validate_pieces, without_raw

ROUTE = """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: shop}}
spec:
  parentRefs: [{{group: "", kind: Service, name: web, port: 80}}]
  rules:
  - backendRefs: [{{name: web, port: 80, weight: {weight}}}]
"""

DOCUMENTS = [
    ROUTE.format(name="a", weight=10),
    ROUTE.format(name="b", weight=20),
    ROUTE.format(name="a", weight=30),  # the same object again: DuplicateObject
    ROUTE.format(name="c", weight=-1),  # a schema error
    ROUTE.format(name="d", weight=1) + "  - matches: [{path: {type: Exact, value: 'no-slash'}}]\n",
    ROUTE.format(name="d", weight=2),  # replaces the one above, and drops its findings
    "",  # an empty document still counts
    "apiVersion: v1\nkind: List\nitems:\n- "
    + ROUTE.format(name="e", weight=5).replace("\n", "\n  "),
    "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",  # not ours: info
    "- just\n- a list\n",  # not a mapping
    "kind: HTTPRoute\nmetadata: {name: x\n",  # bad YAML: the file ends here
    "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
    "spec: {ports: [{port: 80}]}\n",
]


def _text(docs: list[str]) -> str:
    return "".join(f"---\n{d}" for d in docs)


def _whole(path: Path, text: str, **kw: object) -> tuple[object, object]:
    path.write_text(text)
    report = validate_paths([str(path)], **kw)  # type: ignore[arg-type]
    return tuple(without_raw(o) for o in report.resources.objects), report.diagnostics


@pytest.mark.parametrize("crds", [False, True], ids=["built-in", "with-crds"])
def test_any_edit_validates_as_the_whole_file_does(tmp_path: Path, crds: bool) -> None:
    """Random files of the documents above, edited one document at a time (changed, added,
    removed, moved): each read equals `validate_paths` of the same text."""
    crd_set = load_crds([str(OWN_CRDS)])[0] if crds else None
    path = tmp_path / "routes.yaml"
    rnd = random.Random(7)
    docs = [d for d in DOCUMENTS if "{name: x\n" not in d]  # every kind of document, at first
    known: tuple[Piece, ...] = ()
    for step in range(40):
        text = _text(docs)
        got = validate_pieces(text, file=str(path), known=known, crds=crd_set)
        assert got is not None
        assert (got.resources.objects, got.diagnostics) == _whole(path, text, crds=crd_set), step
        known = got.pieces
        what = rnd.randrange(4)
        at = rnd.randrange(len(docs))
        if what == 0:
            docs[at] = rnd.choice(DOCUMENTS)
        elif what == 1:
            docs.insert(at, rnd.choice(DOCUMENTS))
        elif what == 2 and len(docs) > 1:
            del docs[at]
        else:
            docs.insert(rnd.randrange(len(docs)), docs.pop(at))


def test_only_the_edited_document_is_read_again(tmp_path: Path) -> None:
    docs = [ROUTE.format(name=f"r{i}", weight=i + 1) for i in range(5)]
    first = validate_pieces(_text(docs), file="routes.yaml")
    assert first is not None
    docs[2] = ROUTE.format(name="r2", weight=99)
    second = validate_pieces(_text(docs), file="routes.yaml", known=first.pieces)
    assert second is not None
    kept = [a is b for a, b in zip(first.pieces, second.pieces, strict=True)]
    assert kept == [True, True, False, True, True]
    assert [o.obj.spec.rules[0].backend_refs[0].weight for o in second.resources.objects] == [
        1,
        2,
        99,
        4,
        5,
    ]
    # The same text at another document index is read again: its findings name the index.
    moved = validate_pieces(_text(["", *docs]), file="routes.yaml", known=second.pieces)
    assert moved is not None
    assert not any(p is q for p in moved.pieces for q in second.pieces)


def test_bad_yaml_is_read_again_and_ends_the_file(tmp_path: Path) -> None:
    docs = [ROUTE.format(name="a", weight=1), "kind: HTTPRoute\nmetadata: {name: x\n", "a: 1\n"]
    file = str(tmp_path / "f.yaml")
    first = validate_pieces(_text(docs), file=file)
    assert first is not None
    assert len(first.pieces) == 2
    again = validate_pieces(_text(docs), file=file, known=first.pieces)
    assert again is not None
    assert again.pieces[0] is first.pieces[0]
    assert again.pieces[1] is not first.pieces[1]
    assert [d.reason for d in again.diagnostics] == ["InvalidYAML"]
    assert (again.resources.objects, again.diagnostics) == _whole(tmp_path / "f.yaml", _text(docs))


def test_json_is_left_to_the_whole_file_reader() -> None:
    assert validate_pieces('{"apiVersion": "v1", "kind": "Service"}', file="f.json") is None


def test_a_document_over_its_cap_is_refused_as_in_the_whole_file(tmp_path: Path) -> None:
    docs = [ROUTE.format(name="a", weight=1), "a: " + "x" * 2000 + "\n"]
    limits = ManifestLimits(max_document_bytes=1000)
    with pytest.raises(LimitExceeded) as piece:
        validate_pieces(_text(docs), file=str(tmp_path / "f.yaml"), limits=limits)
    path = tmp_path / "f.yaml"
    path.write_text(_text(docs))
    with pytest.raises(LimitExceeded) as whole:
        validate_paths([str(path)], limits=limits)
    assert str(piece.value) == str(whole.value)
