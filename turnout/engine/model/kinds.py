r"""Parsing raw documents into typed kinds, with schema errors as diagnostics.

```
Document(raw) --kind_for()--> model class --pydantic--> Loaded(obj, pos, raw)
                                        \--errors-----> Diagnostic(pos + field path)
```

The pydantic models restate the CRD `openAPIV3Schema` (types, enums, patterns, lengths,
ranges, required and unknown fields), so a document that parses here passes the API server's
schema check. Error messages follow the API server's field-error wording
(``Unsupported value: "NOTREAL": supported values: "GET", ...``). Kinds that Turnout does
not use are reported as `UnknownKind` (info) and skipped; a known kind at a version that is
not served, or a kind that a group Turnout knows does not serve (a typo: `kind: HTTPRoutes`),
is an error, as `kubectl apply` would fail on it (``no matches for kind ... in version ...``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from turnout.engine.config import POLICY_GROUP
from turnout.engine.diagnostics import Diagnostic, SourcePos, error, info, warning
from turnout.engine.model.authz import (
    ISTIO_SECURITY_GROUP,
    LINKERD_POLICY_GROUP,
    IstioAuthorizationPolicy,
    LinkerdAuthorizationPolicy,
    MeshTLSAuthentication,
    NetworkAuthentication,
    PeerAuthentication,
    RequestAuthentication,
    Server,
    ServerAuthorization,
    ServerV1beta1,
    ServerV1beta2,
)
from turnout.engine.model.base import Resource
from turnout.engine.model.core import EndpointSlice, Namespace, Pod, Secret, Service
from turnout.engine.model.gateway import (
    Gateway,
    GatewayClass,
    ReferenceGrant,
    TCPRoute,
    TLSRoute,
    TLSRouteV1alpha2,
    UDPRoute,
)
from turnout.engine.model.grpcroute import GRPCRoute
from turnout.engine.model.httproute import HTTPRoute
from turnout.engine.model.loader import Document
from turnout.engine.model.policy import FaultInjection, XBackendTrafficPolicy
from turnout.engine.model.smi import (
    SPECS_GROUP,
    SPLIT_GROUP,
    HTTPRouteGroup,
    TrafficSplit,
    TrafficSplitV1alpha1,
    TrafficSplitV1alpha2,
)

GW = "gateway.networking.k8s.io"
GWX = "gateway.networking.x-k8s.io"

KINDS: dict[tuple[str, str], dict[str, type[Resource]]] = {
    (GW, "HTTPRoute"): {"v1": HTTPRoute, "v1beta1": HTTPRoute},
    (GW, "GRPCRoute"): {"v1": GRPCRoute},
    (GW, "Gateway"): {"v1": Gateway, "v1beta1": Gateway},
    (GW, "GatewayClass"): {"v1": GatewayClass, "v1beta1": GatewayClass},
    (GW, "ReferenceGrant"): {"v1": ReferenceGrant, "v1beta1": ReferenceGrant},
    (GW, "TLSRoute"): {"v1": TLSRoute, "v1alpha3": TLSRoute, "v1alpha2": TLSRouteV1alpha2},
    (GW, "TCPRoute"): {"v1": TCPRoute, "v1alpha2": TCPRoute},
    (GW, "UDPRoute"): {"v1": UDPRoute, "v1alpha2": UDPRoute},
    (GWX, "XBackendTrafficPolicy"): {"v1alpha1": XBackendTrafficPolicy},
    ("", "Namespace"): {"v1": Namespace},
    ("", "Service"): {"v1": Service},
    ("", "Secret"): {"v1": Secret},
    ("", "Pod"): {"v1": Pod},
    ("discovery.k8s.io", "EndpointSlice"): {"v1": EndpointSlice},
    (POLICY_GROUP, "FaultInjection"): {"v1alpha1": FaultInjection},
    (SPLIT_GROUP, "TrafficSplit"): {
        "v1alpha1": TrafficSplitV1alpha1,
        "v1alpha2": TrafficSplitV1alpha2,
        "v1alpha3": TrafficSplit,
        "v1alpha4": TrafficSplit,
    },
    (SPECS_GROUP, "HTTPRouteGroup"): {"v1alpha3": HTTPRouteGroup, "v1alpha4": HTTPRouteGroup},
    (LINKERD_POLICY_GROUP, "Server"): {
        "v1beta1": ServerV1beta1,
        "v1beta2": ServerV1beta2,
        "v1beta3": Server,
    },
    (LINKERD_POLICY_GROUP, "ServerAuthorization"): {"v1beta1": ServerAuthorization},
    (LINKERD_POLICY_GROUP, "AuthorizationPolicy"): {"v1alpha1": LinkerdAuthorizationPolicy},
    (LINKERD_POLICY_GROUP, "MeshTLSAuthentication"): {"v1alpha1": MeshTLSAuthentication},
    (LINKERD_POLICY_GROUP, "NetworkAuthentication"): {"v1alpha1": NetworkAuthentication},
    (ISTIO_SECURITY_GROUP, "AuthorizationPolicy"): {
        "v1": IstioAuthorizationPolicy,
        "v1beta1": IstioAuthorizationPolicy,
    },
    (ISTIO_SECURITY_GROUP, "PeerAuthentication"): {
        "v1": PeerAuthentication,
        "v1beta1": PeerAuthentication,
    },
    (ISTIO_SECURITY_GROUP, "RequestAuthentication"): {
        "v1": RequestAuthentication,
        "v1beta1": RequestAuthentication,
    },
}
"""(group, kind) -> served version -> model."""

OTHER_SERVED_KINDS: dict[str, frozenset[str]] = {
    GW: frozenset({"BackendTLSPolicy", "ListenerSet"}),
    GWX: frozenset({"XBackend", "XListenerSet", "XMesh"}),
    "": frozenset(
        {
            *("Binding", "ComponentStatus", "ConfigMap", "Endpoints", "Event", "LimitRange"),
            *("List", "Node", "PersistentVolume", "PersistentVolumeClaim", "Pod", "PodTemplate"),
            *("ReplicationController", "ResourceQuota", "ServiceAccount"),
        }
    ),
    SPECS_GROUP: frozenset({"TCPRoute", "UDPRoute"}),
    LINKERD_POLICY_GROUP: frozenset(
        {"EgressNetwork", "HTTPLocalRateLimitPolicy", "HTTPRoute", "GRPCRoute"}
    ),
    ISTIO_SECURITY_GROUP: frozenset(),
}
"""Kinds the groups of `KINDS` serve that Turnout does not use (the Gateway API CRDs of
shared/reference, core v1, SMI specs v1alpha4): skipped as `UnknownKind`. Any other kind in
one of these groups is one the API server has no mapping for, so it is an error."""

CLUSTER_SCOPED = frozenset({"GatewayClass", "Namespace"})

R = TypeVar("R", bound=Resource)


@dataclass(frozen=True, slots=True, kw_only=True)
class Loaded(Generic[R]):
    """A parsed object with where it came from."""

    obj: R
    pos: SourcePos
    raw: Mapping[str, object]

    def field(self, path: str) -> SourcePos:
        """Position of a field of this object (``spec.rules[0]``)."""
        return self.pos.child(path)


@dataclass(frozen=True, slots=True)
class Resources:
    """A snapshot of parsed objects: the compiler's whole input."""

    objects: tuple[Loaded[Resource], ...] = ()

    def of(self, cls: type[R]) -> list[Loaded[R]]:
        return [o for o in self.objects if isinstance(o.obj, cls)]  # type: ignore[misc]


