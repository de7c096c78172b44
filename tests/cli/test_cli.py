"""The `mesh` commands end to end, through `main(argv, stdout=..., stderr=...)`."""

from __future__ import annotations

import io
import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml

from turnout.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "emojivoto"
CONTRACT = ROOT / "examples" / "contracts" / "emojivoto.yaml"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


ROUTE_BAD_PORT = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - backendRefs: [{name: web, port: 800080}]
"""

ROUTE_MISSING_BACKEND = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - backendRefs: [{name: gone, port: 80}]
"""


def test_validate_accepts_the_examples() -> None:
    code, out, _ = run("validate", "-f", str(EXAMPLES))
    assert code == 0
    assert "object(s) valid" in out


def test_validate_names_file_document_and_field_and_fails(tmp_path: Path) -> None:
    f = write(tmp_path, "routes.yaml", ROUTE_BAD_PORT)
    code, _, err = run("validate", "-f", str(f))
    assert code == 1
    assert f"{f}[1] spec.rules[0].backendRefs[0].port: Invalid value: 800080" in err
    assert "(FieldValueInvalid)" in err


def test_semantic_findings_warn_and_fail_only_with_strict(tmp_path: Path) -> None:
    f = write(tmp_path, "routes.yaml", ROUTE_MISSING_BACKEND)
    code, _, err = run("validate", "-f", str(f))
    assert code == 0
    assert "spec.rules[0].backendRefs[0]: Service shop/gone not found" in err
    assert "(BackendNotFound)" in err
    assert run("validate", "-f", str(f), "--strict")[0] == 1


def test_validate_reads_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(ROUTE_BAD_PORT))
    code, _, err = run("validate", "-f", "-")
    assert code == 1
    assert "-[1] spec.rules[0].backendRefs[0].port" in err


def test_routes_table_has_one_row_per_rule() -> None:
    code, out, _ = run("routes", "-f", str(EXAMPLES))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["PARENT", "ROUTE", "MATCH", "BACKENDS"]
    web = [line for line in lines if "HTTPRoute/emojivoto/web" in line]
    assert len(web) == 3
    assert any(
        "emojivoto/web-v1:80 90, emojivoto/web-v2:80 10" in line and "2s/500ms" in line
        for line in web
    )


def test_routes_table_shows_a_backends_own_redirect_and_rewrite(tmp_path: Path) -> None:
    routes = write(
        tmp_path,
        "split.yaml",
        """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - backendRefs:
    - name: web
      port: 80
      filters: [{type: URLRewrite, urlRewrite: {hostname: new.example}}]
    - name: web
      port: 80
      filters: [{type: RequestRedirect, requestRedirect: {statusCode: 301, hostname: b.example}}]
""",
    )
    code, out, _ = run("routes", "-f", str(routes))
    assert code == 0
    assert "shop/web:80 1 (rewrite), shop/web:80 1 (redirect 301)" in out


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_routes_machine_output_holds_table_and_status(fmt: str) -> None:
    code, out, _ = run("routes", "-f", str(EXAMPLES), "-o", fmt)
    assert code == 0
    data = yaml.safe_load(out) if fmt == "yaml" else json.loads(out)
    names = [p["name"] for p in data["table"]["parents"]]
    assert "service/emojivoto/web:80" in names
    assert "gateway/emojivoto/public:443" in names
    accepted = {
        s["route"]["name"]: s["parents"][0]["conditions"][0]["status"] for s in data["status"]
    }
    assert accepted["web"] == "True"


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_routes_machine_output_holds_gateway_status_as_kubectl_shows_it(fmt: str) -> None:
    """`gatewayStatus` reads like `kubectl get gateway -o yaml`'s `status`."""
    code, out, _ = run("routes", "-f", str(EXAMPLES), "-o", fmt)
    assert code == 0
    data = yaml.safe_load(out) if fmt == "yaml" else json.loads(out)
    (public,) = [g for g in data["gatewayStatus"] if g["gateway"]["name"] == "public"]
    assert {c["type"]: c["status"] for c in public["conditions"]} == {
        "Accepted": "True",
        "Programmed": "True",
    }
    listeners = {li["name"]: li for li in public["listeners"]}
    assert {n: li["attachedRoutes"] for n, li in listeners.items()} == {"http": 1, "https": 1}
    assert {"name", "supportedKinds", "attachedRoutes", "conditions"} == set(listeners["http"])


def test_explain_says_why_the_header_rule_lost_to_a_longer_prefix() -> None:
    code, out, _ = run(
        "routes",
        "explain",
        "-f",
        str(EXAMPLES),
        "--via",
        "service/emojivoto/web:80",
        "--url",
        "http://web.emojivoto/api/vote",
        "-H",
        "x-canary: true",
    )
    assert code == 0
    assert "matched:  httproute/emojivoto/web/rule/1 of HTTPRoute/emojivoto/web" in out
    assert "longer prefix /api beats /" in out
    assert "x-route: api" in out
    assert out.rstrip().endswith("status:   200")


