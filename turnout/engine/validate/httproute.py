"""Built-in rules for HTTPRoute: the CRD's CEL rules and list-map uniqueness, in Python.

```
validate_httproute(Loaded[HTTPRoute], channel)
  spec.parentRefs            sectionName (and exp: port) consistent and unique per parent
  spec.rules                 total matches <= 128; (exp) rule names unique
  spec.rules[i]              RequestRedirect vs backendRefs; ReplacePrefixMatch needs exactly
                             one PathPrefix match (rule filters and backendRef filters)
  spec.rules[i].matches[j]   path value rules; headers[] / queryParams[] keyed by name
  spec.rules[i].filters      see `validate.filters`
  spec.rules[i].backendRefs[k]   Service port; its own filters
  spec.rules[i].timeouts     backendRequest <= request unless request is 0s
  spec.rules[i].retry.codes  a set
  spec.rules[i].sessionPersistence   (exp) five CEL rules
```

The checks read the parsed model, so the CRD's defaults are already applied (a rule without
matches has the default `PathPrefix /` match, a backendRef without group/kind is a Service),
just as the API server applies defaults before CEL runs. Schema checks (types, enums,
patterns, lengths) happened while parsing (`engine.model`); they are not repeated here.
"""

from __future__ import annotations

from collections.abc import Callable

from turnout.engine.diagnostics import Diagnostic, SourcePos
from turnout.engine.model.httproute import (
    FILTER_MEMBERS,
    HTTPPathMatch,
    HTTPRoute,
    HTTPRouteFilter,
    HTTPRouteRule,
    HTTPRouteTimeouts,
)
from turnout.engine.model.kinds import Loaded
from turnout.engine.validate.common import (
    PATH_CHARS,
    Channel,
    backend_port_rule,
    duration_ms,
    parent_ref_rules,
    rule_error,
    rules_list_rules,
    session_persistence_rules,
    unique_names,
    unique_set,
)
from turnout.engine.validate.filters import filter_list_rules

REDIRECT_WITH_BACKENDS = "RequestRedirect filter must not be used together with backendRefs"
PREFIX_MATCH_MESSAGES = {
    ("rule", "requestRedirect"): "When using RequestRedirect filter with "
    "path.replacePrefixMatch, exactly one PathPrefix match must be specified",
    ("rule", "urlRewrite"): "When using URLRewrite filter with path.replacePrefixMatch, "
    "exactly one PathPrefix match must be specified",
    ("backend", "requestRedirect"): "Within backendRefs, when using RequestRedirect filter "
    "with path.replacePrefixMatch, exactly one PathPrefix match must be specified",
    ("backend", "urlRewrite"): "Within backendRefs, When using URLRewrite filter with "
    "path.replacePrefixMatch, exactly one PathPrefix match must be specified",
}
BACKEND_TIMEOUT = "backendRequest timeout cannot be longer than request timeout"

_EXACT_OR_PREFIX = "when type one of ['Exact', 'PathPrefix']"
_PATH_RULES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    (
        f"value must be an absolute path and start with '/' {_EXACT_OR_PREFIX}",
        lambda v: v.startswith("/"),
    ),
    (f"must not contain '//' {_EXACT_OR_PREFIX}", lambda v: "//" not in v),
    (f"must not contain '/./' {_EXACT_OR_PREFIX}", lambda v: "/./" not in v),
    (f"must not contain '/../' {_EXACT_OR_PREFIX}", lambda v: "/../" not in v),
    (f"must not contain '%2f' {_EXACT_OR_PREFIX}", lambda v: "%2f" not in v),
    (f"must not contain '%2F' {_EXACT_OR_PREFIX}", lambda v: "%2F" not in v),
    (f"must not contain '#' {_EXACT_OR_PREFIX}", lambda v: "#" not in v),
    (f"must not end with '/..' {_EXACT_OR_PREFIX}", lambda v: not v.endswith("/..")),
    (f"must not end with '/.' {_EXACT_OR_PREFIX}", lambda v: not v.endswith("/.")),
    (
        f"must only contain valid characters (matching {PATH_CHARS.pattern}) "
        "for types ['Exact', 'PathPrefix']",
        lambda v: PATH_CHARS.fullmatch(v) is not None,
    ),
)
PATH_TYPE = "type must be one of ['Exact', 'PathPrefix', 'RegularExpression']"


def validate_httproute(loaded: Loaded[HTTPRoute], *, channel: Channel) -> list[Diagnostic]:
    """Every built-in rule for one HTTPRoute."""
    spec = loaded.obj.spec
    out = parent_ref_rules(spec.parent_refs, loaded.field("spec.parentRefs"), channel=channel)
    out += rules_list_rules(
        [len(r.matches) for r in spec.rules],
        [r.name for r in spec.rules],
        loaded.field("spec.rules"),
        channel=channel,
    )
    for i, rule in enumerate(spec.rules):
        out += rule_rules(rule, loaded.field(f"spec.rules[{i}]"))
    return out


