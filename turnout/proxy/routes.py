"""One xDS `Route` -> `CompiledRoute` (matcher + prebuilt `Decision`), once per update.

```
Route ─┬─ match ───────────────────────────────> matching.RouteMatcher
       ├─ metadata.filter_metadata["turnout"] ──> RouteRef(rule, source), backend names, invalid
       ├─ route | redirect | direct_response ───> Forward | Redirect | DirectResponse
       ├─ *_headers_to_*, typed_per_filter_config (fault, cors)
       ├─ weighted_clusters[i]: headers, host_rewrite_literal, typed_per_filter_config
       │    ["turnout.filters.http.backend"] ──> Backend.redirect | Backend.path_rewrite
       └─ route.{timeout, retry_policy, request_mirror_policies, *_rewrite}
```

The field meanings are the ones of docs/xds.md. What the contract does not produce and the
proxy cannot honour (cluster_header, host_rewrite_header, a filename body ...) is a
`TableError`, never silently ignored, so the control plane hears about it as a NACK; so is a
rewrite, redirect or host value with a byte a request line or a header cannot carry (a
space, CR, LF or NUL: `sendable`), whatever control plane sent it.
"""

from __future__ import annotations

import logging
from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc
from google.protobuf import json_format

from turnout.proxy.actions import (
    Action,
    Backend,
    Cors,
    Decision,
    DirectResponse,
    Fault,
    Forward,
    InvalidBackend,
    Redirect,
    RouteRef,
)
from turnout.proxy.config import (
    BACKEND_FILTER,
    CORS_FILTER,
    FAULT_FILTER,
    INVALID_CLUSTER,
    METADATA_NAMESPACE,
)
from turnout.proxy.errors import TableError
from turnout.proxy.matching import CompiledRoute, PathCondition, compile_regex, matcher_from_xds
from turnout.proxy.mutations import (
    NO_MUTATION,
    FullPath,
    PathRewrite,
    PrefixReplace,
    RegexReplace,
    re2_template,
    strip_trailing_slash,
)
from turnout.proxy.policies import (
    cors_from_any,
    fault_from_any,
    header_mutation,
    mirrors_from_xds,
    optional_ms,
    retry_from_xds,
    unpack,
    unwrap_filter_config,
)

log = logging.getLogger(__name__)

PER_MILLION = 1_000_000

REDIRECT_STATUS = {0: 301, 1: 302, 2: 303, 3: 307, 4: 308}
"""RedirectAction.RedirectResponseCode -> HTTP status."""


def sendable(value: str, *, where: str, field: str) -> str:
    """`value`, which goes into a request line, a Host or a Location as it is: visible
    ASCII only, so no space, CR, LF or NUL can split or end what it is written into
    (RFC 9112 §3: the request line is three tokens; a header line ends at CRLF)."""
    if value and not (value.isascii() and value.isprintable() and " " not in value):
        raise TableError(where, field, f"{value!r} cannot be sent: want visible ASCII only")
    return value


