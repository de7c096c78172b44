"""IR virtual hosts -> xDS `VirtualHost`s and `Route`s: matchers, actions, route metadata.

Data flow:

```
ir.VirtualHost ─ flatten_matches ─> [(Rule, Match)] in precedence order
                                       │ rule_route(rule): one template per rule, copied per matcher
                                       │   (match_records: the same Routes as bytes, for splice.py)
                                       ├─ route_matches_from(match)      path/headers/query/method
                                       ├─ action: direct_response (ErrorResponse, no usable weight)
                                       │        | redirect (RedirectFilter)
                                       │        | route: weighted_clusters + timeout + retry
                                       │                 + rewrites + mirrors   (filters.py)
                                       ├─ headers to add/remove, per-filter fault / CORS config
                                       └─ metadata.filter_metadata["turnout"]
```

Envoy and proxyless gRPC both take the first route that matches, so the order produced by
`flatten_matches` *is* the precedence (docs/xds.md "RouteConfiguration").

It deliberately does not validate regexes or header names (the compiler did) and does not
build the RouteConfiguration around the virtual hosts (`listeners.py` does, with the names).
"""

from __future__ import annotations

import logging
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from turnout.engine import config, ir
from turnout.engine.xds import filters
from turnout.engine.xds.wire import (
    BACKEND_FILTER,
    CORS_FILTER,
    FAULT_FILTER,
    INVALID_CLUSTER,
    METADATA_KEY,
    StructValue,
    duration_from_ms,
    fill_duration,
    fill_struct,
    framed,
    pack,
)

log = logging.getLogger(__name__)

RETRY_ON = "connect-failure,reset,retriable-status-codes"

GRPC_RETRY_ON = {
    500: "internal",
    503: "unavailable",
    504: "deadline-exceeded",
    429: "resource-exhausted",
}
"""HTTP retry codes -> the gRPC status names gRPC clients (and Envoy, for gRPC requests)
retry on. gRPC clients know only those names in `retry_on` and ignore the HTTP tokens, so a
GEP-1731 retry also lists them; `unavailable` is always there, as it is how a connection
error reaches a gRPC client (GEP-1731: a retry stanza SHOULD retry connection errors)."""


def retry_on(codes: tuple[int, ...]) -> str:
    """`retry_on` for a GEP-1731 retry: the HTTP conditions, then the gRPC status names."""
    grpc = {"unavailable", *(GRPC_RETRY_ON[c] for c in codes if c in GRPC_RETRY_ON)}
    return ",".join([RETRY_ON, *sorted(grpc)])


"""Connection errors always retry (GEP-1731); statuses only those listed in the policy."""

MIN_BACKOFF_MS = 1
"""A zero GEP-1731 backoff becomes 1 ms: gRPC rejects a retry base_interval that is not > 0."""

# Backend-level filters a ClusterWeight cannot carry at all; the compiler reports them,
# translate drops them. Redirects and path rewrites travel under `BACKEND_FILTER`.
_BACKEND_UNSUPPORTED = (ir.MirrorFilter, ir.CorsFilter)


def flatten_matches(vhost: ir.VirtualHost) -> list[tuple[ir.Rule, ir.Match]]:
    """All (rule, match) pairs, highest `ir.match_precedence` first; ties keep IR order (rule
    index, then match index) because `sorted` is stable, also with `reverse=True`."""
    pairs = [(rule, match) for rule in vhost.rules for match in rule.matches]
    return sorted(pairs, key=lambda pair: ir.match_precedence(pair[1]), reverse=True)


def fill_virtual_host(
    out: rc.VirtualHost, vhost: ir.VirtualHost, *, domains: tuple[str, ...]
) -> None:
    """Routes are built in place (in `out`, e.g. `route_config.virtual_hosts.add()`: a
    finished VirtualHost passed to a constructor is copied whole) from one template per
    rule (action, metadata, filters), copied per path matcher: a rule's matches share
    everything but name and match. (Parsing `match_records` instead costs ~25 % more
    instructions here: the messages are wanted, not their bytes.)"""
    out.name = vhost.name
    out.domains.extend(domains)
    templates: dict[int, bytes] = {}
    add = out.routes.add
    for rule, match in flatten_matches(vhost):
        template = templates.get(id(rule))
        if template is None:
            # Parsing the template's bytes is cheaper than CopyFrom of the message.
            template = templates[id(rule)] = rule_route(rule).SerializeToString()
        for path_match in route_matches_from(match):
            route = add()
            route.MergeFromString(template)
            route.name = match.name
            route.match.CopyFrom(path_match)


