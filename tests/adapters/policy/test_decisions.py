"""The semantics of the policy IR, asked through the decision function.

Every case compiles a golden input (`tests/golden/policy/`) through the real pipeline
(validation, adapters) and asks `decide` about one call; each test quotes the rule it checks
(SECURITY-REFERENCE §2 for Linkerd, §3.5 for Istio)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from tests.conftest import GOLDEN
from turnout.adapters.policy import compile_policy
from turnout.engine.authorization import (
    Client,
    Decision,
    Request,
    Workload,
    decide,
    decide_server,
    default_server,
)
from turnout.engine.ir_policy import Network, PolicyTable
from turnout.engine.pipeline import compile_policy_files


def ident(sa: str, ns: str) -> str:
    return f"{sa}.{ns}.serviceaccount.identity.cluster.local"


@cache
def table(case: str) -> PolicyTable:
    _, result = compile_policy_files([GOLDEN / "policy" / f"{case}.in.yaml"])
    return result.table


def ask(
    case: str,
    ns: str,
    labels: dict[str, str],
    port: int,
    *,
    identity: str | None = None,
    ip: str = "10.1.2.3",
    tls: bool | None = None,
    route: str | None = None,
    request: Request | None = None,
    port_names: dict[str, int] | None = None,
) -> Decision:
    return decide(
        table(case),
        workload=Workload(
            namespace=ns,
            labels=tuple(labels.items()),
            port_names=tuple((port_names or {}).items()),
        ),
        port=port,
        client=Client(identity=identity, ip=ip, tls=identity is not None if tls is None else tls),
        route=route,
        request=request,
    )


# --------------------------------------------------------------------------- the seed


WEB = {"app": "web-svc"}


@pytest.mark.parametrize(
    ("identity", "allowed"),
    [
        pytest.param(ident("ingress-nginx", "ingress-nginx"), True, id="ingress-sa-allowed"),
        pytest.param(ident("vote-bot", "emojivoto"), False, id="other-sa-denied"),
        pytest.param(None, False, id="plaintext-denied"),
    ],
)
def test_seed_only_the_ingress_service_account_may_call_web_svc(
    identity: str | None, allowed: bool
) -> None:
    d = ask("linkerd-seed-ingress-only", "emojivoto", WEB, 8080, identity=identity)
    assert d.allowed is allowed
    assert d.server == "server/emojivoto/web-http"
    if allowed:
        assert d.decided_by == "serverauthorization/emojivoto/web-ingress"


def test_seed_other_ports_fall_back_to_the_cluster_default() -> None:
    """'A port with no Server uses the default policy' (all-unauthenticated by default)."""
    d = ask("linkerd-seed-ingress-only", "emojivoto", WEB, 9999)
    assert (d.allowed, d.decided_by, d.server) == (
        True,
        "default/all-unauthenticated",
        "default/emojivoto/9999",
    )


# --------------------------------------------------------------------------- default policies

NETS = tuple(Network(cidr=c) for c in ("10.0.0.0/8", "fd00::/8"))


@pytest.mark.parametrize(
    ("policy", "identity", "ip", "allowed"),
    [
        ("all-unauthenticated", None, "8.8.8.8", True),
        ("all-authenticated", None, "10.1.1.1", False),
        ("all-authenticated", ident("a", "b"), "8.8.8.8", True),
        ("cluster-unauthenticated", None, "10.1.1.1", True),
        ("cluster-unauthenticated", None, "8.8.8.8", False),
        ("cluster-unauthenticated", None, "fd00::1", True),
        ("cluster-authenticated", ident("a", "b"), "10.1.1.1", True),
        ("cluster-authenticated", ident("a", "b"), "8.8.8.8", False),
        ("cluster-authenticated", None, "10.1.1.1", False),
        ("deny", ident("a", "b"), "10.1.1.1", False),
        ("audit", None, "8.8.8.8", True),
    ],
    ids=lambda v: str(v) if not isinstance(v, str) or "." not in v else v.split(".")[0],
)
def test_default_policies_generate_linkerds_authorizations(
    policy: str, identity: str | None, ip: str, allowed: bool
) -> None:
    """SECURITY-REFERENCE §2.1: each default policy as the authorization it generates."""
    t = PolicyTable(cluster_default=policy, cluster_networks=NETS)  # type: ignore[arg-type]
    server = default_server(t, "ns", 80)
    d = decide_server(server, client=Client(identity=identity, ip=ip, tls=identity is not None))
    assert d.allowed is allowed
    if allowed:
        assert d.decided_by == f"default/{policy}"


def test_namespace_annotation_overrides_the_cluster_default() -> None:
    assert not ask("linkerd-default-policies", "strict", {"app": "x"}, 80).allowed
    meshed = ask("linkerd-default-policies", "strict", {"app": "x"}, 80, identity=ident("a", "b"))
    assert (meshed.allowed, meshed.decided_by) == (True, "default/all-authenticated")


def test_unknown_annotation_value_keeps_the_cluster_default() -> None:
    d = ask("linkerd-default-policies", "typo", {"app": "x"}, 80)
    assert (d.allowed, d.decided_by) == (True, "default/all-unauthenticated")


def test_server_access_policy_by_port_name() -> None:
    """v1beta3 accessPolicy; a Server may name a container port."""
    names = {"admin-http": 9990}
    inside = ask(
        "linkerd-default-policies",
        "strict",
        {"app": "api"},
        9990,
        identity=ident("p", "m"),
        port_names=names,
    )
    outside = ask(
        "linkerd-default-policies",
        "strict",
        {"app": "api"},
        9990,
        identity=ident("p", "m"),
        ip="8.8.8.8",
        port_names=names,
    )
    assert (inside.allowed, inside.server) == (True, "server/strict/metrics")
    assert inside.decided_by == "default/cluster-authenticated"
    assert not outside.allowed


def test_audit_allows_and_says_so() -> None:
    d = ask("linkerd-default-policies", "strict", {"app": "worker"}, 9000, ip="8.8.8.8")
    assert (d.allowed, d.decided_by, d.server) == (True, "default/audit", "server/strict/dry-run")


def test_v1beta2_server_denies_what_is_not_authorized() -> None:
    """'Once a Server selects a port, everything not authorized is denied.'"""
    d = ask("linkerd-default-policies", "strict", {"app": "db"}, 5432, identity=ident("a", "b"))
    assert not d.allowed and d.decided_by is None


# --------------------------------------------------------------------------- routes

BOOKS = {"app": "books"}


def test_route_policy_allows_its_identity_on_its_route_only() -> None:
    write = "httproute/booksapp/books-write"
    read = "httproute/booksapp/books-read"
    webapp = ident("webapp", "booksapp")
    d = ask(
        "linkerd-route-scoped", "booksapp", BOOKS, 7002, identity=webapp, ip="8.8.8.8", route=write
    )
    assert (d.allowed, d.decided_by) == (True, "authorizationpolicy/booksapp/books-write-webapp")
    d = ask(
        "linkerd-route-scoped", "booksapp", BOOKS, 7002, identity=webapp, ip="8.8.8.8", route=read
    )
    assert not d.allowed


def test_server_level_authorizations_are_added_to_every_route() -> None:
    """'The proxy appends the server-level authorizations to every route' (OR)."""
    d = ask(
        "linkerd-route-scoped",
        "booksapp",
        BOOKS,
        7002,
        ip="10.1.2.3",
        route="httproute/booksapp/books-read",
    )
    assert (d.allowed, d.decided_by) == (True, "authorizationpolicy/booksapp/probes")


def test_network_authentication_except_is_excluded() -> None:
    d = ask(
        "linkerd-route-scoped",
        "booksapp",
        BOOKS,
        7002,
        ip="10.96.0.10",
        route="httproute/booksapp/books-read",
    )
    assert not d.allowed


def test_unknown_route_is_not_found() -> None:
    d = ask("linkerd-route-scoped", "booksapp", BOOKS, 7002, route="httproute/booksapp/nope")
    assert not d.allowed and "(404)" in d.reason


# --------------------------------------------------------------------------- MeshTLS


@pytest.mark.parametrize(
    ("identity", "tls", "ip", "by"),
    [
        (ident("web", "shop"), True, "8.8.8.8", "authorizationpolicy/shop/named"),
        (ident("nightly", "batch"), True, "8.8.8.8", "authorizationpolicy/shop/named"),
        (ident("checkout", "shop"), True, "8.8.8.8", "authorizationpolicy/shop/refs"),
        (ident("prometheus", "monitoring"), True, "8.8.8.8", "authorizationpolicy/shop/refs"),
        (ident("other", "shop"), True, "8.8.8.8", None),
        (None, True, "192.168.4.4", "serverauthorization/shop/backend-tls"),
        (None, False, "192.168.4.4", None),
        (None, True, "10.4.4.4", None),
    ],
    ids=[
        "exact-identity",
        "suffix-identity",
        "serviceaccount-ref",
        "namespace-ref",
        "other-identity-denied",
        "unauthenticated-tls-from-network",
        "plaintext-is-not-tls",
        "tls-outside-network",
    ],
)
def test_meshtls_identities_and_refs(
    identity: str | None, tls: bool, ip: str, by: str | None
) -> None:
    d = ask(
        "linkerd-meshtls-identities",
        "shop",
        {"app": "api"},
        8080,
        identity=identity,
        tls=tls,
        ip=ip,
    )
    assert (d.allowed, d.decided_by) == (by is not None, by)


def test_missing_authentication_fails_closed_and_says_so() -> None:
    d = ask(
        "linkerd-missing-authentication",
        "shop",
        {"app": "web"},
        8080,
        identity=ident("ingress", "shop"),
    )
    assert not d.allowed
    assert (
        "failed closed: authorizationpolicy/shop/web-from-ingress: MeshTLSAuthentication shop/ingress"
        in d.reason
    )


# --------------------------------------------------------------------------- Istio

PP = {"app": "productpage"}
INGRESS = "istio-ingressgateway-service-account.istio-system.serviceaccount.identity.cluster.local"


def page(path: str = "/productpage", method: str = "GET", env: str = "prod") -> Request:
    return Request(method=method, path=path, headers=(("x-env", env),))


@pytest.mark.parametrize(
    ("request_", "by", "allowed"),
    [
        (page(), "istio/authorizationpolicy/bookinfo/productpage-viewer/rule/0", True),
        (
            page("/static/app.css"),
            "istio/authorizationpolicy/bookinfo/productpage-viewer/rule/0",
            True,
        ),
        (page(env="prod-canary"), None, False),
        (page(method="POST"), None, False),
        (page("/admin/users"), "istio/authorizationpolicy/bookinfo/deny-admin/rule/0", False),
    ],
    ids=[
        "allow-match",
        "allow-prefix-path",
        "when-not-values",
        "method-not-allowed",
        "deny-beats-allow",
    ],
)
def test_istio_allow_and_deny_for_the_ingress(
    request_: Request, by: str | None, allowed: bool
) -> None:
    """'any DENY match -> deny; ... any ALLOW match -> allow; otherwise deny'."""
    d = ask(
        "istio-allow-deny", "bookinfo", PP, 9080, identity=INGRESS, ip="10.2.2.2", request=request_
    )
    assert (d.allowed, d.decided_by) == (allowed, by)


def test_istio_deny_on_not_namespaces_catches_plaintext() -> None:
    d = ask("istio-allow-deny", "bookinfo", PP, 9080, ip="10.2.2.2", request=page())
    assert (d.allowed, d.decided_by) == (
        False,
        "istio/authorizationpolicy/bookinfo/deny-admin/rule/1",
    )


def test_istio_allow_policy_with_no_rules_denies_everything() -> None:
    """`spec: {}` = allow-nothing: the namespace's workloads deny what nothing else allows."""
    d = ask("istio-allow-deny", "bookinfo", {"app": "details"}, 9080, request=page())
    assert not d.allowed and d.decided_by is None