def _metadata(route: Any, *, where: str) -> dict[str, Any]:
    if METADATA_NAMESPACE not in route.metadata.filter_metadata:
        raise TableError(where, f'metadata.filter_metadata["{METADATA_NAMESPACE}"]', "missing")
    meta: dict[str, Any] = json_format.MessageToDict(
        route.metadata.filter_metadata[METADATA_NAMESPACE]
    )
    for key in ("rule", "source"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise TableError(
                where,
                f'metadata.filter_metadata["{METADATA_NAMESPACE}"].{key}',
                "missing or not a string",
            )
    return meta


def _invalid(meta: dict[str, Any], name: str, *, where: str) -> InvalidBackend:
    field = f'metadata.filter_metadata["{METADATA_NAMESPACE}"].invalid["{name}"]'
    entry = meta.get("invalid", {}).get(name)
    if not isinstance(entry, dict):
        raise TableError(where, field, f"missing for a backend on {INVALID_CLUSTER}")
    try:
        return InvalidBackend(
            status=int(entry["status"]),
            reason=str(entry["reason"]),
            message=str(entry.get("message", "")),
            ref=str(entry.get("ref", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TableError(where, field, f"want {{status, reason, message}}, got {entry!r}") from exc


def _forward(ra: Any, meta: dict[str, Any], path: PathCondition, *, where: str) -> Forward:
    spec = ra.WhichOneof("cluster_specifier")
    names = meta.get("backends", [])
    if spec == "cluster":
        weights: list[tuple[str, int, Any]] = [(ra.cluster, 1, None)]
    elif spec == "weighted_clusters":
        weights = [(cw.name, cw.weight.value, cw) for cw in ra.weighted_clusters.clusters]
    else:
        raise TableError(where, "route.cluster_specifier", f"unsupported {spec!r}")
    if not isinstance(names, list) or len(names) != len(weights):
        raise TableError(
            where,
            f'metadata.filter_metadata["{METADATA_NAMESPACE}"].backends',
            f"want {len(weights)} backend names (one per weighted cluster), got {names!r}",
        )
    backends = []
    for i, ((cluster, weight, cw), name) in enumerate(zip(weights, names, strict=True)):
        field = f"route.weighted_clusters.clusters[{i}]."
        redirect, rewrite, abort = None, None, None
        if cw is not None:
            extra = set(cw.typed_per_filter_config) - {FAULT_FILTER, BACKEND_FILTER}
            if cw.cluster_header or extra:
                raise TableError(
                    where, field.rstrip("."), "cluster_header/typed_per_filter_config unsupported"
                )
            redirect, rewrite = _backend_action(cw, path, where=where, field=field)
            if cluster != INVALID_CLUSTER:
                abort = _backend_abort(cw, where=where, field=field)
        host = cw.host_rewrite_literal if cw is not None else ""
        sendable(host, where=where, field=f"{field}host_rewrite_literal")
        backends.append(
            Backend(
                cluster=cluster,
                name=str(name),
                weight=weight,
                invalid=_invalid(meta, str(name), where=where)
                if cluster == INVALID_CLUSTER
                else None,
                request_headers=header_mutation(cw, "request", where=where, field=field)
                if cw
                else NO_MUTATION,
                response_headers=header_mutation(cw, "response", where=where, field=field)
                if cw
                else NO_MUTATION,
                host_rewrite=host or None,
                path_rewrite=rewrite,
                redirect=redirect,
                abort=abort,
            )
        )
    forward = Forward.of(tuple(backends))
    if forward.total <= 0:
        raise TableError(
            where, "route.weighted_clusters", "all weights are zero (want a direct_response)"
        )
    return forward


_REWRITE_ONLY = frozenset({"prefix_rewrite", "regex_rewrite"})
"""The RouteAction fields a `BACKEND_FILTER` rewrite may set (docs/xds.md "Backend filters")."""


def _backend_action(
    cw: Any, path: PathCondition, *, where: str, field: str
) -> tuple[Redirect | None, PathRewrite | None]:
    """A ClusterWeight's `BACKEND_FILTER` config: a `RedirectAction` (the share answers it) or
    a `RouteAction` holding only a path rewrite; (None, None) without one. An optional config
    of another type is skipped, as an optional filter config is."""
    if BACKEND_FILTER not in cw.typed_per_filter_config:
        return None, None
    field = f'{field}typed_per_filter_config["{BACKEND_FILTER}"]'
    packed, optional = unwrap_filter_config(
        cw.typed_per_filter_config[BACKEND_FILTER], where=where, field=field
    )
    if packed is None:
        return None, None
    kind = packed.TypeName()
    if kind == rc.RedirectAction.DESCRIPTOR.full_name:
        rd = unpack(packed, rc.RedirectAction, where=where, field=field)
        return _redirect(rd, path, where=where, field=f"{field}.redirect"), None
    if kind == rc.RouteAction.DESCRIPTOR.full_name:
        ra = unpack(packed, rc.RouteAction, where=where, field=field)
        other = {f.name for f, _ in ra.ListFields()} - _REWRITE_ONLY
        if other:
            raise TableError(
                where, field, f"a backend rewrite sets only a path, got {sorted(other)}"
            )
        return None, _path_plan(ra, path, where=where, field=f"{field}.route", full=None)
    if optional:
        return None, None
    raise TableError(where, field, f"want a RedirectAction or RouteAction, got {kind}")


def _backend_abort(cw: Any, *, where: str, field: str) -> DirectResponse | None:
    """A real backend's fault config: docs/xds.md puts one there only for a backend-level
    `ErrorResponse` (a filter that must not be skipped), as a 100% HTTP abort."""
    if FAULT_FILTER not in cw.typed_per_filter_config:
        return None
    field = f'{field}typed_per_filter_config["{FAULT_FILTER}"]'
    packed, _ = unwrap_filter_config(
        cw.typed_per_filter_config[FAULT_FILTER], where=where, field=field
    )
    if packed is None:
        return None
    fault = fault_from_any(packed, where=where, field=field)
    if (
        fault.delay_per_million
        or fault.abort_per_million < PER_MILLION
        or fault.abort_http_status is None
    ):
        raise TableError(
            where, field, "a weighted cluster's fault must abort 100% with an HTTP status"
        )
    return DirectResponse(status=fault.abort_http_status, cause="invalid filter")


def _path_plan(
    owner: Any, path: PathCondition, *, where: str, field: str, full: str | None
) -> PathRewrite | None:
    """prefix_rewrite / regex_rewrite (and `full` = path_redirect) of a RouteAction/RedirectAction."""
    if full:
        return FullPath(value=sendable(full, where=where, field=f"{field}.path_redirect"))
    if owner.prefix_rewrite:
        sendable(owner.prefix_rewrite, where=where, field=f"{field}.prefix_rewrite")
        if path.kind == "RegularExpression":
            raise TableError(where, f"{field}.prefix_rewrite", "needs a path or prefix match")
        prefix = path.value if path.kind == "Exact" else strip_trailing_slash(path.value)
        return PrefixReplace(prefix=prefix, replacement=strip_trailing_slash(owner.prefix_rewrite))
    if owner.HasField("regex_rewrite"):
        rr = owner.regex_rewrite
        sendable(rr.substitution, where=where, field=f"{field}.regex_rewrite.substitution")
        pattern = compile_regex(
            rr.pattern.regex, where=where, field=f"{field}.regex_rewrite.pattern.regex"
        )
        try:
            template = re2_template(rr.substitution, groups=pattern.groups)
        except ValueError as exc:
            raise TableError(where, f"{field}.regex_rewrite.substitution", str(exc)) from exc
        return RegexReplace(pattern=pattern, template=template, substitution=rr.substitution)
    return None


def _redirect(rd: Any, path: PathCondition, *, where: str, field: str = "redirect") -> Redirect:
    status = REDIRECT_STATUS.get(rd.response_code)
    if status is None:
        raise TableError(where, f"{field}.response_code", f"unknown {rd.response_code}")
    sendable(rd.host_redirect, where=where, field=f"{field}.host_redirect")
    sendable(rd.scheme_redirect, where=where, field=f"{field}.scheme_redirect")
    scheme = "https" if rd.https_redirect else (rd.scheme_redirect.lower() or None)
    full = rd.path_redirect if rd.WhichOneof("path_rewrite_specifier") == "path_redirect" else None
    return Redirect(
        status=status,
        scheme=scheme,
        host=rd.host_redirect or None,
        port=rd.port_redirect or None,
        path=_path_plan(rd, path, where=where, field=field, full=full),
        strip_query=rd.strip_query,
    )


def _direct(dr: Any, *, where: str) -> DirectResponse:
    body = ""
    if dr.HasField("body"):
        kind = dr.body.WhichOneof("specifier")
        if kind == "inline_string":
            body = dr.body.inline_string
        elif kind == "inline_bytes":
            body = dr.body.inline_bytes.decode("utf-8", "replace")
        else:
            raise TableError(where, "direct_response.body", f"unsupported data source {kind!r}")
    return DirectResponse(status=dr.status, body=body)


_UNSUPPORTED_ROUTE_ACTION = (
    "path_rewrite_policy",
    "host_rewrite_header",
    "host_rewrite_path_regex",
    "retry_policy_typed_config",
    "inline_cluster_specifier_plugin",
)


def _per_filter(route: Any, *, where: str) -> tuple[Fault | None, Cors | None]:
    fault: Fault | None = None
    cors: Cors | None = None
    for key, wrapped in route.typed_per_filter_config.items():
        field = f'typed_per_filter_config["{key}"]'
        any_msg, optional = unwrap_filter_config(wrapped, where=where, field=field)
        if any_msg is None:
            continue
        if key == FAULT_FILTER:
            fault = fault_from_any(any_msg, where=where, field=field)
        elif key == CORS_FILTER:
            cors = cors_from_any(any_msg, where=where, field=field)
        elif not optional:
            raise TableError(where, field, "unsupported filter")
    return fault, cors


def route_from_xds(route: Any, *, position: int, where: str) -> CompiledRoute:
    """Compile one `Route`; `where` names it for errors."""
    matcher = matcher_from_xds(route.match, where=where)
    meta = _metadata(route, where=where)
    ref = RouteRef(name=route.name, rule=meta["rule"], source=meta["source"])
    fault, cors = _per_filter(route, where=where)
    kind = route.WhichOneof("action")
    action: Action
    extra: dict[str, Any] = {}
    if kind == "route":
        ra = route.route
        for name in _UNSUPPORTED_ROUTE_ACTION:
            if ra.HasField(name):
                raise TableError(where, f"route.{name}", "unsupported")
        if ra.HasField("auto_host_rewrite") and ra.auto_host_rewrite.value:
            raise TableError(where, "route.auto_host_rewrite", "unsupported")
        action = _forward(ra, meta, matcher.path, where=where)
        host = sendable(ra.host_rewrite_literal, where=where, field="route.host_rewrite_literal")
        per_try = (
            optional_ms(ra.retry_policy, "per_try_timeout") if ra.HasField("retry_policy") else None
        )
        extra = {
            "host_rewrite": host or None,
            "path_rewrite": _path_plan(ra, matcher.path, where=where, field="route", full=None),
            "mirrors": mirrors_from_xds(ra.request_mirror_policies, where=where),
            # docs/xds.md: `0s` = no deadline; an unset timeout is read the same way.
            "request_timeout_ms": optional_ms(ra, "timeout"),
            "per_try_timeout_ms": per_try,
            "retry": retry_from_xds(ra.retry_policy, where=where)
            if ra.HasField("retry_policy")
            else None,
        }
    elif kind == "redirect":
        action = _redirect(route.redirect, matcher.path, where=where)
    elif kind == "direct_response":
        action = _direct(route.direct_response, where=where)
    else:
        raise TableError(where, "action", f"unsupported {kind!r}")
    decision = Decision(
        route=ref,
        action=action,
        request_headers=header_mutation(route, "request", where=where, field=""),
        response_headers=header_mutation(route, "response", where=where, field=""),
        fault=fault,
        cors=cors,
        **extra,
    )
    return CompiledRoute(position=position, matcher=matcher, decision=decision)