def rule_rules(rule: HTTPRouteRule, pos: SourcePos) -> list[Diagnostic]:
    """Rules of one `spec.rules[i]` at `pos`, and of everything below it."""
    # Positions are built only where a rule can fail: a match whose path breaks no rule and
    # with fewer than two headers and query params, an empty filter list, cannot.
    out = _redirect_rules(rule, pos)
    for j, match in enumerate(rule.matches):
        failed = path_match_failures(match.path)
        if not failed and len(match.headers) < 2 and len(match.query_params) < 2:
            continue
        mpos = pos.child(f"matches[{j}]")
        if failed:
            ppos = mpos.child("path")
            out += [rule_error(message, ppos) for message in failed]
        out += unique_names(match.headers, lambda h: h.name, mpos.child("headers"))
        out += unique_names(match.query_params, lambda q: q.name, mpos.child("queryParams"))
    if rule.filters:
        out += filter_list_rules(rule.filters, pos.child("filters"), members=FILTER_MEMBERS)
    for k, ref in enumerate(rule.backend_refs):
        if ref.port is not None and not ref.filters:
            continue  # backend_port_rule needs no port only; no filters, no filter rules
        bpos = pos.child(f"backendRefs[{k}]")
        out += backend_port_rule(ref, bpos)
        if ref.filters:
            out += filter_list_rules(ref.filters, bpos.child("filters"), members=FILTER_MEMBERS)
    if rule.timeouts is not None:
        out += timeout_rules(rule.timeouts, pos.child("timeouts"))
    if rule.retry is not None:
        out += unique_set(rule.retry.codes, pos.child("retry.codes"))
    if rule.session_persistence is not None:
        out += session_persistence_rules(rule.session_persistence, pos.child("sessionPersistence"))
    return out


def _prefix_rewrite(filters: list[HTTPRouteFilter], member: str) -> int:
    """How many filters set `member`.path with a ReplacePrefixMatch (the CEL `exists_one`)."""
    count = 0
    for f in filters:
        mod = f.request_redirect if member == "requestRedirect" else f.url_rewrite
        path = mod.path if mod is not None else None
        if (
            path is not None
            and path.type == "ReplacePrefixMatch"
            and path.replace_prefix_match is not None
        ):
            count += 1
    return count


def _redirect_rules(rule: HTTPRouteRule, pos: SourcePos) -> list[Diagnostic]:
    if not rule.filters and not any(b.filters for b in rule.backend_refs):
        return []  # every rule here is about a filter
    out: list[Diagnostic] = []
    if rule.backend_refs and any(f.request_redirect is not None for f in rule.filters):
        out.append(rule_error(REDIRECT_WITH_BACKENDS, pos))
    one_prefix = len(rule.matches) == 1 and rule.matches[0].path.type == "PathPrefix"
    for member in ("requestRedirect", "urlRewrite"):
        # The CRD says `exists_one`, so the check applies when exactly one filter (rule
        # level) or exactly one backendRef (backend level) uses ReplacePrefixMatch.
        at_rule = _prefix_rewrite(rule.filters, member) == 1
        at_backend = (
            sum(1 for b in rule.backend_refs if _prefix_rewrite(b.filters, member) == 1) == 1
        )
        if at_rule and not one_prefix:
            out.append(rule_error(PREFIX_MATCH_MESSAGES[("rule", member)], pos))
        if at_backend and not one_prefix:
            out.append(rule_error(PREFIX_MATCH_MESSAGES[("backend", member)], pos))
    return out


def path_match_failures(path: HTTPPathMatch) -> list[str]:
    """The messages of the eleven `matches[].path` rules `path` breaks ([] for most); the
    value rules apply to Exact and PathPrefix only."""
    if path.type not in ("Exact", "PathPrefix", "RegularExpression"):
        return [PATH_TYPE]
    if path.type == "RegularExpression":
        return []
    v = path.value
    # What nearly every path is: each rule's substring is ruled out by a shorter one ("/."
    # is in "/./", "/../" and both endings; "%2" in "%2f" and "%2F"; PATH_CHARS has no "#").
    clean = v.startswith("/") and "//" not in v and "/." not in v and "%2" not in v
    if clean and PATH_CHARS.fullmatch(v) is not None:
        return []
    return [message for message, ok in _PATH_RULES if not ok(v)]


def timeout_rules(t: HTTPRouteTimeouts, pos: SourcePos) -> list[Diagnostic]:
    """backendRequest may not exceed request, unless request is 0s ("no timeout", GEP-1742)."""
    if t.request is None or t.backend_request is None:
        return []
    request, backend = duration_ms(t.request), duration_ms(t.backend_request)
    if request is None or backend is None or request == 0:
        return []
    return [rule_error(BACKEND_TIMEOUT, pos)] if backend > request else []