def test_istio_rules_with_one_empty_rule_allow_everything() -> None:
    """`rules: [{}]` = allow-all (ratings, selected through its Service targetRef)."""
    d = ask(
        "istio-allow-deny",
        "bookinfo",
        {"app": "ratings"},
        9080,
        ip="8.8.8.8",
        request=page(method="POST"),
    )
    assert (d.allowed, d.decided_by) == (
        True,
        "istio/authorizationpolicy/bookinfo/ratings-open/rule/0",
    )
    assert d.audited == ("istio/authorizationpolicy/bookinfo/audit-writes/rule/0",)


def test_istio_custom_without_provider_fails_closed() -> None:
    d = ask("istio-allow-deny", "bookinfo", {"app": "reviews"}, 9080, request=page("/private/x"))
    assert (d.allowed, d.decided_by) == (
        False,
        "istio/authorizationpolicy/bookinfo/ext-authz/rule/0",
    )
    assert "CUSTOM" in d.reason


@pytest.mark.parametrize(("ip", "allowed"), [("10.2.0.1", False), ("10.1.0.1", True)])
def test_istio_root_namespace_policy_is_mesh_wide(ip: str, allowed: bool) -> None:
    d = ask(
        "istio-allow-deny",
        "bookinfo",
        {"app": "ratings"},
        9080,
        identity=ident("batch", "legacy"),
        ip=ip,
        request=page(),
    )
    assert d.allowed is allowed