def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def parse_document(doc: Document) -> tuple[Loaded[Resource] | None, list[Diagnostic]]:
    """Parse one document; None when it is unknown or invalid (see diagnostics)."""
    raw = doc.raw
    api_version = raw.get("apiVersion")
    kind = raw.get("kind")
    if not isinstance(api_version, str) or not api_version:
        return None, [error("FieldValueRequired", "Required value", doc.pos.child("apiVersion"))]
    if not isinstance(kind, str) or not kind:
        return None, [error("FieldValueRequired", "Required value", doc.pos.child("kind"))]
    group, version = split_api_version(api_version)
    versions = KINDS.get((group, kind))
    if versions is None:
        group_kinds = served_kinds(group)
        if group_kinds and kind not in group_kinds:
            return None, [_no_kind_match(kind, api_version, group, group_kinds, doc.pos)]
        msg = f"kind {kind} ({api_version}) is not used by Turnout; ignored"
        return None, [info("UnknownKind", msg, doc.pos)]
    model = versions.get(version)
    if model is None:
        served = ", ".join(f"{group}/{v}" if group else v for v in versions)
        msg = f'no matches for kind "{kind}" in version "{api_version}" (served: {served})'
        return None, [error("NoKindMatch", msg, doc.pos.child("apiVersion"))]
    try:
        obj = model.model_validate(raw)
    except ValidationError as exc:
        return None, [schema_diagnostic(e, doc.pos) for e in exc.errors()]
    diags: list[Diagnostic] = []
    if not obj.metadata.name:
        diags.append(error("FieldValueRequired", "Required value", doc.pos.child("metadata.name")))
        return None, diags
    if kind in CLUSTER_SCOPED and obj.metadata.namespace:
        obj = obj.model_copy(
            update={"metadata": obj.metadata.model_copy(update={"namespace": None})}
        )
    elif kind not in CLUSTER_SCOPED and not obj.metadata.namespace:
        obj = obj.model_copy(
            update={"metadata": obj.metadata.model_copy(update={"namespace": "default"})}
        )
    return Loaded(obj=obj, pos=doc.pos, raw=raw), diags


