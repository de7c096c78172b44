"""The questions `mesh install --crds` and `mesh upgrade` ask a cluster.

```
--kubeconfig / --context, else in-cluster, else the default kubeconfig
   └─> GET one path (bounded) ──> (status, JSON body) | ClusterUnavailable(why)
list_crds:   GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions  -> {name: CRD}
read_secret: GET /api/v1/namespaces/NS/secrets/NAME                       -> {key: bytes} | None
read_object: GET any object's path                                        -> object | None
```

Optional for `--crds` by design: with no cluster (no kubeconfig, an API server that does not
answer in `TIMEOUT_S`, no permission to list CRDs) the command still prints its manifests and
says why nothing was checked. `mesh upgrade` needs the answers. Blocking; the command line
calls them a few times.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from turnout.cluster.install.errors import ClusterUnavailable
from turnout.engine.errors import SourceError
from turnout.engine.sources.k8s.api import api_client_from_environment

Raw = dict[str, Any]

CRDS_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
TIMEOUT_S = (3.0, 10.0)
"""Connect and read timeouts of each GET (seconds)."""


def _get(path: str, *, kubeconfig: str | None, context: str | None) -> tuple[int, Any]:
    """(HTTP status, the body as JSON, None if not JSON) of one GET."""
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
            resource_path=path,
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
    try:
        return int(status), json.loads(data)
    except ValueError:
        return int(status), None


def list_crds(*, kubeconfig: str | None = None, context: str | None = None) -> dict[str, Raw]:
    """The cluster's CRDs by name."""
    status, body = _get(CRDS_PATH, kubeconfig=kubeconfig, context=context)
    if status != 200:
        raise ClusterUnavailable(f"GET {CRDS_PATH}: HTTP {status}")
    try:
        items = body.get("items") or []
    except AttributeError:
        raise ClusterUnavailable(f"GET {CRDS_PATH}: not a list") from None
    return {str((c.get("metadata") or {}).get("name")): c for c in items}


def read_object(
    path: str, *, kubeconfig: str | None = None, context: str | None = None
) -> Raw | None:
    """The object at `path`; None if the cluster has none (404)."""
    status, body = _get(path, kubeconfig=kubeconfig, context=context)
    if status == 404:
        return None
    if status != 200 or not isinstance(body, dict):
        reason = body.get("message") if isinstance(body, dict) else None
        raise ClusterUnavailable(f"GET {path}: HTTP {status}" + (f": {reason}" if reason else ""))
    return body


def read_secret(
    namespace: str, name: str, *, kubeconfig: str | None = None, context: str | None = None
) -> dict[str, bytes] | None:
    """The decoded `data` of Secret `namespace/name`; None if there is no such Secret."""
    path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
    secret = read_object(path, kubeconfig=kubeconfig, context=context)
    if secret is None:
        return None
    try:
        return {str(k): base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    except (binascii.Error, TypeError, AttributeError):
        raise ClusterUnavailable(f"Secret {namespace}/{name}: data is not base64") from None
