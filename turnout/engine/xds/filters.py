"""IR filters -> the xDS fields that carry them: header mutations, path rewrites, redirects,
mirrors, fault injection and CORS.

Data flow: `routes.py` builds one `Route` per IR match and hands each rule's filters here; the
functions below return (or fill in) the pieces of `Route`, `RouteAction`, `RedirectAction` and
`WeightedCluster.ClusterWeight` that docs/xds.md assigns to each filter. Path rewrites follow
HTTPROUTE-SEMANTICS §7.4 exactly: `prefix_rewrite` where Envoy's "replace the matched prefix"
gives the same result, `regex_rewrite` where it cannot (an empty replacement, which would
otherwise leave `//bar`).

It deliberately does not choose a route's action (forward, redirect, direct response: that is
`routes.py`) and does not validate: the compiler has already rejected filters that cannot be
combined, and regex patterns arrive checked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import any_pb2, wrappers_pb2

from turnout.engine import ir
from turnout.engine.xds.wire import (
    duration_from_ms,
    fraction_per_million,
    pack,
    re2_escape,
)

log = logging.getLogger(__name__)

_OVERWRITE = base_pb2.HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD
_APPEND = base_pb2.HeaderValueOption.HeaderAppendAction.APPEND_IF_EXISTS_OR_ADD

_REDIRECT_CODES = {
    301: rc.RedirectAction.RedirectResponseCode.MOVED_PERMANENTLY,
    302: rc.RedirectAction.RedirectResponseCode.FOUND,
    303: rc.RedirectAction.RedirectResponseCode.SEE_OTHER,
    307: rc.RedirectAction.RedirectResponseCode.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.RedirectResponseCode.PERMANENT_REDIRECT,
}

# --------------------------------------------------------------------------- header mutations


def header_options(modifier: ir.HeaderModifier) -> list[base_pb2.HeaderValueOption]:
    """`set` overwrites (or adds), `add` appends (or adds), in the user's order."""
    out = [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=h.name, value=h.value), append_action=_OVERWRITE
        )
        for h in modifier.set
    ]
    out.extend(
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=h.name, value=h.value), append_action=_APPEND
        )
        for h in modifier.add
    )
    return out


def apply_header_filters(
    target: rc.Route | rc.WeightedCluster.ClusterWeight, filters: Iterable[ir.Filter]
) -> None:
    """Fill `{request,response}_headers_to_{add,remove}` of a Route or a ClusterWeight."""
    for f in filters:
        if isinstance(f, ir.RequestHeaderFilter):
            target.request_headers_to_add.extend(header_options(f.modifier))
            target.request_headers_to_remove.extend(f.modifier.remove)
        elif isinstance(f, ir.ResponseHeaderFilter):
            target.response_headers_to_add.extend(header_options(f.modifier))
            target.response_headers_to_remove.extend(f.modifier.remove)


# --------------------------------------------------------------------------- path rewrites


def regex_substitution(pattern: str, substitution: str) -> regex_pb2.RegexMatchAndSubstitute:
    return regex_pb2.RegexMatchAndSubstitute(
        pattern=regex_matcher(pattern), substitution=substitution
    )


def regex_matcher(pattern: str) -> regex_pb2.RegexMatcher:
    return regex_pb2.RegexMatcher(google_re2=regex_pb2.RegexMatcher.GoogleRE2(), regex=pattern)


def set_path_rewrite(target: rc.RouteAction | rc.RedirectAction, rewrite: ir.PathRewrite) -> None:
    """Set `prefix_rewrite` or `regex_rewrite` on a RouteAction or RedirectAction (§7.4).

    With P = the prefix without trailing "/", V = the replacement without trailing "/" and
    rest = the path after P, the result is V + rest, or "/" when that is empty.

    * P == "" (the "/" prefix, matched as `prefix: "/"`): Envoy replaces the leading "/", so
      `prefix_rewrite = V + "/"` gives V + path; with V == "" the path is unchanged.
    * P != "" (matched by two routes, `path: P` and `prefix: "P/"`): a `prefix_rewrite`
      would have to differ between the two, so a regex anchored at the start does it for
      both: `^P` -> V turns `/foo/bar` into `/xyz/bar` and `/foo` into `/xyz`; with V == ""
      `^P/?` -> "/" turns `/foo/bar` into `/bar` and both `/foo` and `/foo/` into `/`.
    """
    if isinstance(rewrite, ir.ReplaceFullPath):
        if isinstance(target, rc.RedirectAction):
            target.path_redirect = rewrite.value
        else:
            target.regex_rewrite.CopyFrom(regex_substitution("^.*$", rewrite.value))
        return
    prefix = rewrite.prefix.rstrip("/")
    replacement = rewrite.replacement.rstrip("/")
    if not prefix:
        if replacement:
            target.prefix_rewrite = replacement + "/"
        return
    if replacement:
        target.regex_rewrite.CopyFrom(regex_substitution(f"^{re2_escape(prefix)}", replacement))
    else:
        target.regex_rewrite.CopyFrom(regex_substitution(f"^{re2_escape(prefix)}/?", "/"))


