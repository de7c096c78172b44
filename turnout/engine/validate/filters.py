"""Built-in rules for route filters: HTTPRoute and GRPCRoute, rule level and backendRef level.

```
filter_list_rules(filters, pos=...filters, members=FILTER_MEMBERS)
  |- list level: not both RequestRedirect and URLRewrite; CORS, RequestHeaderModifier,
  |              ResponseHeaderModifier, RequestRedirect, URLRewrite at most once each
  '- per filter (pos=...filters[i]):
       union consistency (member for `type` set, other members absent)
       requestMirror: percent XOR fraction, numerator <= denominator, Service port
       requestRedirect.path / urlRewrite.path: type <-> replaceFullPath / replacePrefixMatch,
         and (ours, the CRD has no pattern) the value in the path characters of path matches
       cors: '*' alone in allowOrigins / allowMethods / allowHeaders; set uniqueness
       externalAuth (exp): protocol <-> grpc / http, Service port, set uniqueness
       header modifiers: set[] / add[] keyed by name, remove[] a set
```

RequestMirror and ExtensionRef may repeat, as the CRD allows. The messages are the CRD's CEL
messages (identical at rule and backendRef level); `PATH_VALUE` is worded as its path rule.
This module does not decide where a ReplacePrefixMatch filter may appear; that depends on
the rule's matches (`validate.httproute`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from turnout.engine.diagnostics import Diagnostic, SourcePos
from turnout.engine.model.grpcroute import GRPCRouteFilter
from turnout.engine.model.httproute import (
    HTTPCORSFilter,
    HTTPExternalAuthFilter,
    HTTPHeaderFilter,
    HTTPPathModifier,
    HTTPRequestMirrorFilter,
    HTTPRouteFilter,
)
from turnout.engine.validate.common import (
    PATH_CHARS,
    backend_port_rule,
    rule_error,
    unique_names,
    unique_set,
)

AnyFilter = HTTPRouteFilter | GRPCRouteFilter

REDIRECT_XOR_REWRITE = (
    "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, "
    "but not both"
)
NOT_REPEATED = (
    "CORS",
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestRedirect",
    "URLRewrite",
)
"""Filter types that may appear at most once in one filters list (the others may repeat)."""

MIRROR_ONE_OF = "Only one of percent or fraction may be specified in HTTPRequestMirrorFilter"
PATH_VALUE = f"must only contain valid characters (matching {PATH_CHARS.pattern})"
"""Turnout's rule for `replaceFullPath` / `replacePrefixMatch`: the CRD has no pattern for
them (only maxLength), so a space, a NUL or a CR would reach the upstream request line or
`Location`. The pattern is the one the CRD gives path matches; "" keeps its meaning."""
FRACTION = "numerator must be less than or equal to denominator"


def filter_list_rules(
    filters: Sequence[AnyFilter], pos: SourcePos, *, members: Mapping[str, str]
) -> list[Diagnostic]:
    """Every filter rule for one `filters` list at `pos`; `members` maps type -> member."""
    out: list[Diagnostic] = []
    types: list[str] = [f.type for f in filters]
    if "RequestRedirect" in types and "URLRewrite" in types:
        out.append(rule_error(REDIRECT_XOR_REWRITE, pos))
    for kind in NOT_REPEATED:
        if types.count(kind) > 1:
            out.append(rule_error(f"{kind} filter cannot be repeated", pos))
    for i, f in enumerate(filters):
        out.extend(filter_rules(f, pos.child(f"[{i}]"), members=members))
    return out


def filter_rules(f: AnyFilter, pos: SourcePos, *, members: Mapping[str, str]) -> list[Diagnostic]:
    """Rules of one filter at `pos` (``...filters[i]``)."""
    out = union_rules(f, pos, members=members)
    if f.request_header_modifier is not None:
        out += header_filter_rules(f.request_header_modifier, pos.child("requestHeaderModifier"))
    if f.response_header_modifier is not None:
        out += header_filter_rules(f.response_header_modifier, pos.child("responseHeaderModifier"))
    if f.request_mirror is not None:
        out += mirror_rules(f.request_mirror, pos.child("requestMirror"))
    if isinstance(f, HTTPRouteFilter):
        if f.request_redirect is not None and f.request_redirect.path is not None:
            out += path_modifier_rules(f.request_redirect.path, pos.child("requestRedirect.path"))
        if f.url_rewrite is not None and f.url_rewrite.path is not None:
            out += path_modifier_rules(f.url_rewrite.path, pos.child("urlRewrite.path"))
        if f.cors is not None:
            out += cors_rules(f.cors, pos.child("cors"))
        if f.external_auth is not None:
            out += external_auth_rules(f.external_auth, pos.child("externalAuth"))
    return out


def _alias(f: AnyFilter, member: str) -> str:
    alias = type(f).model_fields[member].alias
    return alias or member


def union_rules(f: AnyFilter, pos: SourcePos, *, members: Mapping[str, str]) -> list[Diagnostic]:
    """The member named by `type` must be set; members of other types must be absent."""
    out: list[Diagnostic] = []
    for kind, member in members.items():
        name = _alias(f, member)
        present = getattr(f, member) is not None
        if present and f.type != kind:
            out.append(
                rule_error(f"filter.{name} must be nil if the filter.type is not {kind}", pos)
            )
        if not present and f.type == kind:
            out.append(rule_error(f"filter.{name} must be specified for {kind} filter.type", pos))
    return out


def header_filter_rules(h: HTTPHeaderFilter, pos: SourcePos) -> list[Diagnostic]:
    """`set` and `add` are list-maps keyed by name; `remove` is a set."""
    return (
        unique_names(h.set, lambda x: x.name, pos.child("set"))
        + unique_names(h.add, lambda x: x.name, pos.child("add"))
        + unique_set(h.remove, pos.child("remove"))
    )


def mirror_rules(m: HTTPRequestMirrorFilter, pos: SourcePos) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    if m.percent is not None and m.fraction is not None:
        out.append(rule_error(MIRROR_ONE_OF, pos))
    if m.fraction is not None and m.fraction.numerator > m.fraction.denominator:
        out.append(rule_error(FRACTION, pos.child("fraction")))
    out += backend_port_rule(m.backend_ref, pos.child("backendRef"))
    return out


def path_modifier_rules(p: HTTPPathModifier, pos: SourcePos) -> list[Diagnostic]:
    """`type` names the one replacement field that is set (both directions); the value
    must be a path a request line and a Location header can carry (`PATH_VALUE`)."""
    out: list[Diagnostic] = []
    checks = (
        ("ReplaceFullPath", "replaceFullPath", p.replace_full_path),
        ("ReplacePrefixMatch", "replacePrefixMatch", p.replace_prefix_match),
    )
    for kind, field, value in checks:
        if p.type == kind and value is None:
            out.append(rule_error(f"{field} must be specified when type is set to '{kind}'", pos))
        if value is not None and p.type != kind:
            out.append(rule_error(f"type must be '{kind}' when {field} is set", pos))
        if value and PATH_CHARS.fullmatch(value) is None:
            out.append(rule_error(PATH_VALUE, pos.child(field)))
    return out


def cors_rules(c: HTTPCORSFilter, pos: SourcePos) -> list[Diagnostic]:
    """A `*` entry must stand alone; the four lists are sets."""
    out: list[Diagnostic] = []
    lists: tuple[tuple[str, Sequence[str], str], ...] = (
        (
            "allowOrigins",
            c.allow_origins,
            "AllowOrigins cannot contain '*' alongside other origins",
        ),
        (
            "allowMethods",
            c.allow_methods,
            "AllowMethods cannot contain '*' alongside other methods",
        ),
        (
            "allowHeaders",
            c.allow_headers,
            "AllowHeaders cannot contain '*' alongside other methods",
        ),
    )
    for field, values, message in lists:
        if "*" in values and len(values) > 1:
            out.append(rule_error(message, pos.child(field)))
    for field, values in (
        ("allowOrigins", c.allow_origins),
        ("allowMethods", c.allow_methods),
        ("allowHeaders", c.allow_headers),
        ("exposeHeaders", c.expose_headers),
    ):
        out += unique_set(values, pos.child(field))
    return out


def external_auth_rules(a: HTTPExternalAuthFilter, pos: SourcePos) -> list[Diagnostic]:
    """(exp) `protocol` names the one config block that is set; the backend needs a port."""
    out: list[Diagnostic] = []
    if a.protocol == "GRPC" and a.grpc is None:
        out.append(rule_error("grpc must be specified when protocol is set to 'GRPC'", pos))
    if a.grpc is not None and a.protocol != "GRPC":
        out.append(rule_error("protocol must be 'GRPC' when grpc is set", pos))
    if a.protocol == "HTTP" and a.http is None:
        out.append(rule_error("http must be specified when protocol is set to 'HTTP'", pos))
    if a.http is not None and a.protocol != "HTTP":
        out.append(rule_error("protocol must be 'HTTP' when http is set", pos))
    out += backend_port_rule(a.backend_ref, pos.child("backendRef"))
    if a.grpc is not None:
        out += unique_set(a.grpc.allowed_headers, pos.child("grpc.allowedHeaders"))
    if a.http is not None:
        out += unique_set(a.http.allowed_headers, pos.child("http.allowedHeaders"))
        out += unique_set(a.http.allowed_response_headers, pos.child("http.allowedResponseHeaders"))
    return out
