"""The one question `mesh install --crds` asks a cluster: which CRDs it has.

```
--kubeconfig / --context, else in-cluster, else the default kubeconfig
   └─> GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions (one LIST, bounded)
          └─> {name: CRD} | ClusterUnavailable(why)
```

Optional by design: with no cluster (no kubeconfig, an API server that does not answer in
`TIMEOUT_S`, no permission to list CRDs) the command still prints its manifests and says
why nothing was checked. Blocking; the command line calls it once.
"""

from __future__ import annotations

import json
from typing import Any

from turnout.cluster.install.errors import ClusterUnavailable
from turnout.engine.errors import SourceError
from turnout.engine.sources.k8s.api import api_client_from_environment

Raw = dict[str, Any]

CRDS_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
TIMEOUT_S = (3.0, 10.0)
"""Connect and read timeouts of the LIST (seconds)."""


def list_crds(*, kubeconfig: str | None = None, context: str | None = None) -> dict[str, Raw]:
    """The cluster's CRDs by name."""
    try:
        # a kubeconfig named on the command line wins over the pod's service account
        in_cluster = False if kubeconfig or context else None
        api = api_client_from_environment(
            kubeconfig=kubeconfig, context=context, in_cluster=in_cluster
        )
    except SourceError as exc:
        raise ClusterUnavailable(str(exc).splitlines()[0]) from None
    try:
        method, url, headers, _body, _ = api.param_serialize(
            method="GET",
            resource_path=CRDS_PATH,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        resp = api.call_api(method, url, header_params=headers, _request_timeout=TIMEOUT_S)
        data = resp.response.data
        status = resp.response.status
    except Exception as exc:  # urllib3/kubernetes errors: only "unreachable" matters here
        raise ClusterUnavailable(f"{api.configuration.host}: {type(exc).__name__}") from None
    finally:
        api.close()
    if status != 200:
        raise ClusterUnavailable(f"GET {CRDS_PATH}: HTTP {status}")
    try:
        items = json.loads(data).get("items") or []
    except (ValueError, AttributeError):
        raise ClusterUnavailable(f"GET {CRDS_PATH}: not a list") from None
    return {str((c.get("metadata") or {}).get("name")): c for c in items}