def test_explain_json_for_a_redirect() -> None:
    code, out, _ = run(
        "routes",
        "explain",
        "-f",
        str(EXAMPLES),
        "--via",
        "gateway/emojivoto/public:80",
        "--url",
        "http://www.emojivoto.example/a?b=1",
        "-o",
        "json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["status"] == 301
    assert data["redirect"] == "https://www.emojivoto.example/a?b=1"
    assert data["matched"]["route"] == "HTTPRoute/emojivoto/https-redirect"


def test_explain_no_match_is_404_and_an_unknown_parent_fails(tmp_path: Path) -> None:
    code, out, _ = run(
        "routes",
        "explain",
        "-f",
        str(EXAMPLES),
        "--via",
        "gateway/emojivoto/public:443",
        "--url",
        "https://nope.emojivoto.example/",
    )
    assert code == 0
    assert out.rstrip().endswith("status:   404")
    code, _, err = run(
        "routes",
        "explain",
        "-f",
        str(EXAMPLES),
        "--via",
        "service/emojivoto/nope:80",
        "--url",
        "http://nope/",
    )
    assert code == 2
    assert "no parent service/emojivoto/nope:80 in the manifests (services: " in err


def test_explain_invalid_backend_share_answers_500(tmp_path: Path) -> None:
    f = write(tmp_path, "r.yaml", ROUTE_MISSING_BACKEND)
    code, out, _ = run(
        "routes",
        "explain",
        "-f",
        str(f),
        "--via",
        "service/shop/web:80",
        "--url",
        "http://web.shop/",
    )
    assert code == 0
    assert "BackendNotFound" in out
    assert out.rstrip().endswith("status:   500")


def test_mesh_test_passes_the_example_contract_and_writes_junit(tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    code, out, _ = run("test", "-f", str(EXAMPLES), str(CONTRACT), "--junit", str(report))
    assert code == 0
    assert "0 failed" in out
    suite = ET.parse(report).getroot()
    assert suite.get("failures") == "0"
    assert int(suite.get("tests", "0")) == out.count("PASS")


CONTRACT_WRONG = """\
cases:
- name: wrong backend and status
  via: {kind: Service, namespace: emojivoto, name: web, port: 80}
  request: {url: "http://web.emojivoto/", headers: {x-canary: "true"}}
  expect:
    status: 503
    backend: {name: web-v1}
    requestHeaders: {x-route: api}
- name: right
  via: {kind: Service, namespace: emojivoto, name: web, port: 80}
  request: {url: "http://web.emojivoto/", headers: {x-canary: "true"}}
  expect: {backend: {name: web-v2}}
"""


def test_mesh_test_reports_every_difference_and_fails(tmp_path: Path) -> None:
    c = write(tmp_path, "c.yaml", CONTRACT_WRONG)
    report = tmp_path / "junit.xml"
    code, out, _ = run("test", "-f", str(EXAMPLES), str(c), "--junit", str(report))
    assert code == 1
    assert "FAIL" in out and "PASS" in out
    assert "status: want 503, got 200" in out
    assert "backend: want 'web-v1', got ['emojivoto/web-v2']" in out
    assert "requestHeaders.x-route[emojivoto/web-v2]: want 'api', got None" in out
    assert "1 passed, 1 failed" in out
    suite = ET.parse(report).getroot()
    assert suite.get("failures") == "1"


def test_mesh_test_exits_2_when_a_contract_or_the_manifests_cannot_load(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", "cases:\n- name: x\n  via: {kind: Pod, name: a, port: 1}\n")
    code, _, err = run("test", "-f", str(EXAMPLES), str(bad))
    assert code == 2
    assert "bad.yaml" in err and "via.kind" in err
    broken = write(tmp_path, "m.yaml", ROUTE_BAD_PORT)
    assert run("test", "-f", str(broken), str(CONTRACT))[0] == 2
    assert run("test", "-f", str(tmp_path / "missing"), str(CONTRACT))[0] == 2


def test_demo_offline_runs_the_main_job_on_the_examples() -> None:
    code, out, _ = run("demo", "--offline")
    assert code == 0
    assert "$ mesh routes -f examples/emojivoto/" in out
    assert "$ mesh test -f examples/emojivoto/" in out
    assert " 0 failed" in out


def test_validate_with_upstream_crds_reports_cel_rule_messages(tmp_path: Path) -> None:
    from tests.conftest import GATEWAY_API, require_reference

    crds = require_reference(GATEWAY_API / "crd" / "standard")
    f = write(
        tmp_path,
        "r.yaml",
        """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  rules:
  - filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https}
    backendRefs: [{name: web, port: 80}]
""",
    )
    code, _, err = run("validate", "-f", str(f), "--crds", str(crds))
    assert code == 1
    assert "RequestRedirect filter must not be used together with backendRefs" in err
    assert f"{f}[0] spec.rules[0]:" in err


@pytest.mark.parametrize(
    ("via", "namespace", "parent"),
    [
        pytest.param("service/emojivoto/web:80", None, "service/emojivoto/web:80", id="full"),
        pytest.param("Service/emojivoto/web", None, "service/emojivoto/web:80", id="one-port"),
        pytest.param("svc/web", "emojivoto", "service/emojivoto/web:80", id="svc-n"),
        pytest.param("svc/voting", "emojivoto", "service/emojivoto/voting:8080", id="grpc-port"),
        pytest.param("gtw/emojivoto/public:443", None, "gateway/emojivoto/public:443", id="gtw"),
    ],
)
def test_explain_takes_the_via_forms_kubectl_users_write(
    via: str, namespace: str | None, parent: str
) -> None:
    argv = ["routes", "explain", "-f", str(EXAMPLES), "--via", via, "--url", "http://x/"]
    if namespace is not None:
        argv += ["-n", namespace]
    code, out, err = run(*argv, "-o", "json")
    assert code == 0, err
    assert json.loads(out)["parent"] == parent


CONTRACT_UNKNOWN_VIA = """\
cases:
- name: known
  via: svc/emojivoto/web
  request: {url: "http://web.emojivoto/"}
  expect: {status: 200}
- name: typo in the service
  via: {kind: Service, namespace: emojivoto, name: webb, port: 80}
  request: {url: "http://web.emojivoto/"}
  expect: {status: 200}
- name: a gateway with two ports
  via: gateway/emojivoto/public
  request: {url: "http://www.emojivoto.example/"}
  expect: {status: 301}
"""


def test_mesh_test_names_the_file_and_case_of_a_via_not_in_the_manifests(tmp_path: Path) -> None:
    c = write(tmp_path, "c.yaml", CONTRACT_UNKNOWN_VIA)
    code, out, err = run("test", "-f", str(EXAMPLES), str(c))
    assert code == 2
    assert out == ""  # no case ran: not "FAIL status: want 200, got 404"
    assert err.splitlines() == [
        f"error: {c}[0] cases[1].via (line 7): case 'typo in the service': no parent "
        "service/emojivoto/webb:80 in the manifests (services: service/emojivoto/emoji:8080, "
        "service/emojivoto/voting-v2:8080, service/emojivoto/voting:8080, "
        "service/emojivoto/web-v1:80, service/emojivoto/web-v2:80, service/emojivoto/web:80)",
        f"error: {c}[0] cases[2].via (line 11): case 'a gateway with two ports': "
        "gateway/emojivoto/public has ports 80, 443: name one (gateway/emojivoto/public:PORT)",
    ]


def test_mesh_test_load_errors_name_file_document_field_and_line(tmp_path: Path) -> None:
    c = write(tmp_path, "c.yaml", CONTRACT_WRONG + "---\ncases:\n- name: x\n  via: svc/web\n")
    code, out, err = run("test", "-f", str(EXAMPLES), str(c))
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"error: {c}[1] cases[0].request (line 15): Required value",
        f"error: {c}[1] cases[0].expect (line 15): Required value",
    ]


def keys_of(data: object) -> set[str]:
    if isinstance(data, dict):
        return set(data) | {k for v in data.values() for k in keys_of(v)}
    if isinstance(data, list):
        return {k for v in data for k in keys_of(v)}
    return set()


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_routes_machine_output_spells_fields_as_kubectl_get_does(fmt: str) -> None:
    """Route status reads like `kubectl get httproute -o yaml`'s `status.parents`."""
    code, out, _ = run("routes", "-f", str(EXAMPLES), "-o", fmt)
    assert code == 0
    data = yaml.safe_load(out) if fmt == "yaml" else json.loads(out)
    web = next(s for s in data["status"] if s["route"]["name"] == "web")
    parent = web["parents"][0]
    assert set(parent) == {"parentRef", "controllerName", "conditions"}
    assert parent["parentRef"] == {
        "group": "",
        "kind": "Service",
        "name": "web",
        "namespace": "emojivoto",
        "port": 80,
    }
    assert {"type", "status", "reason", "message", "observedGeneration"} == set(
        parent["conditions"][0]
    )
    snake = sorted(k for k in keys_of(data) if "_" in k and k.islower())
    assert not snake, snake
    assert "portName" in keys_of(data) and "port_name" not in keys_of(data)
