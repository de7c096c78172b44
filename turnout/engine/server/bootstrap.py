"""The gRPC xDS bootstrap of a proxyless workload: which ADS server, and who the node is.

```
bootstrap_config(xds="127.0.0.1:18000", namespace="shop", workload="deployment/web")
  -> {"xds_servers": [{"server_uri", "channel_creds": [{"type": "insecure"}],
                       "server_features": ["xds_v3"]}],
      "node": {"id", "cluster", "metadata": {"namespace", "workload"}},
      "certificate_providers": {"turnout": file_watcher of CERTS/{cert,key,ca}.pem}  (--certs)
  ─> GRPC_XDS_BOOTSTRAP_CONFIG (or a file named by GRPC_XDS_BOOTSTRAP) of the client process
```

The node's `metadata.namespace` picks the client's consumer view (GAMMA) on the server. A
client then dials `xds:///NAME.NS.svc.cluster.local:PORT` (`service_target`), which is the
name of the Listener we serve for that Service port (docs/xds.md). Pure: nothing is written.
"""

from __future__ import annotations

from turnout.engine.config import CLUSTER_DOMAIN

CERTIFICATE_PROVIDER = "turnout"
"""The bootstrap's certificate provider instance name (gRFC A29) for `--certs`."""


def bootstrap_config(
    *,
    xds: str,
    namespace: str,
    workload: str,
    node_id: str | None = None,
    certs: str | None = None,
) -> dict[str, object]:
    """The bootstrap JSON (as data) for `workload` ("deployment/NAME") in `namespace`;
    with `certs`, a `file_watcher` certificate provider reading what `mesh identity agent
    --out CERTS` writes."""
    kind, _, name = workload.partition("/")
    config: dict[str, object] = {
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
    if certs is not None:
        base = certs.rstrip("/")
        config["certificate_providers"] = {
            CERTIFICATE_PROVIDER: {
                "plugin_name": "file_watcher",
                "config": {
                    "certificate_file": f"{base}/cert.pem",
                    "private_key_file": f"{base}/key.pem",
                    "ca_certificate_file": f"{base}/ca.pem",
                    "refresh_interval": "60s",
                },
            }
        }
    return config


def service_target(name: str, namespace: str, port: int) -> str:
    """The `xds:///` target a proxyless client dials for a Service port."""
    return f"xds:///{name}.{namespace}.svc.{CLUSTER_DOMAIN}:{port}"