_VHOST_ROUTES = b"\x1a"  # VirtualHost.routes = 3, length-delimited
_ROUTE_MATCH = b"\x0a"  # Route.match = 1
_ROUTE_NAME = b"\x72"  # Route.name = 14; `rule_route` sets only fields 2-13


def match_records(rule: ir.Rule, template: rc.Route) -> tuple[bytes, ...]:
    """Per match of `rule`: its `VirtualHost.routes` records, one per path matcher.

    Each record is a Route's fields in number order: the match (1), the rule's template
    (`rule_route`, serialized once per rule: its fields, all between 2 and 13: action,
    metadata, header changes, per-filter config), then the name (14). That is what deterministic serialization of the
    whole Route gives (tests/engine/xds/test_routes.py)."""
    shared = template.SerializeToString(deterministic=True)
    out = []
    for match in rule.matches:
        name = framed(_ROUTE_NAME, match.name.encode()) if match.name else b""
        out.append(
            b"".join(
                framed(
                    _VHOST_ROUTES,
                    framed(_ROUTE_MATCH, m.SerializeToString(deterministic=True)) + shared + name,
                )
                for m in route_matches_from(match)
            )
        )
    return tuple(out)


# --------------------------------------------------------------------------- matchers


def string_matcher(kind: ir.MatchKind, value: str) -> string_pb2.StringMatcher:
    if kind == "Exact":
        return string_pb2.StringMatcher(exact=value)
    return string_pb2.StringMatcher(safe_regex=filters.regex_matcher(value))


def route_matches_from(match: ir.Match) -> list[rc.RouteMatch]:
    """Exact -> `path`; PrefixPath("/") -> `prefix: "/"`; regex -> `safe_regex`.

    Any other PathPrefix P becomes two matchers, `path: P` then `prefix: "P/"`, which together
    are exactly the element-wise prefix of Gateway API. Envoy's `path_separated_prefix` says
    the same in one matcher, but proxyless gRPC only understands `prefix`, `path` and
    `safe_regex` and rejects a whole RouteConfiguration holding anything else."""
    path = match.path
    conditions = _conditions(match) if match.headers or match.query or match.method else {}
    if isinstance(path, ir.PrefixPath) and path.value.rstrip("/"):
        prefix = path.value.rstrip("/")
        return [
            rc.RouteMatch(path=prefix, **conditions),
            rc.RouteMatch(prefix=prefix + "/", **conditions),
        ]
    if isinstance(path, ir.ExactPath):
        return [rc.RouteMatch(path=path.value, **conditions)]
    if isinstance(path, ir.PrefixPath):
        return [rc.RouteMatch(prefix="/", **conditions)]
    return [rc.RouteMatch(safe_regex=filters.regex_matcher(path.pattern), **conditions)]


def _conditions(match: ir.Match) -> dict[str, list[Any]]:
    """The method, header and query conditions of a RouteMatch (all but the path), as its
    keyword arguments; `route_matches_from` leaves them out for a match with none."""
    headers = [
        rc.HeaderMatcher(name=h.name, string_match=string_matcher(h.kind, h.value))
        for h in match.headers
    ]
    if match.method is not None:
        method = string_pb2.StringMatcher(exact=match.method)
        headers.insert(0, rc.HeaderMatcher(name=":method", string_match=method))
    query = [
        rc.QueryParameterMatcher(name=q.name, string_match=string_matcher(q.kind, q.value))
        for q in match.query
    ]
    return {"headers": headers, "query_parameters": query}


# --------------------------------------------------------------------------- routes


def rule_route(rule: ir.Rule) -> rc.Route:
    """Everything a rule's routes share: metadata, action, header filters, per-filter config."""
    route = rc.Route()
    fill_route_metadata(route.metadata, rule)
    error = next((f for f in rule.filters if isinstance(f, ir.ErrorResponse)), None)
    redirect = next((f for f in rule.filters if isinstance(f, ir.RedirectFilter)), None)
    if error is not None:
        route.direct_response.CopyFrom(direct_response(error.status, error.message))
    elif redirect is not None:
        route.redirect.CopyFrom(filters.redirect_action(redirect))
    elif sum(max(b.weight, 0) for b in rule.backends) == 0:
        # No backends, or all weights zero: no usable backend (and gRPC refuses all-zero
        # weighted_clusters), so answer like Envoy does for an unusable route.
        route.direct_response.CopyFrom(direct_response(config.NO_BACKEND_STATUS, ""))
    else:
        fill_route_action(route.route, rule)
    filters.apply_header_filters(route, rule.filters)
    if rule.fault is not None:
        route.typed_per_filter_config[FAULT_FILTER].CopyFrom(pack(filters.http_fault(rule.fault)))
    cors = next((f for f in rule.filters if isinstance(f, ir.CorsFilter)), None)
    if cors is not None:
        route.typed_per_filter_config[CORS_FILTER].CopyFrom(filters.cors_per_route(cors))
    return route


