"""Security for proxyless gRPC over xDS: TLS contexts (gRFC A29) and xDS servers (A36, A41).

```
client side   cluster whose endpoints all carry identities
                 -> upstream_tls_socket(identities): UpstreamTlsContext, certificates from the
                    bootstrap's "turnout" certificate provider, server SANs = their SPIFFE URIs
server side   LDS name "grpc/server?xds.resource.listening_address=IP:PORT" + node metadata
              (namespace, labels)
                 -> grpc_server_listener(policy, name=..., namespace, labels)
                    Listener{address IP:PORT, one filter chain:
                      [transport_socket: DownstreamTlsContext]   STRICT only
                      HttpConnectionManager{route_config inline (every path, non-forwarding),
                        http_filters: [rbac deny], rbac allow, router}}
```

A gRPC server cannot tell TLS from plaintext on one port (A36: `transport_protocol` only
matches `raw_buffer`, listener filters are refused), so a port is mTLS or plaintext:
STRICT serves mTLS with a client certificate required, DISABLE plaintext, and PERMISSIVE
(also what no PeerAuthentication means) plaintext with a warning that says why and what to
do (Istio's proxyless servers make the same choice). Which mode applies is Istio's precedence
(`mtls_mode`). Pure: the ADS server calls these per stream and logs the warnings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from turnout.engine.authorization import selects
from turnout.engine.ir_policy import MtlsMode, PeerAuthn, PolicyTable
from turnout.engine.xds.grpc_rbac import rbac_filters, spiffe_uri
from turnout.engine.xds.wire import HCM_FILTER, ROUTER_FILTER, TLS_TRANSPORT_SOCKET, pack

CERTIFICATE_INSTANCE = "turnout"
"""The bootstrap certificate provider instance (`mesh bootstrap --certs`) every context names."""
CERTIFICATE_NAME = "default"
SERVER_LISTENER_TEMPLATE = "grpc/server?xds.resource.listening_address=%s"
"""The bootstrap's `server_listener_resource_name_template` (`mesh bootstrap`)."""
SERVER_LISTENER_PREFIX = SERVER_LISTENER_TEMPLATE.removesuffix("%s")
SERVER_ROUTE_CONFIG = "grpc/server/inbound"


def _provider() -> common_pb2.CertificateProviderPluginInstance:
    return common_pb2.CertificateProviderPluginInstance(
        instance_name=CERTIFICATE_INSTANCE, certificate_name=CERTIFICATE_NAME
    )


def _common_tls(sans: Iterable[str] = ()) -> tls_pb2.CommonTlsContext:
    return tls_pb2.CommonTlsContext(
        tls_certificate_provider_instance=_provider(),
        validation_context=common_pb2.CertificateValidationContext(
            ca_certificate_provider_instance=_provider(),
            match_subject_alt_names=[string_pb2.StringMatcher(exact=s) for s in sans],
        ),
    )


# --------------------------------------------------------------------------- client side


def upstream_tls_socket(identities: Iterable[str]) -> base_pb2.TransportSocket | None:
    """mTLS to endpoints serving these identities (DNS form): the server's certificate must
    carry one of their SPIFFE URIs (gRPC checks URI SANs exactly). None when an identity has
    no SPIFFE form (it cannot be checked, so no TLS is asked for)."""
    uris = [spiffe_uri(i) for i in sorted(set(identities))]
    if not uris or any(u is None for u in uris):
        return None
    context = tls_pb2.UpstreamTlsContext(
        common_tls_context=_common_tls(u for u in uris if u is not None)
    )
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))


# --------------------------------------------------------------------------- the mode


@dataclass(frozen=True, slots=True, kw_only=True)
class ModeDecision:
    mode: MtlsMode
    decided_by: str | None
    """The PeerAuthentication that set it; None: nothing did (PERMISSIVE)."""


def _oldest(policies: list[PeerAuthn]) -> PeerAuthn | None:
    return min(policies, key=lambda p: (p.created, p.name), default=None)


