"""Gateway, GatewayClass and ReferenceGrant (gateway.networking.k8s.io), plus the route kinds
Turnout validates but does not route (TLSRoute, TCPRoute, UDPRoute)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, JsonValue, StrictStr, StringConstraints

from turnout.engine.model.base import (
    CONTROLLER,
    BackendRef,
    Group,
    Hostname,
    K8sModel,
    Kind,
    LabelSelector,
    LocalObjectReference,
    Name,
    Namespace,
    ParentReference,
    PortNumber,
    Resource,
    RouteStatus,
    SectionName,
)

ListenerProtocol = Annotated[
    StrictStr,
    StringConstraints(
        min_length=1,
        max_length=255,
        pattern=r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9]+$",
    ),
]
AddressType = Annotated[
    StrictStr,
    StringConstraints(
        min_length=1,
        max_length=253,
        pattern=r"^Hostname|IPAddress|NamedAddress|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$",
    ),
]


class RouteNamespaces(K8sModel):
    from_: Literal["All", "Selector", "Same"] = Field(default="Same", alias="from")
    selector: LabelSelector | None = None


class RouteGroupKind(K8sModel):
    group: Group = "gateway.networking.k8s.io"
    kind: Kind


class AllowedRoutes(K8sModel):
    namespaces: RouteNamespaces = Field(default_factory=RouteNamespaces)
    kinds: list[RouteGroupKind] = Field(default_factory=list, max_length=8)


class SecretObjectReference(K8sModel):
    group: Group = ""
    kind: Kind = "Secret"
    name: Name
    namespace: Namespace | None = None


class GatewayTLSConfig(K8sModel):
    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificate_refs: list[SecretObjectReference] = Field(default_factory=list, max_length=64)
    options: dict[str, str] = Field(default_factory=dict)
    frontend_validation: dict[str, JsonValue] | None = None


class Listener(K8sModel):
    name: SectionName
    hostname: Hostname | None = None
    port: PortNumber
    protocol: ListenerProtocol
    tls: GatewayTLSConfig | None = None
    allowed_routes: AllowedRoutes = Field(default_factory=AllowedRoutes)


class GatewayAddress(K8sModel):
    type: AddressType = "IPAddress"
    value: Annotated[StrictStr, StringConstraints(max_length=253)] | None = None
    """Optional in the CRD: when unset the implementation picks an address of `type`."""


class GatewaySpec(K8sModel):
    gateway_class_name: Annotated[StrictStr, StringConstraints(min_length=1, max_length=253)]
    listeners: list[Listener] = Field(min_length=1, max_length=64)
    addresses: list[GatewayAddress] = Field(default_factory=list, max_length=16)
    infrastructure: dict[str, JsonValue] | None = None
    tls: dict[str, JsonValue] | None = None
    allowed_listeners: dict[str, JsonValue] | None = None
    default_scope: Literal["All", "None"] | None = None


class Gateway(Resource):
    kind: Literal["Gateway"] = "Gateway"
    spec: GatewaySpec
    status: dict[str, JsonValue] | None = None


class ParametersReference(K8sModel):
    group: Group
    kind: Kind
    name: Name
    namespace: Namespace | None = None


class GatewayClassSpec(K8sModel):
    controller_name: Annotated[
        StrictStr, StringConstraints(min_length=1, max_length=253, pattern=CONTROLLER)
    ]
    parameters_ref: ParametersReference | None = None
    description: Annotated[StrictStr, StringConstraints(max_length=64)] | None = None


class GatewayClass(Resource):
    kind: Literal["GatewayClass"] = "GatewayClass"
    spec: GatewayClassSpec
    status: dict[str, JsonValue] | None = None


class ReferenceGrantFrom(K8sModel):
    group: Group
    kind: Kind
    namespace: Namespace


class ReferenceGrantTo(K8sModel):
    group: Group
    kind: Kind
    name: Name | None = None


class ReferenceGrantSpec(K8sModel):
    from_: list[ReferenceGrantFrom] = Field(alias="from", min_length=1, max_length=16)
    to: list[ReferenceGrantTo] = Field(min_length=1, max_length=16)


class ReferenceGrant(Resource):
    kind: Literal["ReferenceGrant"] = "ReferenceGrant"
    spec: ReferenceGrantSpec


class L4RouteRule(K8sModel):
    name: SectionName | None = None
    backend_refs: list[BackendRef] = Field(default_factory=list, max_length=16)


class TLSRouteSpec(K8sModel):
    parent_refs: list[ParentReference] = Field(default_factory=list, max_length=32)
    hostnames: list[Hostname] = Field(min_length=1, max_length=16)
    rules: list[L4RouteRule] = Field(min_length=1, max_length=16)
    use_default_gateways: Literal["All", "None"] | None = None


class TLSRouteSpecV1alpha2(TLSRouteSpec):
    hostnames: list[Hostname] = Field(default_factory=list, max_length=16)


class TLSRoute(Resource):
    """TLSRoute v1 (hostnames required) and v1alpha3; validated, not routed."""

    kind: Literal["TLSRoute"] = "TLSRoute"
    spec: TLSRouteSpec
    status: RouteStatus | None = None


class TLSRouteV1alpha2(Resource):
    kind: Literal["TLSRoute"] = "TLSRoute"
    spec: TLSRouteSpecV1alpha2
    status: RouteStatus | None = None


class L4RouteSpec(K8sModel):
    parent_refs: list[ParentReference] = Field(default_factory=list, max_length=32)
    rules: list[L4RouteRule] = Field(min_length=1, max_length=16)
    use_default_gateways: Literal["All", "None"] | None = None


class TCPRoute(Resource):
    """Validated, not routed."""

    kind: Literal["TCPRoute"] = "TCPRoute"
    spec: L4RouteSpec
    status: RouteStatus | None = None


class UDPRoute(Resource):
    """Validated, not routed."""

    kind: Literal["UDPRoute"] = "UDPRoute"
    spec: L4RouteSpec
    status: RouteStatus | None = None


_ = LocalObjectReference
