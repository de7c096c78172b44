"""A Gateway Listener's TLS filter chains (docs/xds.md "HTTPS listeners") -> `Terminator`.

```
Listener.filter_chains[i] ─ filter_chain_match.server_names ─┐
   transport_socket "envoy.transport_sockets.tls" ─ DownstreamTlsContext
      common_tls_context.tls_certificates[] (inline PEM) ─ load_context ─┴─► Chain(name, names, ctx)
```

Either every chain has a transport socket (an HTTPS port) or none has (plain HTTP: None).
What Turnout's proxy cannot honour is refused with a `TableError` naming the field, so a
table never promises what the wire does not do: client certificates, session tickets,
OCSP, SDS and certificate providers, custom handshakers, a TLS maximum version, cipher,
curve or signature lists, versions below TLS 1.2, ALPN protocols other than h2 and
http/1.1 (offered as the table lists them; `h2` is served by `h2_server`), and
filter chain matches on anything but `server_names`. A certificate that does not load is
not an error of the table: that chain refuses its handshakes (with a warning naming it) and
the other chains serve, as the Gateway API wants of a listener with a bad certificateRef.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from turnout.proxy.config import TLS_TRANSPORT_SOCKET
from turnout.proxy.errors import TableError
from turnout.proxy.policies import unpack
from turnout.proxy.transport.tls import CertificateError, Chain, Pair, Terminator, load_context

log = logging.getLogger(__name__)

_DOWNSTREAM_OK = frozenset(
    {
        "common_tls_context",
        "disable_stateless_session_resumption",
        "disable_stateful_session_resumption",
        "session_timeout",
        "prefer_client_ciphers",
        "full_scan_certs_on_sni_mismatch",
    }
)
_COMMON_OK = frozenset({"tls_params", "tls_certificates", "alpn_protocols"})
_PARAMS_OK = frozenset({"tls_minimum_protocol_version", "tls_maximum_protocol_version"})
_CERT_OK = frozenset({"certificate_chain", "private_key"})
_MATCH_OK = frozenset({"server_names", "transport_protocol"})
_ALPN = ("http/1.1",)
"""What a chain without `alpn_protocols` offers."""
_ALPN_OK = frozenset({"h2", "http/1.1"})
_P = common_pb2.TlsParameters


def terminator_from_listener(lst: Any) -> Terminator | None:
    """The listener's TLS (None: plain HTTP), or `TableError`."""
    where = f'Listener "{lst.name}"'
    chains = list(lst.filter_chains)
    with_tls = [c.HasField("transport_socket") for c in chains]
    if not any(with_tls):
        return None
    if not all(with_tls):
        raise TableError(
            where, "filter_chains", "either every filter chain has a transport_socket or none"
        )
    return Terminator([_chain(c, where, f"filter_chains[{i}]") for i, c in enumerate(chains)])


def _chain(chain: Any, where: str, field: str) -> Chain:
    match = chain.filter_chain_match
    _only(match, _MATCH_OK, where, f"{field}.filter_chain_match")
    if match.transport_protocol not in ("", "tls"):
        raise TableError(where, f"{field}.filter_chain_match.transport_protocol", "want tls")
    sock = chain.transport_socket
    if sock.name != TLS_TRANSPORT_SOCKET:
        raise TableError(
            where,
            f"{field}.transport_socket.name",
            f"want {TLS_TRANSPORT_SOCKET}, got {sock.name!r}",
        )
    tfield = f"{field}.transport_socket.typed_config"
    context = unpack(sock.typed_config, tls_pb2.DownstreamTlsContext, where=where, field=tfield)
    _only(context, _DOWNSTREAM_OK, where, tfield)
    common = context.common_tls_context
    cfield = f"{tfield}.common_tls_context"
    _only(common, _COMMON_OK, where, cfield)
    _check_params(common.tls_params, where, f"{cfield}.tls_params")
    alpn = tuple(common.alpn_protocols) or _ALPN
    if not _ALPN_OK.issuperset(alpn) or len(set(alpn)) != len(alpn):
        raise TableError(
            where, f"{cfield}.alpn_protocols", f"only h2 and http/1.1, got {list(alpn)}"
        )
    pairs = tuple(
        _pair(c, where, f"{cfield}.tls_certificates[{k}]")
        for k, c in enumerate(common.tls_certificates)
    )
    name = chain.name or field
    return Chain(name, list(match.server_names), _load(pairs, where, name, alpn))


def _check_params(params: Any, where: str, field: str) -> None:
    _only(params, _PARAMS_OK, where, field)
    low = params.tls_minimum_protocol_version
    if low not in (_P.TLS_AUTO, _P.TLSv1_2, _P.TLSv1_3):
        raise TableError(where, f"{field}.tls_minimum_protocol_version", "below TLSv1_2")
    if params.tls_maximum_protocol_version not in (_P.TLS_AUTO, _P.TLSv1_3):
        raise TableError(where, f"{field}.tls_maximum_protocol_version", "only TLSv1_3 (or unset)")


def _pair(cert: Any, where: str, field: str) -> Pair:
    _only(cert, _CERT_OK, where, field)
    return Pair(
        chain_pem=_inline(cert.certificate_chain, where, f"{field}.certificate_chain"),
        key_pem=_inline(cert.private_key, where, f"{field}.private_key"),
    )


def _inline(source: Any, where: str, field: str) -> bytes:
    kind = source.WhichOneof("specifier")
    if kind == "inline_bytes":
        return bytes(source.inline_bytes)
    if kind == "inline_string":
        return str(source.inline_string).encode()
    raise TableError(where, field, f"only inline_bytes or inline_string, got {kind or 'nothing'}")


def _load(
    pairs: tuple[Pair, ...], where: str, name: str, alpn: tuple[str, ...]
) -> ssl.SSLContext | None:
    if not pairs:
        log.warning("tls listener without certificates refuses handshakes %s chain=%s", where, name)
        return None
    try:
        return load_context(pairs, alpn)
    except CertificateError as exc:
        log.warning("tls certificate not loaded %s chain=%s: %s", where, name, exc)
        return None


def _only(msg: Any, allowed: frozenset[str], where: str, field: str) -> None:
    for fd, _ in msg.ListFields():
        if fd.name not in allowed:
            raise TableError(where, f"{field}.{fd.name}", "not supported by Turnout's proxy")
