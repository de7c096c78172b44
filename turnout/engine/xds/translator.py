"""`translate`: a compiled `RouteTable` -> the xDS resources one client sees.

Data flow:

```
RouteTable.parents ──┬─ ServiceParent -> listeners.service_resources (view per client ns)
                     └─ GatewayParent -> listeners.gateway_resources
RouteTable.clusters ─── clusters.cluster_from / load_assignment_from
routes pointing at turnout/invalid ─> clusters.invalid_cluster
                                       └─> XdsResources (each list sorted by name)
```

A pure function like the compiler: same table, same resources, byte for byte, so the server
can skip pushes whose resources did not change. It deliberately does not check what it
produced against gRPC's rules (`grpc_compat.check_grpc_compat` does, in tests) and does not
prune clusters no route uses (the compiler emits only clusters that something references).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from envoy.config.route.v3 import route_components_pb2, route_pb2

from turnout.engine import ir
from turnout.engine.xds import clusters, listeners
from turnout.engine.xds.resources import XdsResources
from turnout.engine.xds.wire import INVALID_CLUSTER

log = logging.getLogger(__name__)


def translate(table: ir.RouteTable, *, client_namespace: str | None = None) -> XdsResources:
    """Render `table` for a client in `client_namespace` (None: no consumer routes apply)."""
    listener_list = []
    route_list = []
    for parent in table.parents:
        if isinstance(parent, ir.ServiceParent):
            listener, routes = listeners.service_resources(
                parent, client_namespace=client_namespace
            )
        else:
            listener, routes = listeners.gateway_resources(parent)
        listener_list.append(listener)
        route_list.append(routes)
    cluster_list = [clusters.cluster_from(c) for c in table.clusters]
    assignment_list = [clusters.load_assignment_from(c) for c in table.clusters]
    if _has_invalid_backend(table) and INVALID_CLUSTER in referenced_clusters(route_list):
        invalid, assignment = clusters.invalid_cluster()
        cluster_list.append(invalid)
        assignment_list.append(assignment)
    log.debug(
        "xds translated client_namespace=%s listeners=%d clusters=%d",
        client_namespace,
        len(listener_list),
        len(cluster_list),
    )
    return XdsResources(
        listeners=tuple(sorted(listener_list, key=lambda m: m.name)),
        route_configs=tuple(sorted(route_list, key=lambda m: m.name)),
        clusters=tuple(sorted(cluster_list, key=lambda m: m.name)),
        load_assignments=tuple(sorted(assignment_list, key=lambda m: m.cluster_name)),
    )


def referenced_clusters(route_configs: Iterable[route_pb2.RouteConfiguration]) -> set[str]:
    """Names of every cluster a route forwards to or mirrors to."""
    return {
        name
        for rc in route_configs
        for vhost in rc.virtual_hosts
        for route in vhost.routes
        for name in route_clusters(route)
    }


def route_clusters(route: route_components_pb2.Route) -> set[str]:
    """Names of the clusters one route forwards to or mirrors to."""
    if not route.HasField("route"):
        return set()
    action = route.route
    names = {cw.name for cw in action.weighted_clusters.clusters}
    names.update(m.cluster for m in action.request_mirror_policies)
    if action.cluster:
        names.add(action.cluster)
    return names


def _has_invalid_backend(table: ir.RouteTable) -> bool:
    """Whether any rule has an invalid backend: only those route to `turnout/invalid`, so
    without one the walk over every built route (30,000 for 10k routes) is skipped."""
    for parent in table.parents:
        if isinstance(parent, ir.ServiceParent):
            vhosts = (parent.producer, *(view.vhost for view in parent.consumers))
        else:
            vhosts = parent.vhosts
        for vhost in vhosts:
            for rule in vhost.rules:
                for backend in rule.backends:
                    if isinstance(backend.target, ir.InvalidBackend):
                        return True
    return False