def served_kinds(group: str) -> list[str]:
    """Every kind `group` serves, sorted; [] for a group Turnout does not know."""
    ours = {kind for g, kind in KINDS if g == group}
    if not ours:
        return []
    return sorted(ours | OTHER_SERVED_KINDS.get(group, frozenset()))


def _no_kind_match(
    kind: str, api_version: str, group: str, served: list[str], pos: SourcePos
) -> Diagnostic:
    """kubectl's ``no matches for kind "HTTPRoutes" in version "..."``, plus what the group
    serves and the nearest kind (case first: `httproute` means `HTTPRoute`)."""
    near = [k for k in served if k.lower() == kind.lower()] or difflib.get_close_matches(
        kind, served, n=1, cutoff=0.6
    )
    hint = f'; did you mean "{near[0]}"?' if near else ""
    where = group or "the core group (v1)"
    msg = (
        f'no matches for kind "{kind}" in version "{api_version}" '
        f"({where} serves {', '.join(served)}{hint})"
    )
    return error("NoKindMatch", msg, pos.child("kind"))


def parse_documents(docs: Iterable[Document]) -> tuple[Resources, list[Diagnostic]]:
    """Parse every document; a later object with the same kind/namespace/name replaces the
    earlier one (as a second `kubectl apply` would) and is reported."""
    parsed: list[Loaded[Resource]] = []
    diags: list[Diagnostic] = []
    for doc in docs:
        loaded, d = parse_document(doc)
        diags.extend(d)
        if loaded is not None:
            parsed.append(loaded)
    return merge_objects(parsed, diags), diags


