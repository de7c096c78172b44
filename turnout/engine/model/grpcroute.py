"""GRPCRoute (gateway.networking.k8s.io v1), experimental-channel superset.

A GRPCRoute rule matches a gRPC service/method and headers; its filters are the HTTPRoute
filter types that gRPC supports (header modifiers, mirror, ExtensionRef).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictStr, StringConstraints

from turnout.engine.model.base import (
    BackendRef,
    HeaderName,
    Hostname,
    K8sModel,
    LocalObjectReference,
    ParentReference,
    Resource,
    RouteStatus,
    SectionName,
)
from turnout.engine.model.httproute import (
    HTTPHeaderFilter,
    HTTPRequestMirrorFilter,
    SessionPersistence,
)

GRPCName = Annotated[StrictStr, StringConstraints(max_length=1024)]
GRPCHeaderValue = Annotated[StrictStr, StringConstraints(min_length=1, max_length=4096)]


class GRPCMethodMatch(K8sModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    service: GRPCName | None = None
    method: GRPCName | None = None


class GRPCHeaderMatch(K8sModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: GRPCHeaderValue


class GRPCRouteMatch(K8sModel):
    method: GRPCMethodMatch | None = None
    headers: list[GRPCHeaderMatch] = Field(default_factory=list, max_length=16)


GRPC_FILTER_MEMBERS: dict[str, str] = {
    "RequestHeaderModifier": "request_header_modifier",
    "ResponseHeaderModifier": "response_header_modifier",
    "RequestMirror": "request_mirror",
    "ExtensionRef": "extension_ref",
}


class GRPCRouteFilter(K8sModel):
    type: Literal[
        "RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef"
    ]
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    extension_ref: LocalObjectReference | None = None


class GRPCBackendRef(BackendRef):
    filters: list[GRPCRouteFilter] = Field(default_factory=list, max_length=16)


class GRPCRouteRule(K8sModel):
    name: SectionName | None = None
    matches: list[GRPCRouteMatch] = Field(default_factory=list, max_length=64)
    filters: list[GRPCRouteFilter] = Field(default_factory=list, max_length=16)
    backend_refs: list[GRPCBackendRef] = Field(default_factory=list, max_length=16)
    session_persistence: SessionPersistence | None = None


class GRPCRouteSpec(K8sModel):
    parent_refs: list[ParentReference] = Field(default_factory=list, max_length=32)
    use_default_gateways: Literal["All", "None"] | None = None
    hostnames: list[Hostname] = Field(default_factory=list, max_length=16)
    rules: list[GRPCRouteRule] = Field(default_factory=lambda: [GRPCRouteRule()], max_length=16)


class GRPCRoute(Resource):
    kind: Literal["GRPCRoute"] = "GRPCRoute"
    spec: GRPCRouteSpec = Field(default_factory=GRPCRouteSpec)
    status: RouteStatus | None = None
