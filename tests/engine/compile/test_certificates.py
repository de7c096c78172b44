"""HTTPS listeners: `tls.certificateRefs` to `kubernetes.io/tls` Secrets become the listener's
certificates; refs that do not resolve are reported with the listener condition's reason and
left out; the xDS listener gets one TLS filter chain per HTTPS listener, keys never rendered."""

from __future__ import annotations

import base64

import pytest

from tests.certs import Authority, Leaf
from tests.engine.compile.builders import (
    GW_V1,
    Raw,
    compile_objects,
    mk_gateway,
    mk_gateway_class,
    mk_listener,
)
from turnout.engine import ir
from turnout.engine.compile import CompileResult
from turnout.engine.render import dump_json, dump_yaml, to_data
from turnout.engine.xds import translate

CA = Authority()
FOO = CA.leaf("foo.example.com")
WILD = CA.leaf("*.example.com")


def secret(ns: str, name: str, leaf: Leaf, *, type_: str = "kubernetes.io/tls") -> Raw:
    data = {
        "tls.crt": base64.b64encode(leaf.chain_pem).decode(),
        "tls.key": base64.b64encode(leaf.key_pem).decode(),
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": type_,
        "data": data,
    }


def https(name: str, port: int, *refs: Raw, hostname: str | None = None) -> Raw:
    li = mk_listener(name, port, protocol="HTTPS", hostname=hostname)
    li["tls"] = {"certificateRefs": list(refs)}
    return li


def gateway_listeners(result: CompileResult, port: int = 443) -> tuple[ir.Listener, ...]:
    table = result.table
    (parent,) = [p for p in table.parents if p.name == f"gateway/edge/gw:{port}"]
    assert isinstance(parent, ir.GatewayParent)
    return parent.listeners


def reasons(result: CompileResult) -> list[tuple[str, str]]:
    return [(d.reason, d.pos.path) for d in result.diagnostics]


def test_a_tls_secret_in_the_gateways_namespace_is_served() -> None:
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway(
            "edge", "gw", https("foo", 443, {"name": "foo-tls"}, hostname="foo.example.com")
        ),
        secret("edge", "foo-tls", FOO),
    )
    (li,) = gateway_listeners(result)
    assert li.tls is not None
    (pair,) = li.tls.certificates
    assert pair.chain_pem.encode() == FOO.chain_pem
    assert pair.key_pem.encode() == FOO.key_pem
    assert pair.names == ("foo.example.com",)
    assert reasons(result) == []


def test_private_keys_are_never_rendered() -> None:
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway("edge", "gw", https("foo", 443, {"name": "foo-tls"})),
        secret("edge", "foo-tls", FOO),
    )
    key_line = FOO.key_pem.decode().splitlines()[1]
    for text in (dump_yaml(to_data(result.table)), dump_json(to_data(result.table, camel=True))):
        assert "[redacted]" in text
        assert key_line not in text and "PRIVATE KEY" not in text
    resources = translate(result.table, client_namespace=None)
    rendered = dump_yaml(resources.to_dict())
    assert key_line not in rendered and "[redacted]" in rendered


@pytest.mark.parametrize(
    ("objects", "reason", "detail"),
    [
        ([], "InvalidCertificateRef", "not found"),
        ([secret("edge", "foo-tls", FOO, type_="Opaque")], "InvalidCertificateRef", "type Opaque"),
        ([secret("other", "foo-tls", FOO)], "RefNotPermitted", "ReferenceGrant"),
    ],
    ids=["missing", "not-tls-type", "cross-namespace-no-grant"],
)
def test_unresolved_refs_are_reported_and_left_out(
    objects: list[Raw], reason: str, detail: str
) -> None:
    ref: Raw = {"name": "foo-tls"}
    if objects and objects[0]["metadata"]["namespace"] == "other":  # type: ignore[index]
        ref["namespace"] = "other"
    result = compile_objects(
        mk_gateway_class(), mk_gateway("edge", "gw", https("foo", 443, ref)), *objects
    )
    (li,) = gateway_listeners(result)
    assert li.tls is not None and li.tls.certificates == ()
    ((got, path),) = reasons(result)
    assert (got, path) == (reason, "spec.listeners[0].tls.certificateRefs[0]")
    assert detail in str(result.diagnostics[0])


def test_a_key_that_is_not_the_certificates_is_refused() -> None:
    mixed = Leaf(FOO.chain_pem, WILD.key_pem, 0)
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway("edge", "gw", https("foo", 443, {"name": "foo-tls"})),
        secret("edge", "foo-tls", mixed),
    )
    (li,) = gateway_listeners(result)
    assert li.tls is not None and li.tls.certificates == ()
    assert "does not belong" in str(result.diagnostics[0])


def test_a_reference_grant_allows_a_secret_in_another_namespace() -> None:
    grant: Raw = {
        "apiVersion": GW_V1,
        "kind": "ReferenceGrant",
        "metadata": {"name": "certs", "namespace": "certs"},
        "spec": {
            "from": [
                {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "edge"}
            ],
            "to": [{"group": "", "kind": "Secret", "name": "foo-tls"}],
        },
    }
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway("edge", "gw", https("foo", 443, {"name": "foo-tls", "namespace": "certs"})),
        secret("certs", "foo-tls", FOO),
        grant,
    )
    (li,) = gateway_listeners(result)
    assert li.tls is not None and len(li.tls.certificates) == 1
    assert reasons(result) == []


def test_http_and_https_on_one_port_conflict_and_neither_is_served() -> None:
    """ "The implementation MUST NOT pick one conflicting Listener as the winner. ALL
    indistinct Listeners must not be accepted" (GatewaySpec.Listeners)."""
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway(
            "edge",
            "gw",
            mk_listener("plain", 443, hostname="a.example.com"),
            https("foo", 443, {"name": "foo-tls"}, hostname="foo.example.com"),
        ),
        secret("edge", "foo-tls", FOO),
    )
    assert [p.name for p in result.table.parents] == []
    assert reasons(result) == [
        ("ProtocolConflict", "spec.listeners[0].protocol"),
        ("ProtocolConflict", "spec.listeners[1].protocol"),
    ]


def test_xds_has_one_tls_chain_per_listener_most_specific_first() -> None:
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway(
            "edge",
            "gw",
            https("any", 443, {"name": "wild-tls"}),
            https("wild", 443, {"name": "wild-tls"}, hostname="*.example.com"),
            https("foo", 443, {"name": "foo-tls"}, hostname="foo.example.com"),
        ),
        secret("edge", "foo-tls", FOO),
        secret("edge", "wild-tls", WILD),
    )
    resources = translate(result.table, client_namespace=None)
    (listener,) = [lst for lst in resources.listeners if lst.name == "gateway/edge/gw:443"]
    chains = [(c.name, list(c.filter_chain_match.server_names)) for c in listener.filter_chains]
    assert chains == [("foo", ["foo.example.com"]), ("wild", ["*.example.com"]), ("any", [])]
    for chain in listener.filter_chains:
        assert chain.transport_socket.name == "envoy.transport_sockets.tls"
