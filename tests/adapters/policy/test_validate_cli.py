"""`mesh validate` over authorization manifests: schema errors and fail-closed warnings."""

from __future__ import annotations

import io
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
