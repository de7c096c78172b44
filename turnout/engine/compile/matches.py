"""HTTPRoute and GRPCRoute matches -> IR `Match` (HTTPROUTE-SEMANTICS §2).

Paths are normalised here (a PathPrefix's trailing "/" is dropped, as matching is
element-wise), header names are lower-cased, and every regular expression is compiled once
to prove it is valid; the IR keeps only the pattern string. A gRPC method match becomes a
path match on ``/<service>/<method>``, which is what the request's `:path` carries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import re2  # type: ignore[import-untyped, unused-ignore]

from turnout.engine import ir
from turnout.engine.compile.where import At, pos_of
from turnout.engine.diagnostics import Diagnostic, SourcePos, error
from turnout.engine.model.grpcroute import GRPCHeaderMatch, GRPCRouteMatch
from turnout.engine.model.httproute import HTTPHeaderMatch, HTTPRouteMatch


def normalize_prefix(value: str) -> str:
    """``/abc/`` and ``/abc`` behave the same; ``/`` stays ``/``."""
    return value.rstrip("/") or "/"


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def check_regex(pattern: str, pos: SourcePos) -> Diagnostic | None:
    """Regexes are RE2 (what Envoy and gRPC use), matched against the whole value: reject
    what does not compile, and what Python accepts but RE2 would refuse, so a table that
    compiles here is never NACKed by an xDS client."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return error("UnsupportedValue", f"invalid regular expression {pattern!r}: {exc}", pos)
    try:
        re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        msg = f"regular expression {pattern!r} is not RE2 (Envoy and gRPC clients would reject it): {reason}"
        return error("UnsupportedValue", msg, pos)
    return None


def header_matches(
    headers: Sequence[HTTPHeaderMatch | GRPCHeaderMatch],
    *,
    pos: At,
    diags: list[Diagnostic],
) -> list[ir.HeaderMatch]:
    """Header conditions with lower-cased names; "if the same name appears twice in one match
    list, only the first entry counts"; regexes checked (problems appended to `diags`)."""
    out: list[ir.HeaderMatch] = []
    seen: set[str] = set()
    for i, h in enumerate(headers):
        lname = h.name.lower()
        if lname in seen:
            continue
        seen.add(lname)
        if h.type == "RegularExpression":
            bad = check_regex(h.value, pos_of(pos.child(f"headers[{i}].value")))
            if bad:
                diags.append(bad)
        out.append(ir.HeaderMatch(name=lname, kind=h.type, value=h.value))
    return out


def http_match(
    m: HTTPRouteMatch, *, name: str, pos: At
) -> tuple[ir.Match | None, list[Diagnostic]]:
    diags: list[Diagnostic] = []
    path: ir.PathMatch
    if m.path.type == "Exact":
        path = ir.ExactPath(value=m.path.value)
    elif m.path.type == "PathPrefix":
        path = ir.PrefixPath(value=normalize_prefix(m.path.value))
    else:
        bad = check_regex(m.path.value, pos_of(pos.child("path.value")))
        if bad:
            diags.append(bad)
        path = ir.RegexPath(pattern=m.path.value)
    headers = header_matches(m.headers, pos=pos, diags=diags) if m.headers else ()
    query: list[ir.QueryMatch] = []
    qseen: set[str] = set()
    for i, q in enumerate(m.query_params):
        if q.name in qseen:
            continue
        qseen.add(q.name)
        if q.type == "RegularExpression":
            bad = check_regex(q.value, pos_of(pos.child(f"queryParams[{i}].value")))
            if bad:
                diags.append(bad)
        query.append(ir.QueryMatch(name=q.name, kind=q.type, value=q.value))
    if diags:
        return None, diags
    match = ir.Match(
        name=name, path=path, headers=tuple(headers), query=tuple(query), method=m.method
    )
    return match, diags


def grpc_match(
    m: GRPCRouteMatch, *, name: str, pos: At
) -> tuple[ir.Match | None, list[Diagnostic]]:
    """GRPCRoute: service+method -> Exact ``/svc/method``; service only -> prefix ``/svc``;
    method only or RegularExpression -> a regex over ``/<service>/<method>`` (each regex part
    in a non-capturing group)."""
    diags: list[Diagnostic] = []
    path: ir.PathMatch = ir.PrefixPath(value="/")
    meth = m.method
    if meth is not None and (meth.service or meth.method):
        if meth.type == "Exact":
            if meth.service and meth.method:
                path = ir.ExactPath(value=f"/{meth.service}/{meth.method}")
            elif meth.service:
                path = ir.PrefixPath(value=f"/{meth.service}")
            else:
                path = ir.RegexPath(pattern=f"/[^/]+/{re.escape(meth.method or '')}")
        else:
            # Each part is grouped: `a|b` as a service must not swallow the "/" and method
            # (an ungrouped alternation would split the whole path pattern in two).
            svc = f"(?:{meth.service})" if meth.service else "[^/]+"
            method = f"(?:{meth.method})" if meth.method else "[^/]+"
            for part, field in ((meth.service, "service"), (meth.method, "method")):
                if part:
                    bad = check_regex(part, pos_of(pos.child(f"method.{field}")))
                    if bad:
                        diags.append(bad)
            path = ir.RegexPath(pattern=f"/{svc}/{method}")
    headers = header_matches(m.headers, pos=pos, diags=diags)
    if diags:
        return None, diags
    return ir.Match(name=name, path=path, headers=tuple(headers)), diags