def merge_objects(objects: Iterable[Loaded[Resource]], diags: list[Diagnostic]) -> Resources:
    """One object per kind/namespace/name: a later one replaces an earlier one (as a second
    `kubectl apply` would), reported as `DuplicateObject` in `diags`."""
    by_key: dict[tuple[str, str, str, str], Loaded[Resource]] = {}
    for loaded in objects:
        # The group keeps Linkerd's and Istio's AuthorizationPolicy apart.
        group = split_api_version(loaded.obj.api_version)[0]
        key = (loaded.obj.kind, loaded.obj.metadata.namespace or "", loaded.obj.name, group)
        if key in by_key:
            first = by_key[key].pos
            msg = f"{key[0]} {key[1]}/{key[2]} is defined again; this one replaces {first}"
            diags.append(warning("DuplicateObject", msg, loaded.pos))
        by_key[key] = loaded
    return Resources(tuple(by_key.values()))


# --------------------------------------------------------------------------- error wording

_TAG = re.compile(r"[-\[(]|^(str|int|bool|float|list|dict|none)$")


def field_path(loc: tuple[int | str, ...]) -> str:
    """pydantic `loc` (aliases) -> ``spec.rules[0].backendRefs[1].weight``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _TAG.search(part):
            continue
        else:
            out += f".{part}" if out else part
    return out


def _quote(value: object) -> str:
    if isinstance(value, str):
        return (
            '"'
            + value.replace("\\", "\\\\")
            .replace('"', '\\"')
            .replace("\n", "\\n")
            .replace("\r", "\\r")
            + '"'
        )
    return repr(value)


def schema_diagnostic(err: ErrorDetails, base: SourcePos) -> Diagnostic:
    """One pydantic error as the API server words a field error, at `base` + its field path."""
    loc = tuple(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind == "extra_forbidden":
        name = field_path(loc)
        return error(
            "FieldValueUnknown", f'unknown field "{name.rsplit(".", 1)[-1]}"', base.child(name)
        )
    pos = base.child(field_path(loc))
    if kind == "missing":
        return error("FieldValueRequired", "Required value", pos)
    if kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", "")).replace("'", '"')
        expected = expected.replace(" or ", ", ")
        return error(
            "FieldValueNotSupported",
            f"Unsupported value: {_quote(value)}: supported values: {expected}",
            pos,
        )
    if kind == "string_pattern_mismatch":
        return error(
            "FieldValueInvalid",
            f"Invalid value: {_quote(value)}: should match '{ctx.get('pattern')}'",
            pos,
        )
    if kind == "string_too_long":
        return error(
            "FieldValueTooLong",
            f"Too long: may not be more than {ctx.get('max_length')} bytes",
            pos,
        )
    if kind == "string_too_short":
        return error(
            "FieldValueInvalid",
            f"Invalid value: {_quote(value)}: should be at least {ctx.get('min_length')} chars long",
            pos,
        )
    if kind == "too_long":
        return error(
            "FieldValueTooMany",
            f"Too many: {ctx.get('actual_length')}: must have at most {ctx.get('max_length')} items",
            pos,
        )
    if kind == "too_short":
        return error(
            "FieldValueInvalid",
            f"Invalid value: {ctx.get('actual_length')}: should have at least "
            f"{ctx.get('min_length')} items",
            pos,
        )
    if kind in ("greater_than_equal", "greater_than"):
        return error(
            "FieldValueInvalid",
            f"Invalid value: {value}: should be greater than or equal to {ctx.get('ge', ctx.get('gt'))}",
            pos,
        )
    if kind in ("less_than_equal", "less_than"):
        return error(
            "FieldValueInvalid",
            f"Invalid value: {value}: should be less than or equal to {ctx.get('le', ctx.get('lt'))}",
            pos,
        )
    if kind.endswith("_type") or kind.endswith("_parsing"):
        expected = kind.removesuffix("_type").removesuffix("_parsing").replace("model", "object")
        expected = {
            "int": "integer",
            "str": "string",
            "bool": "boolean",
            "dict": "object",
            "list": "array",
            "datetime": "date-time",
        }.get(expected, expected)
        return error(
            "FieldValueTypeInvalid",
            f"Invalid value: {_quote(value)}: must be of type {expected}",
            pos,
        )
    return error("FieldValueInvalid", f"Invalid value: {_quote(value)}: {err['msg']}", pos)
