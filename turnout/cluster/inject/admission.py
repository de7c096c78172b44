"""One AdmissionReview (admission.k8s.io/v1) in, its response out: the webhook's decisions.

```
review ──request.object (a Pod), request.namespace──> should_inject(pod, ns, ns annotations)
   enabled?  the pod's turnout.dev/inject, else its namespace's (pod wins either way)
   never:    kube-system & co., a pod that has the proxy already, hostNetwork,
             another mesh's sidecar
   yes ──sidecar.inject_pod──> json_patch(pod, injected) ──base64──> response.patch
response: {uid (echoed), allowed: true, [patchType: JSONPatch, patch], [warnings]}
```

The answer is always ``allowed: true``: the injector must never block a pod. Anything that
goes wrong is a warning in the response (kubectl shows it to whoever created the pod) and
the pod is created as it was sent. Only Pod CREATE requests are looked at; anything else
gets an empty allowed answer. Pure: no I/O (the namespace's annotations are passed in).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from turnout.cluster import names
from turnout.cluster.inject.patch import json_patch
from turnout.cluster.inject.settings import InjectSettings
from turnout.cluster.inject.sidecar import (
    Obj,
    inject_pod,
    is_injected,
    third_party_sidecar,
    workload_of,
)

log = logging.getLogger(__name__)

API_VERSION = "admission.k8s.io/v1"


class BadReview(ValueError):
    """Not an AdmissionReview at all (no `request.uid`): answered 400, as nothing can be
    echoed. A ValueError, not a `MeshError`: it never leaves the webhook's handler."""


@dataclass(frozen=True, slots=True)
class Decision:
    inject: bool
    reason: str
    """Why not (or "enabled on the pod" / "enabled on the namespace")."""
    warn: bool = False
    """Worth a warning to the user: injection was asked for and is not done."""


def request_of(review: object) -> Mapping[str, Any]:
    request = review.get("request") if isinstance(review, Mapping) else None
    if not isinstance(request, Mapping) or not isinstance(request.get("uid"), str):
        raise BadReview("want an AdmissionReview with request.uid")
    return request


def should_inject(
    pod: Mapping[str, Any], namespace: str, namespace_annotations: Mapping[str, str] | None
) -> Decision:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    own = (meta.get("annotations") or {}).get(names.INJECT_ANNOTATION)
    inherited = (namespace_annotations or {}).get(names.INJECT_ANNOTATION)
    if namespace in names.NEVER_INJECTED_NAMESPACES:
        return Decision(False, f'namespace "{namespace}" is never injected')
    if is_injected(spec):
        return Decision(False, "already injected")
    if own not in ("enabled", "disabled"):
        where, wanted = "namespace", inherited
    else:
        where, wanted = "pod", own
    if wanted != "enabled":
        return Decision(False, f"{names.INJECT_ANNOTATION} is not enabled")
    if spec.get("hostNetwork") is True:
        return Decision(False, '"hostNetwork: true": not injected', warn=True)
    if (other := third_party_sidecar(spec)) is not None:
        return Decision(False, f'known 3rd party sidecar "{other}": not injected', warn=True)
    return Decision(True, f"enabled on the {where}")


def review_response(
    review: Mapping[str, Any],
    *,
    settings: InjectSettings,
    namespace_annotations: Mapping[str, str] | None,
) -> Obj:
    """The AdmissionReview to answer `review` with (raises `BadReview` only)."""
    request = request_of(review)
    response: Obj = {"uid": request["uid"], "allowed": True}
    out: Obj = {
        "apiVersion": review.get("apiVersion") or API_VERSION,
        "kind": "AdmissionReview",
        "response": response,
    }
    kind = request.get("kind") or {}
    pod = request.get("object")
    if kind.get("kind") != "Pod" or request.get("operation") != "CREATE":
        return out
    if not isinstance(pod, Mapping):
        response["warnings"] = ["turnout injector: request.object is not a Pod; not injected"]
        return out
    namespace = str(request.get("namespace") or (pod.get("metadata") or {}).get("namespace") or "")
    workload = workload_of(pod)
    decision = should_inject(pod, namespace, namespace_annotations)
    log.info(
        "admission review uid=%s namespace=%s workload=%s inject=%s reason=%s",
        request["uid"], namespace, workload, decision.inject, decision.reason,
    )  # fmt: skip
    if not decision.inject:
        if decision.warn:
            response["warnings"] = [f"turnout injector: {workload}: {decision.reason}"]
        return out
    injected, warnings = inject_pod(
        pod, workload=workload, settings=settings, namespace_annotations=namespace_annotations
    )
    ops = json_patch(dict(pod), injected)
    response["patchType"] = "JSONPatch"
    response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
    if warnings:
        response["warnings"] = [f"turnout injector: {workload}: {w}" for w in warnings]
    return out


def failed_response(review: Mapping[str, Any], error: str) -> Obj:
    """Allowed as sent, with why nothing was injected: what an unexpected failure answers."""
    request = request_of(review)
    return {
        "apiVersion": review.get("apiVersion") or API_VERSION,
        "kind": "AdmissionReview",
        "response": {
            "uid": request["uid"],
            "allowed": True,
            "warnings": [f"turnout injector: not injected: {error}"],
        },
    }
