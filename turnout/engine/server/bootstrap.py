"""The gRPC xDS bootstrap of a proxyless workload: which ADS server, and who the node is.

```
bootstrap_config(xds="127.0.0.1:18000", namespace="shop", workload="deployment/web")
  -> {"xds_servers": [{"server_uri", "channel_creds": [{"type": "insecure"}],
                       "server_features": ["xds_v3"]}],
      "node": {"id", "cluster", "metadata": {"namespace", "workload"}}}
  ─> GRPC_XDS_BOOTSTRAP_CONFIG (or a file named by GRPC_XDS_BOOTSTRAP) of the client process
```

The node's `metadata.namespace` picks the client's consumer view (GAMMA) on the server. A
client then dials `xds:///NAME.NS.svc.cluster.local:PORT` (`service_target`), which is the
name of the Listener we serve for that Service port (docs/xds.md). Pure: nothing is written.
"""

from __future__ import annotations

from turnout.engine.config import CLUSTER_DOMAIN


def bootstrap_config(
    *, xds: str, namespace: str, workload: str, node_id: str | None = None
) -> dict[str, object]:
    """The bootstrap JSON (as data) for `workload` ("deployment/NAME") in `namespace`."""
    kind, _, name = workload.partition("/")
    return {
        "xds_servers": [
            {
                "server_uri": xds,
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {
            "id": node_id or f"grpc~{namespace}~{workload}",
            "cluster": name or kind,
            "metadata": {"namespace": namespace, "workload": workload},
        },
    }


def service_target(name: str, namespace: str, port: int) -> str:
    """The `xds:///` target a proxyless client dials for a Service port."""
    return f"xds:///{name}.{namespace}.svc.{CLUSTER_DOMAIN}:{port}"
