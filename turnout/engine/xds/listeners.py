"""IR parents -> xDS `Listener`s and their `RouteConfiguration`s.

Data flow:

```
ServiceParent ─ view_of(client_namespace) ─> (route config name, ir.VirtualHost)
   └─ api_listener(authority) ── HCM{rds -> that name, http_filters}   (proxyless gRPC, proxy)
   └─ RouteConfiguration(name, [VirtualHost(domains as compiled: the Service's names and *)])
GatewayParent
   └─ Listener 0.0.0.0:PORT ── filter chain ── HCM{rds -> gateway/NS/NAME:PORT}
        HTTPS: one filter chain per listener, most specific hostname first:
        server_names [hostname] + tls transport socket (DownstreamTlsContext, certs inline)
   └─ RouteConfiguration(name, [one VirtualHost per IR vhost, domains as compiled])
```

The HCM's filters are the fault filter (empty config; routes and cluster weights override it),
the CORS filter when a route of the configuration uses CORS (marked optional: proxyless gRPC
has none), and the router, which must be last.

It deliberately does not build routes (`routes.py`) or clusters (`clusters.py`), and it does
not pick a client's view beyond the GAMMA consumer rule of docs/xds.md "Views per client".
"""

from __future__ import annotations

import re

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from turnout.engine import ir
from turnout.engine.xds.routes import fill_virtual_host
from turnout.engine.xds.wire import (
    CORS_FILTER,
    FAULT_FILTER,
    HCM_FILTER,
    ROUTER_FILTER,
    TLS_TRANSPORT_SOCKET,
    StructValue,
    ads_config_source,
    metadata_from,
    pack,
)

GATEWAY_BIND_ADDRESS = "0.0.0.0"

_STAT_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def consumer_route_config_name(authority: str, client_namespace: str) -> str:
    """`NAME.NS.svc.cluster.local:PORT@CLIENTNS`: the route config of a consumer view."""
    return f"{authority}@{client_namespace}"


def view_of(parent: ir.ServiceParent, client_namespace: str | None) -> tuple[str, ir.VirtualHost]:
    """The route configuration name and routes a client in `client_namespace` sees: its
    namespace's consumer routes when there are any (GAMMA), else the producer routes."""
    for view in parent.consumers:
        if client_namespace is not None and view.namespace == client_namespace:
            return consumer_route_config_name(parent.authority, view.namespace), view.vhost
    return parent.authority, parent.producer


def uses_cors(vhosts: tuple[ir.VirtualHost, ...]) -> bool:
    return any(
        isinstance(f, ir.CorsFilter)
        for vhost in vhosts
        for rule in vhost.rules
        for f in rule.filters
    )


def http_connection_manager(
    *, listener_name: str, route_config_name: str, cors: bool
) -> hcm_pb2.HttpConnectionManager:
    http_filters = [
        hcm_pb2.HttpFilter(name=FAULT_FILTER, typed_config=pack(fault_pb2.HTTPFault())),
    ]
    if cors:
        http_filters.append(
            hcm_pb2.HttpFilter(
                name=CORS_FILTER, typed_config=pack(cors_pb2.Cors()), is_optional=True
            )
        )
    # The router must be the last filter: Envoy and gRPC both reject anything else.
    http_filters.append(
        hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=pack(router_pb2.Router()))
    )
    return hcm_pb2.HttpConnectionManager(
        stat_prefix=_STAT_UNSAFE.sub("_", listener_name),
        rds=hcm_pb2.Rds(config_source=ads_config_source(), route_config_name=route_config_name),
        http_filters=http_filters,
    )


def service_resources(
    parent: ir.ServiceParent, *, client_namespace: str | None
) -> tuple[listener_pb2.Listener, route_pb2.RouteConfiguration]:
    """The api_listener named after the authority (the `xds:///` target) and its routes."""
    route_config_name, vhost = view_of(parent, client_namespace)
    listener = service_listener(parent, route_config_name=route_config_name, vhost=vhost)
    routes = route_pb2.RouteConfiguration(name=route_config_name)
    fill_virtual_host(routes.virtual_hosts.add(), vhost, domains=vhost.domains)
    return listener, routes


