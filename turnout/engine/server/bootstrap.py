"""The gRPC xDS bootstrap of a proxyless workload: which ADS server, and who the node is.

```
bootstrap_config(xds="127.0.0.1:18000", namespace="shop", workload="deployment/web")
  -> {"xds_servers": [{"server_uri", "channel_creds": [{"type": "insecure"}],
                       "server_features": ["xds_v3"]}],
      "node": {"id", "cluster", "metadata": {"namespace", "workload", ["labels"]}},
      "server_listener_resource_name_template": "grpc/server?xds.resource.listening_address=%s",
      "certificate_providers": {"turnout": file_watcher of CERTS/{cert,key,ca}.pem}  (--certs)
  ─> GRPC_XDS_BOOTSTRAP_CONFIG (or a file named by GRPC_XDS_BOOTSTRAP) of the client process
```

The node's `metadata.namespace` picks the client's consumer view (GAMMA) on the server. A
client then dials `xds:///NAME.NS.svc.cluster.local:PORT` (`service_target`), which is the
name of the Listener we serve for that Service port (docs/xds.md). A `grpc.server(xds=True)`
in the same process asks for the Listener the template names for its `IP:PORT`; the server
builds it from the policy that selects the node's namespace and `labels` (mTLS and RBAC,
docs/proxyless.md). Pure: nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping

from turnout.engine.config import CLUSTER_DOMAIN
from turnout.engine.xds.grpc_security import CERTIFICATE_INSTANCE, SERVER_LISTENER_TEMPLATE

CERTIFICATE_PROVIDER = CERTIFICATE_INSTANCE
"""The bootstrap's certificate provider instance name (gRFC A29) for `--certs`."""


def bootstrap_config(
    *,
    xds: str,
    namespace: str,
    workload: str,
    node_id: str | None = None,
    certs: str | None = None,
    labels: Mapping[str, str] | None = None,
    refresh_interval_s: int = 60,
    admin: str | None = None,
) -> dict[str, object]:
    """The bootstrap JSON (as data) for `workload` ("deployment/NAME") in `namespace`;
    with `certs`, a `file_watcher` certificate provider reading what `mesh identity agent
    --out CERTS` writes every `refresh_interval_s`; `labels`, the workload's pod labels;
    `admin`, the ``HOST:PORT`` serving the workload's /metrics (node metadata ``admin``, as
    our proxies report theirs: the control plane lists it for Prometheus)."""
    kind, _, name = workload.partition("/")
    metadata: dict[str, object] = {"namespace": namespace, "workload": workload}
    if labels:
        metadata["labels"] = dict(sorted(labels.items()))
    if admin:
        metadata["admin"] = admin
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
            "metadata": metadata,
        },
        "server_listener_resource_name_template": SERVER_LISTENER_TEMPLATE,
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
                    "refresh_interval": f"{refresh_interval_s}s",
                },
            }
        }
    return config


def service_target(name: str, namespace: str, port: int) -> str:
    """The `xds:///` target a proxyless client dials for a Service port."""
    return f"xds:///{name}.{namespace}.svc.{CLUSTER_DOMAIN}:{port}"
