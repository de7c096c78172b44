"""Shared pieces of every kind: the pydantic base class, ObjectMeta and the Gateway API string
formats (the OpenAPI patterns and limits of the upstream CRDs, restated as types).

The models are the built-in schema: parsing a document with them enforces what the CRD's
`openAPIV3Schema` enforces (types, enums, patterns, lengths, ranges, required fields, unknown
fields). The CEL rules and the list-map uniqueness checks live in `engine.validate`, which
walks these models. Only this package reads camelCase: field names are snake_case and the
camelCase spelling is each field's alias.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
)
from pydantic.alias_generators import to_camel


class K8sModel(BaseModel):
    """Base of every model: camelCase aliases, unknown fields rejected (kubectl strict)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        regex_engine="rust-regex",
    )


class LooseModel(K8sModel):
    """For objects whose unknown fields are kept (ObjectMeta, status)."""

    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------------------- string formats

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
GROUP = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
KIND = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"
HEADER_VALUE = r"^[!-~]+([\t ]?[!-~]+)*$"
DURATION = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"
CONTROLLER = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$"

Name = Annotated[StrictStr, StringConstraints(min_length=1, max_length=253)]
ObjectName = Annotated[
    StrictStr, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
]
Namespace = Annotated[StrictStr, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL)]
Group = Annotated[StrictStr, StringConstraints(max_length=253, pattern=GROUP)]
Kind = Annotated[StrictStr, StringConstraints(min_length=1, max_length=63, pattern=KIND)]
SectionName = Annotated[
    StrictStr, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
]
Hostname = Annotated[StrictStr, StringConstraints(min_length=1, max_length=253, pattern=HOSTNAME)]
PreciseHostname = Annotated[
    StrictStr, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
]
HeaderName = Annotated[
    StrictStr, StringConstraints(min_length=1, max_length=256, pattern=HEADER_NAME)
]
HeaderValue = Annotated[
    StrictStr, StringConstraints(min_length=1, max_length=4096, pattern=HEADER_VALUE)
]
Duration = Annotated[StrictStr, StringConstraints(pattern=DURATION)]
PortNumber = Annotated[StrictInt, Field(ge=1, le=65535)]
Int32 = Annotated[StrictInt, Field(ge=-(2**31), le=2**31 - 1)]
Str = StrictStr
Bool = StrictBool
HTTPMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]


def _timestamp(value: object) -> object:
    """YAML turns unquoted timestamps into datetimes; JSON leaves strings. Accept both."""
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]


def _null_as_empty(value: object) -> object:
    return [] if value is None else value


NullAsEmpty = BeforeValidator(_null_as_empty)
"""For a list the API server serializes as `null` when it is empty (a Go nil slice with no
`omitempty`: an EndpointSlice's `endpoints` and `ports` when its Service has no pods):
`Annotated[list[X], NullAsEmpty]` reads it as `[]`, as `kubectl get -o yaml` prints it."""


class ObjectMeta(LooseModel):
    name: Str | None = None
    generate_name: Str | None = None
    namespace: Str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: Int32 | None = None
    resource_version: Str | None = None
    uid: Str | None = None
    creation_timestamp: Timestamp | None = None


class Resource(K8sModel):
    """A top-level Kubernetes object."""

    api_version: Str
    kind: Str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"

    @property
    def generation(self) -> int:
        return self.metadata.generation or 1


class LocalObjectReference(K8sModel):
    group: Group
    kind: Kind
    name: Name


class ParentReference(K8sModel):
    group: Group = "gateway.networking.k8s.io"
    kind: Kind = "Gateway"
    namespace: Namespace | None = None
    name: Name
    section_name: SectionName | None = None
    port: PortNumber | None = None


class BackendObjectReference(K8sModel):
    group: Group = ""
    kind: Kind = "Service"
    name: Name
    namespace: Namespace | None = None
    port: PortNumber | None = None


class BackendRef(BackendObjectReference):
    weight: Annotated[StrictInt, Field(ge=0, le=1_000_000)] = 1


class LabelSelectorRequirement(K8sModel):
    key: Str
    operator: Str
    values: list[Str] = Field(default_factory=list)


class LabelSelector(K8sModel):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)


class RouteStatusParent(LooseModel):
    parent_ref: ParentReference
    controller_name: Str
    conditions: list[dict[str, JsonValue]] = Field(default_factory=list)


class RouteStatus(LooseModel):
    parents: list[RouteStatusParent] = Field(default_factory=list)