def service_listener(
    parent: ir.ServiceParent, *, route_config_name: str, vhost: ir.VirtualHost
) -> listener_pb2.Listener:
    """The api_listener of `parent` pointing at `route_config_name` (`vhost`: its routes)."""
    hcm = http_connection_manager(
        listener_name=parent.authority,
        route_config_name=route_config_name,
        cors=uses_cors((vhost,)),
    )
    listener = listener_pb2.Listener(
        name=parent.authority,
        api_listener=api_listener_pb2.ApiListener(api_listener=pack(hcm)),
    )
    if parent.addresses:
        # where clients connect to send to this Service (docs/xds.md "Destinations")
        meta: dict[str, StructValue] = {"addresses": list(parent.addresses), "port": parent.port}
        if parent.opaque_cluster is not None:
            meta["opaque"] = parent.opaque_cluster  # bytes forwarded untouched (docs/xds.md)
        listener.metadata.CopyFrom(metadata_from(meta))
    return listener


def gateway_resources(
    parent: ir.GatewayParent,
) -> tuple[listener_pb2.Listener, route_pb2.RouteConfiguration]:
    """A listener bound to `0.0.0.0:PORT` whose one filter chain is the HCM."""
    routes = route_pb2.RouteConfiguration(name=parent.name)
    for v in parent.vhosts:
        fill_virtual_host(routes.virtual_hosts.add(), v, domains=v.domains)
    return gateway_listener(parent), routes


def gateway_listener(parent: ir.GatewayParent) -> listener_pb2.Listener:
    hcm = http_connection_manager(
        listener_name=parent.name, route_config_name=parent.name, cors=uses_cors(parent.vhosts)
    )
    hcm_filter = listener_components_pb2.Filter(name=HCM_FILTER, typed_config=pack(hcm))
    tls_listeners = [li for li in parent.listeners if li.tls is not None]
    if tls_listeners:
        chains = [_tls_chain(li, hcm_filter) for li in _most_specific_first(tls_listeners)]
    else:
        chains = [listener_components_pb2.FilterChain(filters=[hcm_filter])]
    listener = listener_pb2.Listener(
        name=parent.name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(
                address=GATEWAY_BIND_ADDRESS, port_value=parent.port
            )
        ),
        filter_chains=chains,
    )
    return listener


def _most_specific_first(listeners: list[ir.Listener]) -> list[ir.Listener]:
    """Exact hostnames, then longer wildcards, then shorter ones, then no hostname."""

    def key(li: ir.Listener) -> tuple[int, int]:
        if li.hostname is None:
            return (2, 0)
        if li.hostname.startswith("*."):
            return (1, -len(li.hostname))
        return (0, 0)

    return sorted(listeners, key=key)


def _tls_chain(
    li: ir.Listener, hcm_filter: listener_components_pb2.Filter
) -> listener_components_pb2.FilterChain:
    """One HTTPS listener: SNI `server_names` from its hostname, its certificates inline."""
    assert li.tls is not None
    context = tls_pb2.DownstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_params=common_pb2.TlsParameters(
                tls_minimum_protocol_version=common_pb2.TlsParameters.TLSv1_2
            ),
            alpn_protocols=["h2", "http/1.1"],  # as Envoy Gateway: the proxy serves both
            tls_certificates=[
                common_pb2.TlsCertificate(
                    certificate_chain=base_pb2.DataSource(inline_bytes=c.chain_pem.encode()),
                    private_key=base_pb2.DataSource(inline_bytes=c.key_pem.encode()),
                )
                for c in li.tls.certificates
            ],
        )
    )
    return listener_components_pb2.FilterChain(
        name=li.name,
        filter_chain_match=listener_components_pb2.FilterChainMatch(
            server_names=[li.hostname] if li.hostname else []
        ),
        transport_socket=base_pb2.TransportSocket(
            name=TLS_TRANSPORT_SOCKET, typed_config=pack(context)
        ),
        filters=[hcm_filter],
    )
