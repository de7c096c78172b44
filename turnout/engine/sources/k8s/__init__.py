"""`mesh serve --kubernetes`'s source: list+watch the API server, publish snapshots, write
route and Gateway status back.

```
kinds.py     KindSpec, WATCHED_KINDS: what is listed and watched; raw object -> model object
api.py       KubernetesApi: the kubernetes client on its own threads, retries, backoff,
             KubernetesApiError (the only place kubernetes and urllib3 errors are caught)
watching.py  KubernetesSource: LIST -> WATCH(rv) -> 410 relist; debounced snapshots
             ──on_snapshot(resources, diagnostics)──> start_kubernetes_source's callback
             ──ResourceSnapshot──> engine.plane.ControlPlane (compile, publish, status)
status.py    StatusWriter: our status.parents entries merged into each route, our Gateways'
             status (listeners, attachedRoutes, conditions) (GET, PUT, 409); StatusSync:
             what the last compile wants, kept written (retries, periodic resync)
lease.py     LeaderElector: client-go leader election on a coordination.k8s.io/v1 Lease;
             only its holder's StatusSync writes (`mesh serve --leader-elect`)
tokenreview.py  TokenReviewVerifier: a service account token -> its account, for the
             identity service (`mesh serve --kubernetes --identity-dir`)
```

Only this package (and `engine.sources`) uses the kubernetes client; it validates and
compiles nothing (the control plane does, one snapshot at a time).
"""

from __future__ import annotations

from turnout.engine.sources.k8s.api import (
    DEFAULT_KUBERNETES_SETTINGS,
    KubernetesApiError,
    KubernetesSettings,
    api_client_from_environment,
)
from turnout.engine.sources.k8s.kinds import ROUTE_KINDS, WATCHED_KINDS, KindSpec
from turnout.engine.sources.k8s.status import StatusWrite, merge_route_parents
from turnout.engine.sources.k8s.watching import (
    KubernetesSource,
    OnSnapshot,
    Snapshot,
    start_kubernetes_source,
)

__all__ = [
    "DEFAULT_KUBERNETES_SETTINGS",
    "ROUTE_KINDS",
    "WATCHED_KINDS",
    "KindSpec",
    "KubernetesApiError",
    "KubernetesSettings",
    "KubernetesSource",
    "OnSnapshot",
    "Snapshot",
    "StatusWrite",
    "api_client_from_environment",
    "merge_route_parents",
    "start_kubernetes_source",
]
