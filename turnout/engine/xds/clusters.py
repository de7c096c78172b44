"""IR clusters -> xDS `Cluster` (CDS) and `ClusterLoadAssignment` (EDS) resources.

Data flow: each `ir.Cluster` (one Service port) becomes

```
Cluster{type: EDS, eds_config: ads, lb_policy: ROUND_ROBIN,
        circuit_breakers.thresholds[0].retry_budget, [HTTP/2 options], metadata.turnout}
ClusterLoadAssignment{cluster_name, endpoints: one LocalityLbEndpoints per zone, weight 1}
```

plus, when a route points at it, the `turnout/invalid` cluster with an empty assignment.
Envoy's retry budget is concurrency-based (percent of active requests, minimum concurrent
retries), so the exact GEP-3388 budget (percent, window, minimum rate) also travels in
`metadata.filter_metadata["turnout"]["retryBudget"]` for our proxy.

A cluster whose endpoints all carry an identity (meshed) also gets `transport_socket`
`envoy.transport_sockets.tls` with an `UpstreamTlsContext` for proxyless gRPC clients (gRFC
A29, `grpc_security.upstream_tls_socket`): certificates from the bootstrap's `turnout`
provider, the endpoints' SPIFFE URIs as the SANs to match. gRPC has no
`transport_socket_matches`, so a cluster mixing meshed and plain endpoints stays plaintext.
Our proxy ignores it: it verifies each endpoint's own `turnout.identity` (docs/mtls.md).

It deliberately does not resolve endpoints (the compiler copied them from EndpointSlices) and
adds no health checking or outlier detection.
"""

from __future__ import annotations

from itertools import groupby

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from turnout.engine import ir
from turnout.engine.xds.grpc_security import upstream_tls_socket
from turnout.engine.xds.wire import (
    HTTP_PROTOCOL_OPTIONS,
    INVALID_CLUSTER,
    ads_config_source,
    metadata_from,
    pack,
)

_HTTP2_PROTOCOLS = frozenset({"h2c", "grpc"})


def eds_cluster(name: str) -> cluster_pb2.Cluster:
    """The part every cluster shares: EDS over ADS, round robin (what gRPC accepts)."""
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.DiscoveryType.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=ads_config_source()),
        lb_policy=cluster_pb2.Cluster.LbPolicy.ROUND_ROBIN,
    )


def cluster_from(cluster: ir.Cluster) -> cluster_pb2.Cluster:
    out = eds_cluster(cluster.name)
    budget = cluster.retry_budget
    out.circuit_breakers.CopyFrom(
        circuit_breaker_pb2.CircuitBreakers(
            thresholds=[
                circuit_breaker_pb2.CircuitBreakers.Thresholds(
                    retry_budget=circuit_breaker_pb2.CircuitBreakers.Thresholds.RetryBudget(
                        budget_percent=percent_pb2.Percent(value=budget.percent),
                        min_retry_concurrency=wrappers_pb2.UInt32Value(
                            value=budget.min_retry_count
                        ),
                    )
                )
            ]
        )
    )
    if cluster.protocol in _HTTP2_PROTOCOLS:
        options = http_protocol_options_pb2.HttpProtocolOptions(
            explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
                http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
            )
        )
        out.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))
    identities = [e.identity for e in cluster.endpoints]
    if identities and all(identities):
        socket = upstream_tls_socket(i for i in identities if i is not None)
        if socket is not None:
            out.transport_socket.CopyFrom(socket)
    out.metadata.CopyFrom(
        metadata_from(
            {
                "retryBudget": {
                    "percent": budget.percent,
                    "intervalMs": budget.interval_ms,
                    "minRetryCount": budget.min_retry_count,
                    "minRetryIntervalMs": budget.min_retry_interval_ms,
                },
                "protocol": cluster.protocol,
                "endpointsKnown": cluster.endpoints_known,
            }
        )
    )
    return out


def load_assignment_from(cluster: ir.Cluster) -> endpoint_pb2.ClusterLoadAssignment:
    """One locality per zone (no zone = the empty zone), zones sorted, endpoints in IR order.
    Every locality has `load_balancing_weight: 1`: gRPC drops localities without a weight."""
    out = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster.name)
    by_zone = sorted(cluster.endpoints, key=lambda e: e.zone or "")
    for zone, endpoints in groupby(by_zone, key=lambda e: e.zone or ""):
        out.endpoints.append(
            endpoint_components_pb2.LocalityLbEndpoints(
                locality=base_pb2.Locality(zone=zone),
                load_balancing_weight=wrappers_pb2.UInt32Value(value=1),
                lb_endpoints=[lb_endpoint(e) for e in endpoints],
            )
        )
    return out


def lb_endpoint(endpoint: ir.Endpoint) -> endpoint_components_pb2.LbEndpoint:
    health = (
        health_check_pb2.HealthStatus.HEALTHY
        if endpoint.ready
        else health_check_pb2.HealthStatus.UNHEALTHY
    )
    out = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(
                    address=endpoint.address, port_value=endpoint.port
                )
            )
        ),
        health_status=health,
    )
    if endpoint.identity is not None:  # meshed: the identity a client proxy must verify
        out.metadata.CopyFrom(metadata_from({"identity": endpoint.identity}))
    return out


def invalid_cluster() -> tuple[cluster_pb2.Cluster, endpoint_pb2.ClusterLoadAssignment]:
    """`turnout/invalid`: never any endpoint; the fault filter answers before it is used."""
    return eds_cluster(INVALID_CLUSTER), endpoint_pb2.ClusterLoadAssignment(
        cluster_name=INVALID_CLUSTER
    )