def mtls_mode(
    table: PolicyTable, *, namespace: str, labels: Mapping[str, str], port: int
) -> ModeDecision:
    """Istio's PeerAuthentication precedence for `port` of a workload: its own policy (the
    port's mode, then the workload mode), its namespace's, the mesh-wide one; an UNSET mode
    inherits the next scope; nothing anywhere is PERMISSIVE."""
    own = _oldest(
        [
            p
            for p in table.peer_authentications
            if p.namespace == namespace and p.selector is not None and selects(p.selector, labels)
        ]
    )
    ns = _oldest(
        [p for p in table.peer_authentications if p.namespace == namespace and p.selector is None]
    )
    mesh = _oldest([p for p in table.peer_authentications if p.namespace is None])
    if own is not None:
        port_mode = dict(own.port_modes).get(port)
        if port_mode is not None:
            return ModeDecision(mode=port_mode, decided_by=own.name)
    for scope in (own, ns, mesh):
        if scope is not None and scope.mode is not None:
            return ModeDecision(mode=scope.mode, decided_by=scope.name)
    return ModeDecision(mode="PERMISSIVE", decided_by=None)


def permissive_warning(decision: ModeDecision, *, namespace: str, port: int) -> str | None:
    """Why a PERMISSIVE port of a proxyless gRPC server is served in plaintext (None: not
    PERMISSIVE)."""
    if decision.mode != "PERMISSIVE":
        return None
    by = decision.decided_by or "no PeerAuthentication (the default)"
    return (
        f"port {port} of a proxyless gRPC server in namespace {namespace} is PERMISSIVE "
        f"({by}); a gRPC server cannot accept plaintext and TLS on one port (gRFC A36), so "
        "it is served in plaintext and RBAC rules that name identities never match: set a "
        "PeerAuthentication mode STRICT for mTLS, or DISABLE to say plaintext is meant"
    )


# --------------------------------------------------------------------------- server side


def listening_address(name: str) -> tuple[str, int] | None:
    """(ip, port) of a server Listener name (`SERVER_LISTENER_TEMPLATE`), else None."""
    if not name.startswith(SERVER_LISTENER_PREFIX):
        return None
    host, sep, port = name.removeprefix(SERVER_LISTENER_PREFIX).rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def downstream_tls_socket(*, require_client_certificate: bool) -> base_pb2.TransportSocket:
    context = tls_pb2.DownstreamTlsContext(
        common_tls_context=_common_tls(),
        require_client_certificate=wrappers_pb2.BoolValue(value=require_client_certificate),
    )
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))


def inbound_route_config() -> route_pb2.RouteConfiguration:
    """Every call reaches the server's own handlers (no forwarding: A36 servers require
    `non_forwarding_action`)."""
    return route_pb2.RouteConfiguration(
        name=SERVER_ROUTE_CONFIG,
        virtual_hosts=[
            rc.VirtualHost(
                name="inbound",
                domains=["*"],
                routes=[
                    rc.Route(
                        name="inbound/all",
                        match=rc.RouteMatch(prefix=""),
                        non_forwarding_action=rc.NonForwardingAction(),
                    )
                ],
            )
        ],
    )


def grpc_server_listener(
    table: PolicyTable,
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    mode: MtlsMode | None = None,
) -> listener_pb2.Listener | None:
    """The Listener a grpcio xDS server asks for as `name`; `mode` None: `mtls_mode` decides.
    None when `name` is not a server Listener name."""
    address = listening_address(name)
    if address is None:
        return None
    host, port = address
    if mode is None:
        mode = mtls_mode(table, namespace=namespace, labels=labels, port=port).mode
    filters = rbac_filters(table, namespace=namespace, labels=labels, port=port)
    filters.append(hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=pack(router_pb2.Router())))
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix="grpc_server",
        route_config=inbound_route_config(),
        http_filters=filters,
    )
    chain = listener_components_pb2.FilterChain(
        name="inbound",
        filters=[listener_components_pb2.Filter(name=HCM_FILTER, typed_config=pack(hcm))],
    )
    if mode == "STRICT":
        chain.transport_socket.CopyFrom(downstream_tls_socket(require_client_certificate=True))
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=host, port_value=port)
        ),
        filter_chains=[chain],
    )
