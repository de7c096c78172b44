"""Clusters and their endpoints as the proxy needs them: `Cluster` + `ClusterLoadAssignment`.

```
Cluster (type EDS, ADS config source, HTTP/2 options, metadata turnout.retryBudget)
ClusterLoadAssignment (one LocalityLbEndpoints per zone, health_status)
        ──clusters_from_xds──> {name: ClusterInfo(http2, endpoints, retry_budget)}
```

Only what docs/xds.md produces is accepted: EDS clusters fed over ADS. Endpoint selection,
health checking and connection pools belong to the balancer, not here; an assignment for an
unknown cluster is ignored (SotW may deliver it before the cluster is gone everywhere).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import json_format

from turnout.proxy.config import METADATA_NAMESPACE
from turnout.proxy.errors import TableError

log = logging.getLogger(__name__)

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_HEALTHY = 1  # envoy.config.core.v3.HealthStatus.HEALTHY
_UNKNOWN = 0  # endpoints without a status are treated as healthy, as Envoy does

T_co = TypeVar("T_co", covariant=True)


class ByCluster(Protocol[T_co]):
    """Per-cluster lookup: a `Balancers`/`Budgets`, or a mapping snapshot of one."""

    def get(self, cluster: str, /) -> T_co | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    address: str
    port: int
    healthy: bool
    zone: str | None = None
    """Locality zone; None = unknown."""
    identity: str | None = None
    """The server identity mesh TLS expects of it (LbEndpoint metadata
    ``turnout.identity``; docs/xds.md "Endpoint identities"); None: plaintext."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBudget:
    """From Cluster metadata ``turnout.retryBudget`` (GEP-3388 / Linkerd budget)."""

    percent: int
    interval_ms: int
    min_retry_count: int
    min_retry_interval_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterInfo:
    name: str
    """``NS/NAME:PORT`` or ``turnout/invalid``."""
    http2: bool = False
    """True for h2c/grpc upstreams (HTTP/2 protocol options present)."""
    endpoints: tuple[Endpoint, ...] = ()
    endpoints_known: bool = False
    """False until a ClusterLoadAssignment for the cluster arrived."""
    retry_budget: RetryBudget | None = None
    """None = no budget in the metadata."""


def _retry_budget(cluster: Any, *, where: str) -> RetryBudget | None:
    meta = cluster.metadata.filter_metadata
    if METADATA_NAMESPACE not in meta:
        return None
    raw = json_format.MessageToDict(meta[METADATA_NAMESPACE]).get("retryBudget")
    if raw is None:
        return None
    try:
        return RetryBudget(
            percent=int(raw["percent"]),
            interval_ms=int(raw["intervalMs"]),
            min_retry_count=int(raw["minRetryCount"]),
            min_retry_interval_ms=int(raw["minRetryIntervalMs"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        field = f'metadata.filter_metadata["{METADATA_NAMESPACE}"].retryBudget'
        raise TableError(
            where,
            field,
            f"want {{percent, intervalMs, minRetryCount, minRetryIntervalMs}}, got {raw!r}",
        ) from exc


def _http2(cluster: Any, *, where: str) -> bool:
    opts = cluster.typed_extension_protocol_options
    if HTTP_PROTOCOL_OPTIONS not in opts:
        return False
    hpo = http_protocol_options_pb2.HttpProtocolOptions()
    if not opts[HTTP_PROTOCOL_OPTIONS].Unpack(hpo):
        field = f'typed_extension_protocol_options["{HTTP_PROTOCOL_OPTIONS}"]'
        raise TableError(where, field, f"not a {HTTP_PROTOCOL_OPTIONS}")
    if hpo.WhichOneof("upstream_protocol_options") != "explicit_http_config":
        return False
    return bool(hpo.explicit_http_config.WhichOneof("protocol_config") == "http2_protocol_options")


def _endpoints(cla: Any) -> tuple[Endpoint, ...]:
    out = []
    for locality in cla.endpoints:
        zone = locality.locality.zone or None
        for lb in locality.lb_endpoints:
            sock = lb.endpoint.address.socket_address
            out.append(
                Endpoint(
                    address=sock.address,
                    port=sock.port_value,
                    healthy=lb.health_status in (_HEALTHY, _UNKNOWN),
                    zone=zone,
                    identity=_identity(lb, cla.cluster_name),
                )
            )
    return tuple(out)


def _identity(lb: Any, cluster: str) -> str | None:
    meta = lb.metadata.filter_metadata
    if METADATA_NAMESPACE not in meta:
        return None
    value = meta[METADATA_NAMESPACE].fields.get("identity")
    if value is None:
        return None
    if value.WhichOneof("kind") != "string_value" or not value.string_value:
        raise TableError(
            f'ClusterLoadAssignment "{cluster}"',
            f'lb_endpoints.metadata.filter_metadata["{METADATA_NAMESPACE}"].identity',
            "want a non-empty string",
        )
    return str(value.string_value)


def clusters_from_xds(
    clusters: Iterable[Any], load_assignments: Iterable[Any]
) -> dict[str, ClusterInfo]:
    """Name -> `ClusterInfo`; raise `TableError` for a duplicate or non-EDS cluster."""
    assignments: dict[str, Any] = {}
    for cla in load_assignments:
        assignments[cla.cluster_name] = cla
    out: dict[str, ClusterInfo] = {}
    for cluster in clusters:
        where = f'Cluster "{cluster.name}"'
        if not cluster.name:
            raise TableError(where, "name", "empty")
        if cluster.name in out:
            raise TableError(where, "name", "duplicate cluster")
        if (
            cluster.WhichOneof("cluster_discovery_type") != "type"
            or cluster.type != cluster_pb2.Cluster.EDS
        ):
            raise TableError(where, "type", "only EDS clusters are supported (docs/xds.md)")
        cla = assignments.pop(cluster.name, None)
        out[cluster.name] = ClusterInfo(
            name=cluster.name,
            http2=_http2(cluster, where=where),
            endpoints=_endpoints(cla) if cla is not None else (),
            endpoints_known=cla is not None,
            retry_budget=_retry_budget(cluster, where=where),
        )
    for name in assignments:
        log.debug("load assignment ignored, no such cluster cluster=%s", name)
    return out
