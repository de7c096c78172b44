"""`grpc_security` and `grpc_rbac`: the pure translation of the policy IR into what a grpcio
xDS server (A36, A41) and client (A29) are sent. The live behaviour with real grpcio is
`tests/engine/server/test_proxyless_security.py`."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import json_format

from turnout.engine.ir import SourceRef
from turnout.engine.ir_policy import (
    Authorization,
    Condition,
    ExactIdentity,
    IdentitySuffix,
    Network,
    Peer,
    PeerAuthn,
    PolicyTable,
    PrincipalMatch,
    ServiceAccountIdentity,
    StringMatch,
    WorkloadPolicy,
    WorkloadSelector,
)
from turnout.engine.pipeline import compile_policy_files
from turnout.engine.xds.grpc_rbac import identity_uri_matcher, rbac_filters
from turnout.engine.xds.grpc_security import (
    SERVER_LISTENER_TEMPLATE,
    grpc_server_listener,
    listening_address,
    mtls_mode,
    permissive_warning,
    upstream_tls_socket,
)

SRC = SourceRef(kind="Test", namespace="shop", name="t")
NAME = SERVER_LISTENER_TEMPLATE % "127.0.0.1:50051"
WEB = "web.shop.serviceaccount.identity.cluster.local"


def as_dict(message: object) -> dict[str, object]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)  # type: ignore[arg-type]


def rbac_of(f: hcm_pb2.HttpFilter) -> rbac_pb2.RBAC:
    config = rbac_filter_pb2.RBAC()
    f.typed_config.Unpack(config)
    return config.rules


def peer_authn(name: str, *, ns: str | None, selector: WorkloadSelector | None, **kw: object):  # type: ignore[no-untyped-def]
    return PeerAuthn(name=name, source=SRC, namespace=ns, selector=selector, **kw)  # type: ignore[arg-type]


def test_upstream_tls_names_the_provider_and_the_spiffe_uris() -> None:
    socket = upstream_tls_socket([WEB, "api.shop.serviceaccount.identity.cluster.local", WEB])
    assert socket is not None and socket.name == "envoy.transport_sockets.tls"
    ctx = tls_pb2.UpstreamTlsContext()
    socket.typed_config.Unpack(ctx)
    common = ctx.common_tls_context
    assert common.tls_certificate_provider_instance.instance_name == "turnout"
    assert common.validation_context.ca_certificate_provider_instance.instance_name == "turnout"
    assert [m.exact for m in common.validation_context.match_subject_alt_names] == [
        "spiffe://cluster.local/ns/shop/sa/api",
        "spiffe://cluster.local/ns/shop/sa/web",
    ]
    assert upstream_tls_socket(["not-an-identity"]) is None


@pytest.mark.parametrize(
    ("name", "want"),
    [
        (NAME, ("127.0.0.1", 50051)),
        (SERVER_LISTENER_TEMPLATE % "[::1]:8080", ("::1", 8080)),
        (SERVER_LISTENER_TEMPLATE % "127.0.0.1:0", None),
        (SERVER_LISTENER_TEMPLATE % "127.0.0.1", None),
        ("echo.grpc.svc.cluster.local:9000", None),
    ],
)
def test_listening_address(name: str, want: tuple[str, int] | None) -> None:
    assert listening_address(name) == want


def test_mtls_mode_follows_istio_precedence() -> None:
    app = WorkloadSelector(labels=(("app", "echo"),))
    mesh = peer_authn("mesh", ns=None, selector=None, mode="STRICT")
    ns = peer_authn("ns", ns="shop", selector=None, mode=None)  # UNSET: inherits the mesh's
    own = peer_authn(
        "own", ns="shop", selector=app, mode="DISABLE", port_modes=((50051, "STRICT"),)
    )
    table = PolicyTable(peer_authentications=(mesh, ns, own))
    echo = {"app": "echo"}
    assert mtls_mode(table, namespace="shop", labels=echo, port=50051).mode == "STRICT"
    assert mtls_mode(table, namespace="shop", labels=echo, port=8080).decided_by == "own"
    assert mtls_mode(table, namespace="shop", labels={}, port=8080).decided_by == "mesh"
    nothing = mtls_mode(PolicyTable(), namespace="shop", labels={}, port=1)
    assert nothing.mode == "PERMISSIVE" and nothing.decided_by is None
    warning = permissive_warning(nothing, namespace="shop", port=1)
    assert warning is not None and "STRICT" in warning and "plaintext" in warning


def test_strict_listener_requires_client_certificates_and_rbac_before_router() -> None:
    listener = grpc_server_listener(
        PolicyTable(), name=NAME, namespace="shop", labels={}, mode="STRICT"
    )
    assert listener is not None and listener.name == NAME
    sa = listener.address.socket_address
    assert (sa.address, sa.port_value) == ("127.0.0.1", 50051)
    [chain] = listener.filter_chains
    ctx = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(ctx)
    assert ctx.require_client_certificate.value is True
    assert ctx.common_tls_context.tls_certificate_provider_instance.instance_name == "turnout"
    hcm = hcm_pb2.HttpConnectionManager()
    chain.filters[0].typed_config.Unpack(hcm)
    names = [f.name for f in hcm.http_filters]
    assert names == ["envoy.filters.http.rbac", "envoy.filters.http.router"]
    route = hcm.route_config.virtual_hosts[0].routes[0]
    assert route.HasField("non_forwarding_action") and route.match.prefix == ""
    # No policy: the cluster default (all-unauthenticated) allows everyone.
    rules = rbac_of(hcm.http_filters[0])
    assert rules.action == rbac_pb2.RBAC.Action.ALLOW
    assert as_dict(rules.policies["default/all-unauthenticated"])["principals"] == [{"any": True}]


def test_disabled_and_permissive_listeners_are_plaintext() -> None:
    for mode in ("DISABLE", "PERMISSIVE"):
        listener = grpc_server_listener(
            PolicyTable(), name=NAME, namespace="shop", labels={}, mode=mode
        )
        assert listener is not None
        assert not listener.filter_chains[0].HasField("transport_socket")
    assert grpc_server_listener(PolicyTable(), name="other", namespace="shop", labels={}) is None


@pytest.mark.parametrize(
    ("match", "want"),
    [
        (ExactIdentity(value=WEB), {"exact": "spiffe://cluster.local/ns/shop/sa/web"}),
        (
            IdentitySuffix(suffix=".batch.serviceaccount.identity.cluster.local"),
            {"prefix": "spiffe://cluster.local/ns/batch/sa/"},
        ),
        (
            ServiceAccountIdentity(namespace="shop", name="web", trust_domain="cluster.local"),
            {"exact": "spiffe://cluster.local/ns/shop/sa/web"},
        ),
        (
            ServiceAccountIdentity(namespace="shop"),
            {"safe_regex": {"regex": "spiffe://[^/]+/ns/shop/sa/[^/]+"}},
        ),
        (
            PrincipalMatch(match=StringMatch(kind="suffix", value="/sa/web")),
            {"suffix": "/sa/web"},
        ),
    ],
)
def test_identities_become_uri_matchers(match: object, want: dict[str, object]) -> None:
    assert as_dict(identity_uri_matcher(match)) == want  # type: ignore[arg-type]


def test_istio_deny_then_allow_with_principals_networks_and_paths(tmp_path: Path) -> None:
    src = Path(__file__).parents[2] / "golden" / "policy" / "istio-allow-deny.in.yaml"
    _, result = compile_policy_files([src])
    filters = rbac_filters(
        result.table, namespace="bookinfo", labels={"app": "productpage"}, port=9080
    )
    assert [f.name for f in filters] == ["envoy.filters.http.rbac.deny", "envoy.filters.http.rbac"]
    deny, allow = (rbac_of(f) for f in filters)
    assert deny.action == rbac_pb2.RBAC.Action.DENY and allow.action == rbac_pb2.RBAC.Action.ALLOW
    text = str(as_dict(allow))
    assert "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account" in text
    assert "'address_prefix': '10.0.0.0'" in text and "/productpage" in text


def test_a_deny_rule_on_jwt_fails_closed_and_an_allow_rule_never_matches() -> None:
    jwt_peer = Peer(request_principals=(StringMatch(kind="exact", value="iss/sub"),))
    authz = Authorization(name="a", source=SRC, peers=(jwt_peer,))
    table = PolicyTable(
        workload_policies=(
            WorkloadPolicy(
                name="deny",
                source=SRC,
                namespace="shop",
                selector=None,
                action="DENY",
                authorizations=(
                    Authorization(name="d", source=SRC, action="DENY", peers=(jwt_peer,)),
                ),
            ),
            WorkloadPolicy(
                name="allow",
                source=SRC,
                namespace="shop",
                selector=None,
                action="ALLOW",
                authorizations=(authz,),
            ),
        ),
        cluster_networks=(Network(cidr="10.0.0.0/8"),),
    )
    deny, allow = (rbac_of(f) for f in rbac_filters(table, namespace="shop", labels={}, port=1))
    assert as_dict(deny.policies["d"])["principals"] == [{"any": True}]
    assert as_dict(allow.policies["a"])["principals"] == [{"not_id": {"any": True}}]
    assert set(allow.policies) == {"a"}  # an Istio ALLOW policy replaces the default's


def test_a_condition_on_a_grpc_header_fails_closed_instead_of_a_nack() -> None:
    cond = Condition(key="request.headers[grpc-timeout]", values=(StringMatch(kind="present"),))
    authz = Authorization(name="a", source=SRC, conditions=(cond,))
    policy = WorkloadPolicy(
        name="p",
        source=SRC,
        namespace="shop",
        selector=None,
        action="ALLOW",
        authorizations=(authz,),
    )
    table = PolicyTable(workload_policies=(policy,))
    [allow] = (rbac_of(f) for f in rbac_filters(table, namespace="shop", labels={}, port=1))
    assert "grpc-timeout" not in str(as_dict(allow))
    assert as_dict(allow.policies["a"])["principals"] == [{"not_id": {"any": True}}]
