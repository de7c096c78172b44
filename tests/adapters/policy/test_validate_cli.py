"""`mesh validate` over authorization manifests: schema errors and fail-closed warnings."""

from __future__ import annotations

import io
import json
from pathlib import Path

from tests.conftest import GOLDEN
from turnout.cli.main import main


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_validate_says_a_missing_authentication_fails_closed() -> None:
    src = GOLDEN / "policy" / "linkerd-missing-authentication.in.yaml"
    code, out, err = run("validate", "-f", str(src))
    assert code == 0, err
    assert "3 object(s) valid" in out
    assert (
        "[1] spec.requiredAuthenticationRefs[0]: MeshTLSAuthentication shop/ingress not found: "
        "the policy authorizes nothing until it exists (fail closed) (AuthenticationNotFound)"
    ) in err
    assert run("validate", "--strict", "-f", str(src))[0] != 0


def test_validate_refuses_a_serverauthorization_naming_no_server(tmp_path: Path) -> None:
    f = tmp_path / "saz.yaml"
    f.write_text(
        "apiVersion: policy.linkerd.io/v1beta1\nkind: ServerAuthorization\n"
        "metadata: {name: a, namespace: shop}\n"
        "spec: {server: {}, client: {unauthenticated: true}}\n"
    )
    code, _, err = run("validate", "-f", str(f))
    assert code != 0
    assert (
        "saz.yaml[0] spec.server: exactly one of server.name and server.selector must be set "
        "(FieldValueInvalid)"
    ) in err


def test_inbound_routes_are_not_routing_parents() -> None:
    """An HTTPRoute whose parent is a Server is policy's, not an unsupported parent."""
    code, _, err = run("validate", "-f", str(GOLDEN / "policy" / "linkerd-route-scoped.in.yaml"))
    assert code == 0 and "InvalidKind" not in err


SEED = GOLDEN / "policy" / "linkerd-seed-ingress-only.in.yaml"
INGRESS = "ingress-nginx.ingress-nginx.serviceaccount.identity.cluster.local"


def explain(*extra: str) -> tuple[int, str, str]:
    return run(
        "routes", "explain", "-f", str(SEED), "--via", "service/emojivoto/web-svc:80",
        "--url", "http://web-svc.emojivoto/", *extra,
    )  # fmt: skip


def test_explain_decides_authorization_at_the_services_target_port() -> None:
    code, out, err = explain("--from-identity", INGRESS)
    assert code == 0, err
    assert (
        "authorization: allowed at server/emojivoto/web-http (port 8080): "
        "allowed by serverauthorization/emojivoto/web-ingress"
    ) in out


def test_explain_says_when_the_destination_denies() -> None:
    code, out, _ = explain("--from-ip", "10.1.1.1", "-o", "json")
    assert code == 0
    data = json.loads(out)
    assert data["authorization"] == {
        "allowed": False,
        "port": 8080,
        "reason": "no authorization on server/emojivoto/web-http allows the client",
        "server": "server/emojivoto/web-http",
    }


def test_explain_without_client_flags_is_unchanged() -> None:
    code, out, _ = explain()
    assert code == 0 and "authorization" not in out


def test_explain_names_a_failed_closed_policy(tmp_path: Path) -> None:
    text = (GOLDEN / "policy" / "linkerd-missing-authentication.in.yaml").read_text()
    svc = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
        "spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}\n---\n"
    )
    f = tmp_path / "m.yaml"
    f.write_text(svc + text)
    _, out, _ = run(
        "routes", "explain", "-f", str(f), "--via", "service/shop/web:80",
        "--url", "http://web.shop/", "--from-identity", "x.shop.serviceaccount.identity.cluster.local",
    )  # fmt: skip
    assert "authorization: DENIED at server/shop/web-http (port 8080)" in out
    assert "failed closed: authorizationpolicy/shop/web-from-ingress" in out


def test_validate_warns_of_a_server_first_port_not_marked_opaque() -> None:
    src = GOLDEN / "policy" / "linkerd-server-first-ports.in.yaml"
    code, out, err = run("validate", "-f", str(src))
    assert code == 0, err  # a warning: exit 0 unless --strict
    assert "object(s) valid" in out
    assert (
        "[2] spec.ports[2].port: port 3306 is a server-first protocol's port (MySQL); mark it "
        "opaque (config.linkerd.io/opaque-ports) or clients wait 10 s for protocol detection "
        "(ServerFirstPortDetected)"
    ) in err
    assert str(src.name) in err and "port 5432" not in err and "port 11211" not in err
    assert run("validate", "--strict", "-f", str(src))[0] != 0