def test_istio_no_allow_policy_means_allow() -> None:
    d = ask("istio-allow-deny", "elsewhere", {"app": "x"}, 80, request=page())
    assert (d.allowed, d.decided_by) == (True, "default/all-unauthenticated")


def test_istio_tcp_http_fields_never_allow_and_always_deny() -> None:
    """'For a DENY rule, HTTP-only attributes on a TCP port count as matching.'"""
    d = ask("istio-allow-deny", "bookinfo", PP, 9080, identity=INGRESS, ip="10.2.2.2")
    assert (d.allowed, d.decided_by) == (
        False,
        "istio/authorizationpolicy/bookinfo/deny-admin/rule/0",
    )
    d = ask("istio-allow-deny", "bookinfo", PP, 9081, identity=INGRESS, ip="10.2.2.2")
    assert (d.allowed, d.decided_by) == (False, None)


def test_compile_is_pure() -> None:
    """The same snapshot compiles to equal (and equally hashed) tables."""
    inputs, first = compile_policy_files([GOLDEN / "policy" / "istio-allow-deny.in.yaml"])
    again = compile_policy(inputs.resources)
    assert again.table == first.table and hash(again.table) == hash(first.table)


def test_istio_principal_star_means_any_identity_even_with_others(tmp_path: Path) -> None:
    """`principals: ["*", x]`: `*` matches any authenticated client (the values OR)."""
    f = tmp_path / "p.yaml"
    f.write_text(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: p, namespace: a}\n"
        "spec: {rules: [{from: [{source: {principals: ['*', cluster.local/ns/a/sa/x]}}]}]}\n"
    )
    _, result = compile_policy_files([f])
    w = Workload(namespace="a")
    meshed = decide(
        result.table,
        workload=w,
        port=80,
        client=Client(identity=ident("y", "b"), ip="1.1.1.1", tls=True),
    )
    plain = decide(result.table, workload=w, port=80, client=Client(identity=None, ip="1.1.1.1"))
    assert meshed.allowed and not plain.allowed
