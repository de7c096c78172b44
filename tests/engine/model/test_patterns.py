"""The models' string patterns match as the API server's do (Go's regexp, RE2): ``$`` is the
end of the text, so a value with a trailing newline breaks the pattern. Python's ``re``
would let ``$`` match before that newline."""

from __future__ import annotations

import pytest

from turnout.engine.diagnostics import SourcePos
from turnout.engine.model import parse_documents
from turnout.engine.model.loader import Document
from turnout.engine.validate import validate_documents


def _route(namespace: str, header: str) -> dict[str, object]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "web", "namespace": namespace}],
            "rules": [{"matches": [{"headers": [{"name": header, "value": "v"}]}]}],
        },
    }


@pytest.mark.parametrize(
    ("namespace", "header", "field"),
    [
        ("shop\n", "x-a", "spec.parentRefs[0].namespace"),
        ("shop", "x-a\n", "spec.rules[0].matches[0].headers[0].name"),
    ],
)
def test_a_trailing_newline_breaks_the_pattern(namespace: str, header: str, field: str) -> None:
    doc = Document(pos=SourcePos("f.yaml", 0), raw=_route(namespace, header))
    resources, diags = parse_documents([doc])
    assert resources.objects == ()
    assert [(d.reason, d.pos.path) for d in diags] == [("FieldValueInvalid", field)]
    assert "should match" in diags[0].message


def test_the_same_values_without_the_newline_parse() -> None:
    doc = Document(pos=SourcePos("f.yaml", 0), raw=_route("shop", "x-a"))
    resources, diags = parse_documents([doc])
    assert len(resources.objects) == 1 and diags == []


@pytest.mark.parametrize("value", ["/a\n", "/a"])
def test_the_built_in_path_rule_ends_at_the_end_of_the_text(value: str) -> None:
    """The CEL rule's `matches()` is RE2 too: "/a\\n" has a character the path may not have."""
    raw = _route("shop", "x-a")
    raw["spec"]["rules"][0]["matches"][0]["path"] = {"type": "Exact", "value": value}  # type: ignore[index]
    doc = Document(pos=SourcePos("f.yaml", 0), raw=raw)
    resources, _ = parse_documents([doc])
    found = [d.message for d in validate_documents([doc], resources)]
    assert any("must only contain valid characters" in m for m in found) == value.endswith("\n")
