"""PeerAuthentication / RequestAuthentication in the policy IR and the matches of inbound
routes: the data the proxy picks a mode, JWT rules and a route from (SECURITY-REFERENCE §3.1,
§3.4)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import GOLDEN
from turnout.adapters.policy import compile_policy
from turnout.adapters.policy.authn import peer_authentications
from turnout.engine import ir
from turnout.engine.diagnostics import Diagnostic, SourcePos
from turnout.engine.ir_policy import JwtLocation, PolicyTable, WorkloadSelector
from turnout.engine.model import Loaded, Resources
from turnout.engine.model.authz import PeerAuthentication
from turnout.engine.pipeline import compile_policy_files


def table(case: str) -> PolicyTable:
    _, result = compile_policy_files([GOLDEN / "policy" / f"{case}.in.yaml"])
    assert result.diagnostics == ()
    return result.table


def test_peer_authentications_carry_scope_mode_ports_and_age() -> None:
    pas = {p.name: p for p in table("istio-peer-request-authn").peer_authentications}
    mesh = pas["istio/peerauthentication/istio-system/default"]
    assert (mesh.namespace, mesh.selector, mesh.mode) == (None, None, "STRICT")
    assert mesh.created == "2024-01-01T00:00:00Z"
    ns = pas["istio/peerauthentication/legacy/default"]
    assert (ns.namespace, ns.selector, ns.mode) == ("legacy", None, "PERMISSIVE")
    assert ns.created == "2024-02-01T08:00:00Z"  # +02:00 in the manifest, kept in UTC
    db = pas["istio/peerauthentication/legacy/db"]
    assert db.selector == WorkloadSelector(labels=(("app", "db"),))
    assert db.mode is None  # UNSET: inherits the namespace's PERMISSIVE
    assert db.port_modes == ((443, "STRICT"), (5432, "DISABLE"), (9090, None))
    assert db.created == ""


def loaded_pa(ns: str, spec: dict[str, object]) -> Loaded[PeerAuthentication]:
    obj = PeerAuthentication.model_validate(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "p", "namespace": ns},
            "spec": spec,
        }
    )
    return Loaded(obj=obj, pos=SourcePos("pa.yaml", 0), raw={})


def test_port_level_mtls_without_a_selector_is_ignored_with_a_warning() -> None:
    # The CRD's CEL rule refuses it; an object that reaches the adapter anyway (an older
    # API server) is treated as Istio does: the ports are ignored.
    diags: list[Diagnostic] = []
    spec = {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}}
    [pa] = peer_authentications(
        Resources((loaded_pa("shop", spec),)), diags, root_namespace="istio-system"
    )
    assert pa.port_modes == () and pa.mode == "STRICT"
    [d] = diags
    assert d.reason == "UnsupportedValue" and d.pos.path == "spec.portLevelMtls"
    assert "needs a selector" in d.message


def test_a_root_namespace_policy_with_a_selector_stays_in_its_namespace() -> None:
    spec = {"selector": {"matchLabels": {"app": "gw"}}, "mtls": {"mode": "DISABLE"}}
    [pa] = peer_authentications(
        Resources((loaded_pa("istio-system", spec),)), [], root_namespace="istio-system"
    )
    assert pa.namespace == "istio-system"


def test_jwt_rules_locations_and_claim_headers() -> None:
    ras = {r.name: r for r in table("istio-peer-request-authn").request_authentications}
    assert ras["istio/requestauthentication/istio-system/mesh"].namespace is None
    via_service = ras["istio/requestauthentication/shop/api"]
    assert via_service.selector == WorkloadSelector(labels=(("app", "api"),))
    first, second = ras["istio/requestauthentication/shop/jwt"].rules
    assert first.locations == (
        JwtLocation(header="x-jwt-assertion", prefix="Bearer "),
        JwtLocation(header="x-token"),
        JwtLocation(param="token"),
    )
    assert first.output_claim_to_headers == (("x-sub", "sub"),)
    assert first.audiences == ("web", "api") and first.forward_original_token
    assert second.locations == () and second.jwks == '{"keys": []}'
    assert second.output_payload_to_header == "x-jwt-payload"


def test_inbound_routes_carry_their_matches_grpc_methods_as_paths() -> None:
    servers = {s.name: s for s in table("linkerd-route-matches").servers}
    [grpc] = servers["server/shop/api-grpc"].routes
    assert [m.path for m in grpc.matches] == [
        ir.ExactPath(value="/shop.Catalog/Get"),
        ir.PrefixPath(value="/shop.Admin"),
    ]
    assert grpc.matches[1].headers == (ir.HeaderMatch(name="x-tenant", kind="Exact", value="acme"),)
    [http] = servers["server/shop/api-http"].routes
    assert [m.name for m in http.matches] == [
        "httproute/shop/api/rule/0/match/0",
        "httproute/shop/api/rule/0/match/1",
        "httproute/shop/api/rule/1/match/0",
    ]
    assert http.matches[0].method == "GET"
    assert http.matches[2].path == ir.PrefixPath(value="/")  # a rule without matches


def test_a_route_whose_only_match_is_invalid_is_left_out(tmp_path: Path) -> None:
    src = (GOLDEN / "policy" / "linkerd-route-matches.in.yaml").read_text()
    bad = src.replace("{type: Exact, value: /healthz}", "{type: RegularExpression, value: '/(['}")
    bad = bad.replace(
        """    - path: {type: PathPrefix, value: /v1/}
      headers: [{name: X-Env, value: prod}]
      queryParams: [{name: debug, value: "1"}]
  - {}
""",
        "",
    )
    (tmp_path / "in.yaml").write_text(bad)
    inputs, _ = compile_policy_files([tmp_path / "in.yaml"])
    servers = {s.name: s for s in compile_policy(inputs.resources).table.servers}
    assert servers["server/shop/api-http"].routes == ()  # fail closed: its requests are denied
