"""What the Kubernetes source lists and watches, and how one raw object becomes a model object.

```
WATCHED_KINDS: KindSpec(kind, group, version, plural, namespaced, parse)
      │ path(ns, name)        /apis/GROUP/VERSION[/namespaces/NS]/PLURAL[/NAME]
      v
raw object (JSON) ──key──> (namespace, name)
      │ parse_object          file ``k8s:<Kind>/<ns>/<name>``, doc 0 ──> engine.model
      v
(Loaded[Resource] | None, diagnostics)
```

`status_only_change` tells a route (or Gateway) edit that matters (spec, labels, ...) from one that only
moved its status or bookkeeping (`resourceVersion`, `managedFields`): our own status write
comes back on the watch, and recompiling for it would only feed the write-back loop.

Deliberately not here: requests (`api.py`), the watch loop (`watching.py`), validation
(schemas, CEL: the pipeline's job).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from turnout.engine.config import POLICY_GROUP
from turnout.engine.diagnostics import Diagnostic, SourcePos
from turnout.engine.model import Document, Loaded, Resource, parse_document

Raw = dict[str, Any]
"""A JSON object as the API server sends it (narrowed only by `engine.model`)."""

GW = "gateway.networking.k8s.io"
LINKERD = "policy.linkerd.io"
ISTIO = "security.istio.io"


@dataclass(frozen=True, slots=True, kw_only=True)
class KindSpec:
    """One watched collection."""

    kind: str
    group: str
    """API group; "" = core."""
    version: str
    plural: str
    namespaced: bool = True
    parse: bool = True
    """False: kept raw for an adapter (SMI), not run through `parse_document`."""
    field_selector: str | None = None
    """Sent with every list and watch (Secrets: only `kubernetes.io/tls` ones are read)."""
    qualified: bool = False
    """True: `key` names the group too (Linkerd and Istio both have an AuthorizationPolicy)."""

    @property
    def key(self) -> str:
        """The watched collection's name: the kind, or ``Kind.group`` when `qualified`; the
        source's per-kind state and file positions (``k8s:<key>/<ns>/<name>``) use it."""
        return f"{self.kind}.{self.group}" if self.qualified else self.kind

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """Collection (all namespaces) or object path."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace and self.namespaced:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


WATCHED_KINDS: tuple[KindSpec, ...] = (
    KindSpec(kind="HTTPRoute", group=GW, version="v1", plural="httproutes"),
    KindSpec(kind="GRPCRoute", group=GW, version="v1", plural="grpcroutes"),
    KindSpec(kind="Gateway", group=GW, version="v1", plural="gateways"),
    KindSpec(
        kind="GatewayClass", group=GW, version="v1", plural="gatewayclasses", namespaced=False
    ),
    KindSpec(kind="ReferenceGrant", group=GW, version="v1beta1", plural="referencegrants"),
    KindSpec(kind="Service", group="", version="v1", plural="services"),
    KindSpec(
        kind="Secret",
        group="",
        version="v1",
        plural="secrets",
        field_selector="type=kubernetes.io/tls",
    ),
    KindSpec(kind="EndpointSlice", group="discovery.k8s.io", version="v1", plural="endpointslices"),
    KindSpec(kind="Namespace", group="", version="v1", plural="namespaces", namespaced=False),
    # Pods: only their service account matters (the identity of the endpoints they back)
    KindSpec(kind="Pod", group="", version="v1", plural="pods"),
    KindSpec(
        kind="FaultInjection", group=POLICY_GROUP, version="v1alpha1", plural="faultinjections"
    ),
    KindSpec(
        kind="XBackendTrafficPolicy",
        group="gateway.networking.x-k8s.io",
        version="v1alpha1",
        plural="xbackendtrafficpolicies",
    ),
    KindSpec(
        # v1alpha1: what Flagger's linkerd provider writes, and our CRD's storage version
        # (the SMI CRDs convert with strategy None, so this is how every object reads).
        kind="TrafficSplit",
        group="split.smi-spec.io",
        version="v1alpha1",
        plural="trafficsplits",
    ),
    KindSpec(
        kind="HTTPRouteGroup",
        group="specs.smi-spec.io",
        version="v1alpha4",
        plural="httproutegroups",
    ),
    # Authorization policy (docs/policy.md): Linkerd's kinds at their storage versions, and
    # Istio's security.istio.io/v1. Clusters without these CRDs report KindNotInstalled.
    KindSpec(kind="Server", group=LINKERD, version="v1beta3", plural="servers"),
    KindSpec(
        kind="ServerAuthorization",
        group=LINKERD,
        version="v1beta1",
        plural="serverauthorizations",
    ),
    KindSpec(
        kind="AuthorizationPolicy",
        group=LINKERD,
        version="v1alpha1",
        plural="authorizationpolicies",
    ),
    KindSpec(
        kind="MeshTLSAuthentication",
        group=LINKERD,
        version="v1alpha1",
        plural="meshtlsauthentications",
    ),
    KindSpec(
        kind="NetworkAuthentication",
        group=LINKERD,
        version="v1alpha1",
        plural="networkauthentications",
    ),
    KindSpec(
        kind="AuthorizationPolicy",
        group=ISTIO,
        version="v1",
        plural="authorizationpolicies",
        qualified=True,
    ),
    KindSpec(kind="PeerAuthentication", group=ISTIO, version="v1", plural="peerauthentications"),
    KindSpec(
        kind="RequestAuthentication", group=ISTIO, version="v1", plural="requestauthentications"
    ),
)
"""Every kind the compiler (or the SMI adapter) reads, at the version we list it."""

CRD_KIND = KindSpec(
    kind="CustomResourceDefinition",
    group="apiextensions.k8s.io",
    version="v1",
    plural="customresourcedefinitions",
    namespaced=False,
    parse=False,
)
"""Watched for the source's own sake (not published): a CRD installed after start-up wakes
the kind it serves at once, instead of at its next `missing_kind_retry_s` poll."""

ROUTE_KINDS = {k.kind: k for k in WATCHED_KINDS if k.kind in ("HTTPRoute", "GRPCRoute")}
GATEWAY_KIND = next(k for k in WATCHED_KINDS if k.kind == "Gateway")
GATEWAY_CLASS_KIND = next(k for k in WATCHED_KINDS if k.kind == "GatewayClass")
STATUS_KINDS = frozenset({*ROUTE_KINDS, GATEWAY_KIND.kind})
"""Kinds whose status Turnout writes (the ClusterRole's status rules)."""
STATUS_UNREAD = STATUS_KINDS | {"GatewayClass", "Service", "Namespace", "Pod"}
"""Kinds whose status the compiler never reads: a change only there publishes no snapshot
(our own status write comes back on the watch; a real cluster's Pods change status all
the time, and recompiling the cluster for each would starve the loop)."""


def object_key(raw: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of a raw object; "" for what is missing."""
    meta = raw.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def parse_object(
    spec: KindSpec, raw: Raw
) -> tuple[Loaded[Resource] | None, tuple[Diagnostic, ...]]:
    """One raw object as the model reads it, positioned at ``k8s:<Kind>/<ns>/<name>``."""
    ns, name = object_key(raw)
    where = f"{ns}/{name}" if spec.namespaced else name
    doc = Document(pos=SourcePos(f"k8s:{spec.key}/{where}", 0), raw=raw)
    loaded, diags = parse_document(doc)
    return loaded, tuple(diags)


_VOLATILE_META = ("resourceVersion", "managedFields")


def status_only_change(spec: KindSpec, old: Raw, new: Raw) -> bool:
    """True when an object of a `STATUS_UNREAD` kind changed only in status (and
    bookkeeping): nothing to recompile."""
    if spec.kind not in STATUS_UNREAD:
        return False

    def content(raw: Raw) -> Raw:
        meta = {k: v for k, v in (raw.get("metadata") or {}).items() if k not in _VOLATILE_META}
        return {**{k: v for k, v in raw.items() if k != "status"}, "metadata": meta}

    return content(old) == content(new)


def summary(spec: KindSpec, raw: Raw) -> Raw:
    """What the source keeps of an object: all of it, but for CRDs (`crd_summary`) and
    Pods, of which only the service account matters (a cluster's Pods are most of its
    objects, and their specs are large)."""
    if spec.kind == CRD_KIND.kind and spec.group == CRD_KIND.group:
        return crd_summary(raw)
    if spec.kind != "Pod" or spec.group:
        return raw
    meta = raw.get("metadata") or {}
    pod_spec = raw.get("spec") or {}
    kept = ("name", "namespace", "labels", "resourceVersion", "uid", "generation")
    out: Raw = {
        "apiVersion": raw.get("apiVersion"),
        "kind": raw.get("kind"),
        "metadata": {k: meta[k] for k in kept if k in meta},
    }
    if "serviceAccountName" in pod_spec:
        out["spec"] = {"serviceAccountName": pod_spec["serviceAccountName"]}
    return out


def crd_summary(raw: Raw) -> Raw:
    """What the source keeps of a CRD: its collection and served versions (a CRD's schema
    can be hundreds of kilobytes; none of it matters here)."""
    spec = raw.get("spec") or {}
    meta = raw.get("metadata") or {}
    versions = [
        {"name": v.get("name"), "served": v.get("served", True)}
        for v in spec.get("versions") or ()
        if isinstance(v, dict)
    ]
    return {
        **{k: raw[k] for k in ("apiVersion", "kind") if k in raw},
        "metadata": {k: meta[k] for k in ("name", "resourceVersion") if k in meta},
        "spec": {
            "group": spec.get("group"),
            "names": {"plural": (spec.get("names") or {}).get("plural")},
            "versions": versions,
        },
    }


def crd_serves(raw: Raw, spec: KindSpec) -> bool:
    """True when CRD `raw` serves `spec`'s collection at `spec`'s version."""
    crd = raw.get("spec") or {}
    if crd.get("group") != spec.group or (crd.get("names") or {}).get("plural") != spec.plural:
        return False
    return any(
        v.get("name") == spec.version and v.get("served", True) is not False
        for v in crd.get("versions") or ()
    )