def direct_response(status: int, body: str) -> rc.DirectResponseAction:
    out = rc.DirectResponseAction(status=status)
    if body:
        out.body.CopyFrom(base_pb2.DataSource(inline_string=body))
    return out


def fill_route_metadata(out: base_pb2.Metadata, rule: ir.Rule) -> None:
    """`filter_metadata["turnout"]`: rule, source, backends, and invalid backends' answers."""
    src = rule.source
    value: dict[str, StructValue] = {
        "rule": rule.name,
        "source": f"{src.kind}/{src.namespace}/{src.name}",
        "backends": [b.name for b in rule.backends],
    }
    invalid: dict[str, StructValue] = {
        b.name: {
            "status": b.target.status,
            "reason": b.target.reason,
            "message": b.target.message,
            "ref": b.target.ref,
        }
        for b in rule.backends
        if isinstance(b.target, ir.InvalidBackend)
    }
    if invalid:
        value["invalid"] = invalid
    fill_struct(out.filter_metadata[METADATA_KEY], value)


def fill_route_action(action: rc.RouteAction, rule: ir.Rule) -> None:
    add = action.weighted_clusters.clusters.add
    for backend in rule.backends:
        fill_cluster_weight(add(), backend)
    request_ms = rule.timeouts.request_ms
    backend_ms = rule.timeouts.backend_request_ms
    if rule.retry is not None and rule.retry.attempts > 0:
        action.retry_policy.CopyFrom(retry_policy(rule.retry, per_try_ms=backend_ms))
    elif backend_ms is not None:
        # Without retries the only try is the whole exchange: its deadline is the smaller one.
        request_ms = backend_ms if request_ms is None else min(request_ms, backend_ms)
    # Envoy's default route timeout is 15 s; ours is none, which Envoy spells "0s".
    fill_duration(action.timeout, request_ms or 0)
    if rule.filters:
        rewrite = next((f for f in rule.filters if isinstance(f, ir.URLRewriteFilter)), None)
        if rewrite is not None:
            filters.apply_url_rewrite(action, rewrite)
        action.request_mirror_policies.extend(filters.mirror_policies(rule.filters))


def retry_policy(retry: ir.RetryPolicy, *, per_try_ms: int | None) -> rc.RetryPolicy:
    base_ms = max(retry.backoff_ms, MIN_BACKOFF_MS)
    out = rc.RetryPolicy(
        retry_on=retry_on(retry.codes),
        num_retries=wrappers_pb2.UInt32Value(value=retry.attempts),
        retriable_status_codes=list(retry.codes),
        retry_back_off=rc.RetryPolicy.RetryBackOff(
            base_interval=duration_from_ms(base_ms),
            max_interval=duration_from_ms(base_ms * 10),  # Envoy's and gRPC's default
        ),
    )
    if per_try_ms is not None:
        out.per_try_timeout.CopyFrom(duration_from_ms(per_try_ms))
    return out


def fill_cluster_weight(out: rc.WeightedCluster.ClusterWeight, backend: ir.WeightedBackend) -> None:
    """One `ClusterWeight`; an invalid backend keeps its weight on `turnout/invalid` and its
    share is aborted with its status by a per-cluster fault config."""
    out.weight.value = backend.weight
    if isinstance(backend.target, ir.InvalidBackend):
        out.name = INVALID_CLUSTER
        out.typed_per_filter_config[FAULT_FILTER].CopyFrom(
            filters.abort_always(backend.target.status)
        )
        return
    out.name = backend.target.cluster
    if not backend.filters:
        return
    filters.apply_header_filters(out, backend.filters)
    for f in backend.filters:
        if isinstance(f, ir.URLRewriteFilter) and f.hostname is not None:
            out.host_rewrite_literal = f.hostname
        if isinstance(f, ir.RedirectFilter | ir.URLRewriteFilter):
            action = filters.backend_action(f)
            if action is not None:
                out.typed_per_filter_config[BACKEND_FILTER].CopyFrom(action)
        elif isinstance(f, ir.ErrorResponse):
            out.typed_per_filter_config[FAULT_FILTER].CopyFrom(filters.abort_always(f.status))
        elif isinstance(f, _BACKEND_UNSUPPORTED):
            log.warning(
                "backend filter not expressible in xds, dropped backend=%s filter=%s",
                backend.name,
                type(f).__name__,
            )
