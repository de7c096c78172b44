"""Look-up tables over one `Resources` snapshot, built once per compile.

The compiler asks "which Service is ns/name", "which grants exist in ns", "which endpoints
back this port", "is this Gateway ours"; this module answers from dicts so compile stays
linear in the number of objects. It holds no compiled state and does no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
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
    Resource,
    Resources,
    Secret,
    Service,
    XBackendTrafficPolicy,
)

Route = HTTPRoute | GRPCRoute

DepKey = tuple[str, str, str]
"""What a compile read, as (kind, namespace, name): ``("Service", "shop", "web")``; a
namespace's grants are ``("grants", ns, "")``, a Service's slices ``("slices", ns, svc)``, a
Gateway's served listener ports ``("listeners", ns, gw)`` (`incremental.py` derives that one)."""


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
    orders: list[tuple[str, str, str]] = field(default_factory=list)
    """`route_order` of each of `routes` (the order they are sorted in)."""
    reads: set[DepKey] | None = None
    """While set, every accessor below adds the key it looked up, found or not (a Service
    created later must dirty the route that named it). The compiler reads the index only
    through them; the incremental compiler sets this around one unit."""

    def service(self, ns: str, name: str) -> Loaded[Service] | None:
        if self.reads is not None:
            self.reads.add(("Service", ns, name))
        return self.services.get((ns, name))

    def gateway(self, ns: str, name: str) -> Loaded[Gateway] | None:
        if self.reads is not None:
            self.reads.add(("Gateway", ns, name))
        return self.gateways.get((ns, name))

    def namespace(self, ns: str) -> Loaded[Namespace] | None:
        if self.reads is not None:
            self.reads.add(("Namespace", "", ns))
        return self.namespaces.get(ns)

    def grants_in(self, ns: str) -> list[Loaded[ReferenceGrant]]:
        if self.reads is not None:
            self.reads.add(("grants", ns, ""))
        return self.grants.get(ns, [])

    def fault(self, ns: str, name: str) -> Loaded[FaultInjection] | None:
        if self.reads is not None:
            self.reads.add(("FaultInjection", ns, name))
        return self.faults.get((ns, name))

    def secret(self, ns: str, name: str) -> Loaded[Secret] | None:
        if self.reads is not None:
            self.reads.add(("Secret", ns, name))
        return self.secrets.get((ns, name))

    def slices_of(self, ns: str, service: str) -> list[Loaded[EndpointSlice]]:
        if self.reads is not None:
            self.reads.add(("slices", ns, service))
        return self.slices.get((ns, service), [])

    def account(self, ns: str, pod: str) -> str | None:
        """The service account of Pod ns/pod, None when the Pod is not among the inputs."""
        if self.reads is not None:
            self.reads.add(("Pod", ns, pod))
        return self.accounts.get((ns, pod))

    def policy_for(self, ns: str, service: str) -> Loaded[XBackendTrafficPolicy] | None:
        if self.reads is not None:
            self.reads.add(("policy", ns, service))
        return self.policies.get((ns, service))

    def namespace_labels(self, ns: str) -> dict[str, str]:
        """Labels of a namespace; when it is not among the inputs, only the label the API
        server always sets (`kubernetes.io/metadata.name`)."""
        labels = {"kubernetes.io/metadata.name": ns}
        loaded = self.namespace(ns)
        if loaded is not None:
            labels.update(loaded.obj.metadata.labels)
        return labels

    def gateway_is_ours(self, gw: Gateway) -> bool | None:
        """True/False from the GatewayClass; None when the class is not among the inputs."""
        if self.reads is not None:
            self.reads.add(("GatewayClass", "", gw.spec.gateway_class_name))
        cls = self.classes.get(gw.spec.gateway_class_name)
        if cls is None:
            return None
        return cls.obj.spec.controller_name == CONTROLLER_NAME


def build_index(resources: Resources) -> Index:
    idx = Index()
    index_objects(idx, resources.objects)
    keyed = sorted((route_order(r), i) for i, r in enumerate(idx.routes))
    idx.routes = [idx.routes[i] for _, i in keyed]
    idx.orders = [k for k, _ in keyed]
    return idx


def index_objects(idx: Index, objects: Iterable[Loaded[Resource]]) -> bool:
    """Fill `idx` (routes unsorted); False when two objects had one key (the later one
    is kept, as the API server keeps the last apply)."""
    slices: defaultdict[tuple[str, str], list[Loaded[EndpointSlice]]] = defaultdict(list)
    grants: defaultdict[str, list[Loaded[ReferenceGrant]]] = defaultdict(list)
    unique = True
    for loaded in objects:
        obj = loaded.obj
        if isinstance(obj, HTTPRoute | GRPCRoute):  # most objects: tested first
            idx.routes.append(loaded)  # type: ignore[arg-type]
            continue
        key = (obj.namespace, obj.name)
        if isinstance(obj, Service):
            unique &= key not in idx.services
            idx.services[key] = loaded  # type: ignore[assignment]
        elif isinstance(obj, Secret):
            unique &= key not in idx.secrets
            idx.secrets[key] = loaded  # type: ignore[assignment]
        elif isinstance(obj, Namespace):
            unique &= obj.name not in idx.namespaces
            idx.namespaces[obj.name] = loaded  # type: ignore[assignment]
        elif isinstance(obj, Pod):
            unique &= key not in idx.accounts
            idx.accounts[key] = obj.spec.service_account_name
        elif isinstance(obj, Gateway):
            unique &= key not in idx.gateways
            idx.gateways[key] = loaded  # type: ignore[assignment]
        elif isinstance(obj, GatewayClass):
            unique &= obj.name not in idx.classes
            idx.classes[obj.name] = loaded  # type: ignore[assignment]
        elif isinstance(obj, ReferenceGrant):
            grants[obj.namespace].append(loaded)  # type: ignore[arg-type]
        elif isinstance(obj, EndpointSlice):
            svc = obj.service_name
            if svc:
                slices[(obj.namespace, svc)].append(loaded)  # type: ignore[arg-type]
        elif isinstance(obj, FaultInjection):
            unique &= key not in idx.faults
            idx.faults[key] = loaded  # type: ignore[assignment]
        elif isinstance(obj, XBackendTrafficPolicy):
            for ref in obj.spec.target_refs:
                if ref.group == "" and ref.kind == "Service":
                    unique &= (obj.namespace, ref.name) not in idx.policies
                    idx.policies[(obj.namespace, ref.name)] = loaded  # type: ignore[assignment]
    idx.slices = dict(slices)
    idx.grants = dict(grants)
    return unique


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
