"""The contract file format: a via as `--via` writes it, and load errors that name the file,
the document, the field and its line."""

from __future__ import annotations

import re

import pytest

from turnout.engine.model.contract import ViaRef, load_contracts, parse_via_text

CASE = """\
- name: {name}
  via: {via}
  request: {{url: "http://web.shop/"}}
  expect: {{status: 200}}
"""


def contract(*cases: tuple[str, str]) -> str:
    return "cases:\n" + "".join(CASE.format(name=n, via=v) for n, v in cases)


@pytest.mark.parametrize(
    ("text", "namespace", "want"),
    [
        pytest.param("service/shop/web:80", None, ("Service", "shop", "web", 80), id="full"),
        pytest.param("Service/shop/web:80", None, ("Service", "shop", "web", 80), id="kind-case"),
        pytest.param("svc/shop/web", None, ("Service", "shop", "web", None), id="short-no-port"),
        pytest.param("svc/web:8080", "shop", ("Service", "shop", "web", 8080), id="n-namespace"),
        pytest.param("svc/web", None, ("Service", "default", "web", None), id="default-ns"),
        pytest.param("services/shop/web", "shop", ("Service", "shop", "web", None), id="plural"),
        pytest.param(
            "gateway/infra/public:443", None, ("Gateway", "infra", "public", 443), id="gw"
        ),
        pytest.param("GTW/infra/public", None, ("Gateway", "infra", "public", None), id="gtw"),
    ],
)
def test_a_via_is_written_as_kubectl_names_resources(
    text: str, namespace: str | None, want: tuple[str, str, str, int | None]
) -> None:
    v = parse_via_text(text, namespace=namespace)
    assert (v.kind, v.namespace, v.name, v.port) == want


@pytest.mark.parametrize(
    ("text", "namespace", "says"),
    [
        pytest.param("web", None, "want KIND/NS/NAME[:PORT]", id="no-kind"),
        pytest.param("pod/shop/web", None, "want KIND/NS/NAME", id="pod"),
        pytest.param("svc/shop/web/x", None, "want KIND/NS/NAME", id="too-many-parts"),
        pytest.param("svc//web", None, "want KIND/NS/NAME", id="empty-namespace"),
        pytest.param("svc/shop/web:http", None, "want KIND/NS/NAME", id="named-port"),
        pytest.param("svc/shop/web:70000", None, "want KIND/NS/NAME", id="port-range"),
        pytest.param("svc/shop/web", "prod", "names namespace 'shop' but -n says 'prod'", id="n"),
    ],
)
def test_a_bad_via_says_what_it_wants(text: str, namespace: str | None, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_via_text(text, namespace=namespace)


def test_a_case_via_may_be_a_string_or_a_mapping_without_port() -> None:
    text = contract(("a", "svc/shop/web"), ("b", "{kind: Gateway, namespace: infra, name: gw}"))
    docs, problems = load_contracts(text, file="c.yaml")
    assert not problems
    a, b = docs[0].contract.cases
    assert a.via == ViaRef(kind="Service", namespace="shop", name="web")
    assert (b.via.kind, b.via.port) == ("Gateway", None)


def test_schema_errors_name_file_document_field_and_line() -> None:
    text = (
        "---\n"
        + contract(("ok", "svc/web"))
        + "---\n"
        + contract(("kind", "{kind: Pod, name: web}"), ("string", "pod/shop/web")).replace(
            "status: 200", 'status: "200"'
        )
    )
    docs, problems = load_contracts(text, file="c.yaml")
    assert len(docs) == 1 and docs[0].pos.doc_index == 0
    got = [str(p) for p in problems]
    assert got == [
        'c.yaml[1] cases[0].via.kind (line 10): Unsupported value: "Pod": supported values: '
        '"Service", "Gateway"',
        'c.yaml[1] cases[0].expect.status (line 12): Invalid value: "200": must be of type integer',
        "c.yaml[1] cases[1].via (line 14): want KIND/NS/NAME[:PORT] or KIND/NAME[:PORT] (KIND: "
        "service, svc, gateway, gtw), got 'pod/shop/web'",
        'c.yaml[1] cases[1].expect.status (line 16): Invalid value: "200": must be of type integer',
    ]


def test_a_missing_field_points_at_the_line_of_what_holds_it() -> None:
    text = "cases:\n- name: x\n  via: svc/web\n  expect: {}\n"
    _, problems = load_contracts(text, file="c.yaml")
    assert [str(p) for p in problems] == ["c.yaml[0] cases[0].request (line 2): Required value"]


def test_unknown_fields_and_empty_files_are_problems_too() -> None:
    _, problems = load_contracts("cases:\n- name: x\n  vai: svc/web\n", file="c.yaml")
    assert 'c.yaml[0] cases[0].vai (line 3): unknown field "vai"' in [str(p) for p in problems]
    _, problems = load_contracts("# later\n", file="c.yaml")
    assert [str(p) for p in problems] == ["c.yaml[0]: no contract in the file"]


def test_bad_yaml_names_the_document_and_line_and_keeps_the_documents_before() -> None:
    """The line is where the parser noticed: here the end of the file, after the open `[`."""
    text = contract(("ok", "svc/web")) + "---\ncases: [\n"
    docs, problems = load_contracts(text, file="c.yaml")
    assert len(docs) == 1
    (p,) = problems
    assert p.pos.doc_index == 1 and p.line == 8 and p.message.startswith("invalid YAML: ")
