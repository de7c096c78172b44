"""Look-up tables over one `Resources` snapshot, built once per compile.

The compiler asks "which Service is ns/name", "which grants exist in ns", "which endpoints
back this port", "is this Gateway ours"; this module answers from dicts so compile stays
linear in the number of objects. It holds no compiled state and does no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC

from turnout.engine.config import CONTROLLER_NAME
from turnout.engine.model import (
    EndpointSlice,
    FaultInjection,
    Gateway,
    GatewayClass,
    GRPCRoute,
    HTTPRoute,
    Loaded,
    Namespace,
    Pod,
    ReferenceGrant,
    Resources,
    Secret,
    Service,
    XBackendTrafficPolicy,
)

Route = HTTPRoute | GRPCRoute


@dataclass(slots=True)
class Index:
    services: dict[tuple[str, str], Loaded[Service]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], Loaded[Secret]] = field(default_factory=dict)
    namespaces: dict[str, Loaded[Namespace]] = field(default_factory=dict)
    gateways: dict[tuple[str, str], Loaded[Gateway]] = field(default_factory=dict)
    classes: dict[str, Loaded[GatewayClass]] = field(default_factory=dict)
    grants: dict[str, list[Loaded[ReferenceGrant]]] = field(default_factory=dict)
    slices: dict[tuple[str, str], list[Loaded[EndpointSlice]]] = field(default_factory=dict)
    accounts: dict[tuple[str, str], str] = field(default_factory=dict)
    """(namespace, pod name) -> the pod's service account."""
    faults: dict[tuple[str, str], Loaded[FaultInjection]] = field(default_factory=dict)
    policies: dict[tuple[str, str], Loaded[XBackendTrafficPolicy]] = field(default_factory=dict)
    routes: list[Loaded[HTTPRoute] | Loaded[GRPCRoute]] = field(default_factory=list)

    def namespace_labels(self, ns: str) -> dict[str, str]:
        """Labels of a namespace; when it is not among the inputs, only the label the API
        server always sets (`kubernetes.io/metadata.name`)."""
        labels = {"kubernetes.io/metadata.name": ns}
        loaded = self.namespaces.get(ns)
        if loaded is not None:
            labels.update(loaded.obj.metadata.labels)
        return labels

    def gateway_is_ours(self, gw: Gateway) -> bool | None:
        """True/False from the GatewayClass; None when the class is not among the inputs."""
        cls = self.classes.get(gw.spec.gateway_class_name)
        if cls is None:
            return None
        return cls.obj.spec.controller_name == CONTROLLER_NAME


def build_index(resources: Resources) -> Index:
    idx = Index()
    slices: defaultdict[tuple[str, str], list[Loaded[EndpointSlice]]] = defaultdict(list)
    grants: defaultdict[str, list[Loaded[ReferenceGrant]]] = defaultdict(list)
    for loaded in resources.objects:
        obj = loaded.obj
        key = (obj.namespace, obj.name)
        if isinstance(obj, Service):
            idx.services[key] = loaded  # type: ignore[assignment]
        elif isinstance(obj, Secret):
            idx.secrets[key] = loaded  # type: ignore[assignment]
        elif isinstance(obj, Namespace):
            idx.namespaces[obj.name] = loaded  # type: ignore[assignment]
        elif isinstance(obj, Pod):
            idx.accounts[key] = obj.spec.service_account_name
        elif isinstance(obj, Gateway):
            idx.gateways[key] = loaded  # type: ignore[assignment]
        elif isinstance(obj, GatewayClass):
            idx.classes[obj.name] = loaded  # type: ignore[assignment]
        elif isinstance(obj, ReferenceGrant):
            grants[obj.namespace].append(loaded)  # type: ignore[arg-type]
        elif isinstance(obj, EndpointSlice):
            svc = obj.service_name
            if svc:
                slices[(obj.namespace, svc)].append(loaded)  # type: ignore[arg-type]
        elif isinstance(obj, FaultInjection):
            idx.faults[key] = loaded  # type: ignore[assignment]
        elif isinstance(obj, XBackendTrafficPolicy):
            for ref in obj.spec.target_refs:
                if ref.group == "" and ref.kind == "Service":
                    idx.policies[(obj.namespace, ref.name)] = loaded  # type: ignore[assignment]
        elif isinstance(obj, HTTPRoute | GRPCRoute):
            idx.routes.append(loaded)  # type: ignore[arg-type]
    idx.slices = dict(slices)
    idx.grants = dict(grants)
    idx.routes.sort(key=route_order)
    return idx


_NEWEST = "9999-12-31T23:59:59+00:00"


def route_order(loaded: Loaded[HTTPRoute] | Loaded[GRPCRoute]) -> tuple[str, str, str]:
    """Gateway API tie-break: "The oldest Route based on creation timestamp. The Route
    appearing first in alphabetical order by {namespace}/{name}." A route without a
    creationTimestamp (an offline manifest) counts as newest."""
    obj = loaded.obj
    ts = obj.metadata.creation_timestamp
    if ts is None:
        stamp = _NEWEST
    else:
        stamp = (ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)).isoformat()
    return (stamp, f"{obj.namespace}/{obj.name}", obj.kind)
