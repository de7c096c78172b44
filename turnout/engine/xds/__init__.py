"""IR -> Envoy xDS resources: the only protobuf code in the engine (docs/xds.md is the contract).

```
RouteTable ─ translate(table, client_namespace=...) ─> XdsResources
               listeners.py  Listener + HCM (fault, [cors], router last), RouteConfiguration
               routes.py     VirtualHost, Route: matchers, actions, metadata
               filters.py    headers, rewrites, redirects, mirrors, fault, CORS
               clusters.py   Cluster (EDS over ADS), ClusterLoadAssignment
XdsResources ─ by_type_url() / packed() ─> engine.server (ADS)
             ─ check_grpc_compat()      ─> what proxyless grpcio would reject
```

It deliberately does no I/O and serves nothing: `engine.server` streams these resources.
"""

from __future__ import annotations

from turnout.engine.xds.grpc_compat import check_grpc_compat
from turnout.engine.xds.resources import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    LOAD_ASSIGNMENT_TYPE,
    ROUTE_CONFIGURATION_TYPE,
    TYPE_URLS,
    XdsResources,
)
from turnout.engine.xds.translator import translate
from turnout.engine.xds.wire import INVALID_CLUSTER, METADATA_KEY

__all__ = [
    "CLUSTER_TYPE",
    "INVALID_CLUSTER",
    "LISTENER_TYPE",
    "LOAD_ASSIGNMENT_TYPE",
    "METADATA_KEY",
    "ROUTE_CONFIGURATION_TYPE",
    "TYPE_URLS",
    "XdsResources",
    "check_grpc_compat",
    "translate",
]
