"""HTTPRoute (gateway.networking.k8s.io v1 and v1beta1), experimental-channel superset.

Mirrors `apis/v1/httproute_types.go`: every field of the standard channel plus the
experimental `rules[].retry` (GEP-1731), `rules[].name`, `rules[].sessionPersistence`,
the `ExternalAuth` filter and `useDefaultGateways`. Filters are one class with optional
members, exactly like the CRD's union; `engine.validate` checks the union's consistency.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictInt, StrictStr, StringConstraints

from turnout.engine.model.base import (
    HEADER_NAME,
    BackendObjectReference,
    BackendRef,
    Bool,
    Duration,
    HeaderName,
    HeaderValue,
    Hostname,
    HTTPMethod,
    Int32,
    K8sModel,
    LocalObjectReference,
    ParentReference,
    PortNumber,
    PreciseHostname,
    Resource,
    RouteStatus,
    SectionName,
)

PathValue = Annotated[StrictStr, StringConstraints(max_length=1024)]
QueryValue = Annotated[StrictStr, StringConstraints(min_length=1, max_length=1024)]
CorsOrigin = Annotated[
    StrictStr,
    StringConstraints(
        min_length=1,
        max_length=253,
        pattern=r"(^\*$)|(^(http(s)?):\/\/(((\*\.)?([a-zA-Z0-9\-]+\.)*[a-zA-Z0-9-]+|\*)(:([0-9]{1,5}))?)$)",
    ),
]
CorsHeader = Annotated[
    StrictStr, StringConstraints(min_length=1, max_length=256, pattern=HEADER_NAME)
]


class HTTPPathMatch(K8sModel):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: PathValue = "/"


class HTTPHeaderMatch(K8sModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: HeaderValue


class HTTPQueryParamMatch(K8sModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: QueryValue


class HTTPRouteMatch(K8sModel):
    path: HTTPPathMatch = Field(default_factory=HTTPPathMatch)
    headers: list[HTTPHeaderMatch] = Field(default_factory=list, max_length=16)
    query_params: list[HTTPQueryParamMatch] = Field(default_factory=list, max_length=16)
    method: HTTPMethod | None = None


class HTTPHeader(K8sModel):
    name: HeaderName
    value: HeaderValue


class HTTPHeaderFilter(K8sModel):
    set: list[HTTPHeader] = Field(default_factory=list, max_length=16)
    add: list[HTTPHeader] = Field(default_factory=list, max_length=16)
    remove: list[Annotated[StrictStr, StringConstraints(min_length=1)]] = Field(
        default_factory=list, max_length=16
    )


class HTTPPathModifier(K8sModel):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: PathValue | None = None
    replace_prefix_match: PathValue | None = None


class HTTPRequestRedirectFilter(K8sModel):
    scheme: Literal["http", "https"] | None = None
    hostname: PreciseHostname | None = None
    path: HTTPPathModifier | None = None
    port: PortNumber | None = None
    status_code: Literal[301, 302, 303, 307, 308] = 302


class HTTPURLRewriteFilter(K8sModel):
    hostname: PreciseHostname | None = None
    path: HTTPPathModifier | None = None


class Fraction(K8sModel):
    numerator: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]
    denominator: Annotated[StrictInt, Field(ge=1, le=2**31 - 1)] = 100


class HTTPRequestMirrorFilter(K8sModel):
    backend_ref: BackendObjectReference
    percent: Annotated[StrictInt, Field(ge=0, le=100)] | None = None
    fraction: Fraction | None = None


class HTTPCORSFilter(K8sModel):
    allow_origins: list[CorsOrigin] = Field(default_factory=list, max_length=64)
    allow_credentials: Bool | None = None
    allow_methods: list[Literal[HTTPMethod, "*"]] = Field(default_factory=list, max_length=9)
    allow_headers: list[CorsHeader] = Field(default_factory=list, max_length=64)
    expose_headers: list[CorsHeader] = Field(default_factory=list, max_length=64)
    max_age: Annotated[StrictInt, Field(ge=1, le=2**31 - 1)] = 5


class ForwardBody(K8sModel):
    max_size: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] | None = None


class GRPCAuthConfig(K8sModel):
    allowed_headers: list[StrictStr] = Field(default_factory=list, max_length=64)


class HTTPAuthConfig(K8sModel):
    path: (
        Annotated[
            StrictStr,
            StringConstraints(
                max_length=1024, pattern=r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$"
            ),
        ]
        | None
    ) = None
    allowed_headers: list[StrictStr] = Field(default_factory=list, max_length=64)
    allowed_response_headers: list[StrictStr] = Field(default_factory=list, max_length=64)


class HTTPExternalAuthFilter(K8sModel):
    protocol: Literal["HTTP", "GRPC"]
    backend_ref: BackendObjectReference
    grpc: GRPCAuthConfig | None = None
    http: HTTPAuthConfig | None = None
    forward_body: ForwardBody | None = None


FilterType = Literal[
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
    "RequestRedirect",
    "URLRewrite",
    "ExtensionRef",
    "CORS",
    "ExternalAuth",
]

FILTER_MEMBERS: dict[str, str] = {
    "RequestHeaderModifier": "request_header_modifier",
    "ResponseHeaderModifier": "response_header_modifier",
    "RequestMirror": "request_mirror",
    "RequestRedirect": "request_redirect",
    "URLRewrite": "url_rewrite",
    "ExtensionRef": "extension_ref",
    "CORS": "cors",
    "ExternalAuth": "external_auth",
}
"""Filter `type` -> the snake_case member that must be set for it (the CRD's union)."""


class HTTPRouteFilter(K8sModel):
    type: FilterType
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    request_redirect: HTTPRequestRedirectFilter | None = None
    url_rewrite: HTTPURLRewriteFilter | None = Field(default=None, alias="urlRewrite")
    extension_ref: LocalObjectReference | None = None
    cors: HTTPCORSFilter | None = None
    external_auth: HTTPExternalAuthFilter | None = None


class HTTPBackendRef(BackendRef):
    filters: list[HTTPRouteFilter] = Field(default_factory=list, max_length=16)


class HTTPRouteTimeouts(K8sModel):
    request: Duration | None = None
    backend_request: Duration | None = None


class HTTPRouteRetry(K8sModel):
    codes: list[Annotated[StrictInt, Field(ge=400, le=599)]] = Field(default_factory=list)
    attempts: Annotated[StrictInt, Field(ge=1, le=2**31 - 1)] | None = None
    backoff: Duration | None = None


class CookieConfig(K8sModel):
    name: HeaderName | None = None
    path: PathValue = "/"
    lifetime_type: Literal["Permanent", "Session"] = "Session"


class HeaderConfig(K8sModel):
    name: HeaderName


class SessionPersistence(K8sModel):
    type: Literal["Cookie", "Header"] = "Cookie"
    absolute_timeout: Duration | None = None
    cookie: CookieConfig | None = None
    header: HeaderConfig | None = None


class HTTPRouteRule(K8sModel):
    name: SectionName | None = None
    matches: list[HTTPRouteMatch] = Field(default_factory=lambda: [HTTPRouteMatch()], max_length=64)
    filters: list[HTTPRouteFilter] = Field(default_factory=list, max_length=16)
    backend_refs: list[HTTPBackendRef] = Field(default_factory=list, max_length=16)
    timeouts: HTTPRouteTimeouts | None = None
    retry: HTTPRouteRetry | None = None
    session_persistence: SessionPersistence | None = None


class HTTPRouteSpec(K8sModel):
    parent_refs: list[ParentReference] = Field(default_factory=list, max_length=32)
    use_default_gateways: Literal["All", "None"] | None = None
    hostnames: list[Hostname] = Field(default_factory=list, max_length=16)
    rules: list[HTTPRouteRule] = Field(
        default_factory=lambda: [HTTPRouteRule()], min_length=1, max_length=16
    )


class HTTPRoute(Resource):
    kind: Literal["HTTPRoute"] = "HTTPRoute"
    spec: HTTPRouteSpec = Field(default_factory=HTTPRouteSpec)
    status: RouteStatus | None = None


_ = Int32  # re-exported for sibling modules
