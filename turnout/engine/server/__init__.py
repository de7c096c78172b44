"""The control plane's ADS server: published tables in, xDS streams out.

```
engine.sources ──publish(table, policy)──> AdsServer ── Snapshot(version, table, policy) ─┐
                                      │            view per client namespace,        │
                                      │            translated once (snapshots.py),   │
                                      │            + the policy's TypedStructs       │
                                      v                                              v
                 per ADS stream: StreamState (streams.py): subscriptions, nonces, ACK/NACK,
                 only changed types resent ──> DiscoveryResponse ──> proxies, grpcio, Envoy
                 per delta stream: DeltaStreamState (delta_streams.py): only changed
                 resources, by version ──> DeltaDiscoveryResponse ──> our proxies
bootstrap_config(...) ──> the gRPC xDS bootstrap a proxyless workload points at us with
admin.py: the control plane's admin port (aiohttp, imported on its own): /ready, /metrics,
          the served table and policy, the last change's findings (`mesh routes` reads them)
renders.py: /debug/table's bodies, rendered once per version on a thread of their own
targets.py: the Prometheus file_sd list of the proxies' admin ports (node metadata.admin)
prometheus.py: `mesh serve --prometheus`'s child `prometheus` scraping that list
```

Only this package (with `engine.xds` and the proxy's client) touches protobuf and grpc in the
engine; it knows nothing of Kubernetes or where tables come from (`engine.plane` publishes).
"""

from __future__ import annotations

from turnout.engine.server.ads import AdsServer, Server
from turnout.engine.server.ads_status import ServerStatus, StreamStatus
from turnout.engine.server.bootstrap import bootstrap_config, service_target
from turnout.engine.server.settings import ServerSettings
from turnout.engine.server.snapshots import Translator, default_translator
from turnout.engine.server.streams import Nack

__all__ = [
    "AdsServer",
    "Nack",
    "Server",
    "ServerSettings",
    "ServerStatus",
    "StreamStatus",
    "Translator",
    "bootstrap_config",
    "default_translator",
    "service_target",
]
