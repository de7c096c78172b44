"""A Gateway listener's TLS filter chains -> the proxy's `Terminator` (`listener_tls.py`), and
how a `Terminator` chooses (`transport/tls.py`)."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from tests.certs import Authority, Leaf
from turnout.proxy.errors import TableError
from turnout.proxy.listener_tls import terminator_from_listener
from turnout.proxy.transport.tls import Chain, Pair, Terminator, host_matches, load_context

CA = Authority()
WWW = CA.leaf("www.example.com")


def context(leaf: Leaf | None = WWW, **extra: Any) -> tls_pb2.DownstreamTlsContext:
    certs = (
        []
        if leaf is None
        else [
            common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(inline_bytes=leaf.chain_pem),
                private_key=base_pb2.DataSource(inline_string=leaf.key_pem.decode()),
            )
        ]
    )
    common = tls_pb2.CommonTlsContext(tls_certificates=certs, alpn_protocols=["http/1.1"])
    return tls_pb2.DownstreamTlsContext(common_tls_context=common, **extra)


def chain(
    names: list[str], ctx: Any = None, *, socket: str = "envoy.transport_sockets.tls"
) -> listener_components_pb2.FilterChain:
    packed = any_pb2.Any()
    packed.Pack(ctx if ctx is not None else context())
    return listener_components_pb2.FilterChain(
        name=f"chain-{'-'.join(names) or 'any'}",
        filter_chain_match=listener_components_pb2.FilterChainMatch(server_names=names),
        transport_socket=base_pb2.TransportSocket(name=socket, typed_config=packed),
    )


def listener(*chains: listener_components_pb2.FilterChain) -> listener_pb2.Listener:
    return listener_pb2.Listener(name="gateway/shop/public:443", filter_chains=chains)


def test_plain_chains_give_no_terminator() -> None:
    assert terminator_from_listener(listener(listener_components_pb2.FilterChain())) is None


def test_chains_load_their_certificates_in_order() -> None:
    term = terminator_from_listener(listener(chain(["www.example.com"]), chain([])))
    assert term is not None
    assert [c.server_names for c in term.chains] == [("www.example.com",), ()]
    assert all(isinstance(c.context, ssl.SSLContext) for c in term.chains)


def test_a_chain_whose_certificate_does_not_load_refuses_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = CA.leaf("api.example.com")
    broken = context(Leaf(WWW.chain_pem, other.key_pem, 0))  # a key of another certificate
    term = terminator_from_listener(
        listener(chain(["www.example.com"], broken), chain(["api.example.com"], context(other)))
    )
    assert term is not None
    assert [c.context is None for c in term.chains] == [True, False]
    assert "tls certificate not loaded" in caplog.text
    no_certs = terminator_from_listener(listener(chain(["x.example.com"], context(None))))
    assert no_certs is not None and no_certs.chains[0].context is None


def _min(version: int) -> tls_pb2.DownstreamTlsContext:
    ctx = context()
    ctx.common_tls_context.tls_params.tls_minimum_protocol_version = version  # type: ignore[assignment]
    return ctx


def _max(version: int) -> tls_pb2.DownstreamTlsContext:
    ctx = context()
    ctx.common_tls_context.tls_params.tls_maximum_protocol_version = version  # type: ignore[assignment]
    return ctx


def _alpn() -> tls_pb2.DownstreamTlsContext:
    ctx = context()
    ctx.common_tls_context.alpn_protocols.append("spdy/3.1")
    return ctx


def _file_key() -> tls_pb2.DownstreamTlsContext:
    ctx = context()
    ctx.common_tls_context.tls_certificates[0].private_key.filename = "/etc/key.pem"
    return ctx


def _sds() -> tls_pb2.DownstreamTlsContext:
    ctx = context()
    ctx.common_tls_context.tls_certificate_sds_secret_configs.add(name="www")
    return ctx


P = common_pb2.TlsParameters
REFUSED = [
    (
        context(require_client_certificate=wrappers_pb2.BoolValue(value=True)),
        "typed_config.require_client_certificate",
    ),
    (context(session_timeout=duration_pb2.Duration(seconds=1)), None),
    (
        context(session_ticket_keys=common_pb2.TlsSessionTicketKeys(keys=[base_pb2.DataSource()])),
        "typed_config.session_ticket_keys",
    ),
    (context(ocsp_staple_policy=1), "typed_config.ocsp_staple_policy"),  # type: ignore[arg-type]
    (_min(P.TLSv1_1), "tls_params.tls_minimum_protocol_version"),
    (_max(P.TLSv1_2), "tls_params.tls_maximum_protocol_version"),
    (_alpn(), "common_tls_context.alpn_protocols"),
    (_file_key(), "tls_certificates[0].private_key"),
    (_sds(), "common_tls_context.tls_certificate_sds_secret_configs"),
]


@pytest.mark.parametrize(("ctx", "field"), REFUSED)
def test_what_the_proxy_cannot_honour_is_refused_by_field(ctx: Any, field: str | None) -> None:
    if field is None:  # accepted: no resumption across contexts happens anyway
        assert terminator_from_listener(listener(chain(["a.example.com"], ctx))) is not None
        return
    with pytest.raises(TableError) as err:
        terminator_from_listener(listener(chain(["a.example.com"], ctx)))
    assert err.value.resource == 'Listener "gateway/shop/public:443"'
    assert err.value.field.startswith("filter_chains[0].")
    assert field in err.value.field


def test_chains_are_all_tls_or_none_and_only_the_tls_socket() -> None:
    with pytest.raises(TableError, match="every filter chain has a transport_socket or none"):
        terminator_from_listener(
            listener(chain(["a.example.com"]), listener_components_pb2.FilterChain())
        )
    with pytest.raises(TableError, match=r"transport_socket\.name"):
        terminator_from_listener(
            listener(chain(["a.example.com"], socket="envoy.transport_sockets.raw"))
        )
    bad = chain(["a.example.com"])
    bad.filter_chain_match.destination_port.value = 443
    with pytest.raises(TableError, match=r"filter_chain_match\.destination_port"):
        terminator_from_listener(listener(bad))


@pytest.mark.parametrize(
    ("pattern", "host", "want"),
    [
        ("www.example.com", "www.example.com", True),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", ".example.com", False),
        ("*.example.com", "aexample.com", False),
        ("www.example.com", "www.example.com.evil", False),
    ],
)
def test_listener_hostnames_match_as_the_gateway_api_says(
    pattern: str, host: str, want: bool
) -> None:
    assert host_matches(pattern, host) is want


def test_choosing_prefers_exact_then_longer_wildcards_then_no_hostname() -> None:
    ctx = load_context((Pair(WWW.chain_pem, WWW.key_pem),))
    exact = Chain("exact", ["WWW.example.com"], ctx)
    short = Chain("short", ["*.example.com"], ctx)
    long = Chain("long", ["*.shop.example.com"], ctx)
    anyname = Chain("any", [], ctx)
    term = Terminator([short, exact, long, anyname])
    assert term.choose("www.example.com") is exact
    assert term.choose("WWW.EXAMPLE.COM.") is exact
    assert term.choose("a.shop.example.com") is long
    assert term.choose("shop.example.com") is short
    assert term.choose("example.org") is anyname
    assert term.choose(None) is anyname
    assert Terminator([exact]).choose(None) is None
    # a Host belongs to the chain its name would choose
    assert exact.allows("www.example.com:443") and not short.allows("www.example.com")
    assert short.allows("x.example.com") and not short.allows("x.shop.example.com")
    assert anyname.allows("10.1.2.3:8443") and anyname.allows("[::1]:443")
    assert not anyname.allows("www.example.com")


def test_identical_certificates_share_one_context() -> None:
    pairs = (Pair(WWW.chain_pem, WWW.key_pem),)
    assert load_context(pairs) is load_context((Pair(WWW.chain_pem, WWW.key_pem),))