def apply_url_rewrite(action: rc.RouteAction, rewrite: ir.URLRewriteFilter) -> None:
    if rewrite.hostname is not None:
        action.host_rewrite_literal = rewrite.hostname
    if rewrite.path is not None:
        set_path_rewrite(action, rewrite.path)


# --------------------------------------------------------------------------- redirects


def redirect_action(redirect: ir.RedirectFilter) -> rc.RedirectAction:
    """`RequestRedirect` -> `RedirectAction`; an unset port is `port_redirect: 0` (omitted)."""
    action = rc.RedirectAction(
        response_code=_REDIRECT_CODES.get(redirect.status_code, _REDIRECT_CODES[302]),
        port_redirect=redirect.port or 0,
    )
    if redirect.status_code not in _REDIRECT_CODES:
        log.warning("redirect status not expressible, using 302 status=%d", redirect.status_code)
    if redirect.scheme is not None:
        action.scheme_redirect = redirect.scheme
    if redirect.hostname is not None:
        action.host_redirect = redirect.hostname
    if redirect.path is not None:
        set_path_rewrite(action, redirect.path)
    return action


def backend_action(f: ir.RedirectFilter | ir.URLRewriteFilter) -> any_pb2.Any | None:
    """A backend's redirect or path rewrite, for `ClusterWeight.typed_per_filter_config`
    under `BACKEND_FILTER`: an optional `FilterConfig` holding a `RedirectAction` (the share
    answers it), or a `RouteAction` whose only field is the path rewrite (the share is sent
    the rewritten path). None: a rewrite that leaves the path alone (its hostname is
    `host_rewrite_literal`)."""
    if isinstance(f, ir.RedirectFilter):
        config = pack(redirect_action(f))
    else:
        action = rc.RouteAction()
        if f.path is not None:
            set_path_rewrite(action, f.path)
        if not action.ListFields():  # no path, or a prefix "/" replaced by "": a no-op
            return None
        config = pack(action)
    return pack(rc.FilterConfig(config=config, is_optional=True))


# --------------------------------------------------------------------------- mirrors


def mirror_policies(filters: Iterable[ir.Filter]) -> list[rc.RouteAction.RequestMirrorPolicy]:
    """One policy per `MirrorFilter` to a resolved Service; a mirror whose backend is invalid
    is not configured (HTTPROUTE-SEMANTICS §7.5: "the mirror is not configured")."""
    out = []
    for f in filters:
        if not isinstance(f, ir.MirrorFilter):
            continue
        if isinstance(f.backend, ir.InvalidBackend):
            log.warning("mirror backend invalid, mirror skipped mirror=%s", f.name)
            continue
        policy = rc.RouteAction.RequestMirrorPolicy(cluster=f.backend.cluster)
        policy.runtime_fraction.default_value.CopyFrom(fraction_per_million(f.per_million))
        out.append(policy)
    return out


# --------------------------------------------------------------------------- fault


def http_fault(fault: ir.FaultInjection) -> fault_pb2.HTTPFault:
    """`FaultInjection` -> `HTTPFault` (fixed delay, HTTP or gRPC abort; over MILLION)."""
    out = fault_pb2.HTTPFault()
    if fault.delay is not None:
        out.delay.CopyFrom(
            common_fault_pb2.FaultDelay(
                fixed_delay=duration_from_ms(fault.delay.duration_ms),
                percentage=fraction_per_million(fault.delay.per_million),
            )
        )
    if fault.abort is not None:
        abort = fault_pb2.FaultAbort(percentage=fraction_per_million(fault.abort.per_million))
        if fault.abort.grpc_status is not None:
            abort.grpc_status = fault.abort.grpc_status
        else:
            abort.http_status = fault.abort.http_status or 500
        out.abort.CopyFrom(abort)
    return out


def abort_always(status: int) -> any_pb2.Any:
    """Packed `HTTPFault` aborting 100% of requests with `status`: how an invalid backend's
    share (or a backend-level `ErrorResponse`) answers."""
    return pack(
        fault_pb2.HTTPFault(
            abort=fault_pb2.FaultAbort(
                http_status=status, percentage=fraction_per_million(ir.PER_MILLION)
            )
        )
    )


# --------------------------------------------------------------------------- CORS


def _origin_matcher(origin: str) -> string_pb2.StringMatcher:
    if "*" not in origin:
        return string_pb2.StringMatcher(exact=origin)
    pattern = ".*".join(re2_escape(part) for part in origin.split("*"))
    return string_pb2.StringMatcher(safe_regex=regex_matcher(pattern))


def cors_per_route(cors: ir.CorsFilter) -> any_pb2.Any:
    """`CorsPolicy` wrapped in an optional `FilterConfig`: proxyless gRPC has no CORS filter
    and would reject the whole RouteConfiguration for an unknown, non-optional config."""
    policy = cors_pb2.CorsPolicy(
        allow_origin_string_match=[_origin_matcher(o) for o in cors.allow_origins],
        allow_methods=",".join(cors.allow_methods),
        allow_headers=",".join(cors.allow_headers),
        expose_headers=",".join(cors.expose_headers),
        max_age=str(cors.max_age_s),
        allow_credentials=wrappers_pb2.BoolValue(value=cors.allow_credentials),
    )
    return pack(rc.FilterConfig(config=pack(policy), is_optional=True))
