"""Route matchers compiled from `RouteMatch`, once per table update.

```
RouteMatch ──matcher_from_xds──> RouteMatcher(path: PathCondition, method,
                                              headers: ValueCondition..., query: ...)
route + its prebuilt Decision ──> CompiledRoute (what `index.RouteIndex` buckets by path)
RouteMatcher.conditions_hold(request, ctx)  method, headers, query (the index matched the path)
RouteMatcher.first_failure(request, ctx)    the first condition that fails, in words (explain)
```

The matchers answer "does this route match"; which route wins is the index's
(`index.py`: buckets by exact path, prefix and regex, in xDS order, which already encodes
Gateway API precedence) and, for ``mesh routes explain``, `explain.py`'s, with the same
matchers, so the two cannot drift apart.

Semantics: Exact is byte-for-byte; PathPrefix is element-wise (``/v2`` matches ``/v2``,
``/v2/`` and ``/v2/x``, never ``/v2example``); regexes use Python `re` with full-match
semantics. Header names are case-insensitive and repeated headers are joined with ","; query
names are case-sensitive and the first value counts. Requests arrive with normalized paths
(`paths.py`), so Exact and prefix values are normalized the same way when compiled (a value
that normalizes to nothing a request can have, such as ``/a%2Fb``, is a `TableError`).
Only the conditions docs/xds.md produces are accepted; anything else is a `TableError`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from turnout.proxy.actions import Decision
from turnout.proxy.errors import TableError
from turnout.proxy.paths import Refusal, normalize_any
from turnout.proxy.request import MatchContext, RouteRequest

log = logging.getLogger(__name__)

PathKind = Literal["Exact", "PathPrefix", "RegularExpression"]
ValueKind = Literal["Exact", "RegularExpression", "Present"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PathCondition:
    kind: PathKind
    value: str
    """Exact path, prefix without trailing "/" (``/`` for the root), or the regex pattern."""
    regex: re.Pattern[str] | None = None
    with_slash: str = ""
    """`value` + "/" for element-wise prefix tests."""
    below_only: bool = False
    """From ``prefix: "P/"``: matches paths under P but not P itself (the translator pairs it
    with ``path: P`` for proxyless gRPC, which lacks `path_separated_prefix`)."""

    def matches(self, path: str) -> bool:
        if self.kind == "Exact":
            return path == self.value
        if self.kind == "PathPrefix":
            if self.value == "/":
                return path.startswith("/")
            if self.below_only:
                return path.startswith(self.with_slash)
            return path == self.value or path.startswith(self.with_slash)
        assert self.regex is not None
        return self.regex.fullmatch(path) is not None

    def describe(self) -> str:
        return f"{self.kind} {self.with_slash}" if self.below_only else f"{self.kind} {self.value}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueCondition:
    """One header or query-parameter condition."""

    name: str
    """Lower-cased for headers, as given for query parameters."""
    kind: ValueKind
    value: str = ""
    regex: re.Pattern[str] | None = None

    def test(self, actual: str | None) -> bool:
        if actual is None:
            return False
        if self.kind == "Exact":
            return actual == self.value
        if self.kind == "Present":
            return True
        assert self.regex is not None
        return self.regex.fullmatch(actual) is not None

    def describe(self, what: str, actual: str | None) -> str:
        """``header x-canary: want exact "true", got none``."""
        want = "present" if self.kind == "Present" else f'{self.kind.lower()} "{self.value}"'
        got = "none" if actual is None else f'"{actual}"'
        return f"{what} {self.name}: want {want}, got {got}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteMatcher:
    path: PathCondition
    method: str | None = None
    """Upper-case method (from a ``:method`` exact matcher); None = any."""
    headers: tuple[ValueCondition, ...] = ()
    query: tuple[ValueCondition, ...] = ()

    def conditions_hold(self, request: RouteRequest, ctx: MatchContext | None) -> bool:
        """Method, headers and query (the path is known to match)."""
        if self.method is not None and request.method != self.method:
            return False
        if not (self.headers or self.query):
            return True
        if ctx is None:
            ctx = MatchContext(request)
        for h in self.headers:
            if not h.test(ctx.header(h.name)):
                return False
        return all(q.test(ctx.query_param(q.name)) for q in self.query)

    def first_failure(self, request: RouteRequest, ctx: MatchContext) -> str | None:
        """The first condition that fails, in plain words; None when the route matches."""
        if not self.path.matches(request.path):
            return f"path {request.path} does not match {self.path.describe()}"
        if self.method is not None and request.method != self.method:
            return f"method: want {self.method}, got {request.method}"
        for h in self.headers:
            actual = ctx.header(h.name)
            if not h.test(actual):
                return h.describe("header", actual)
        for q in self.query:
            actual = ctx.query_param(q.name)
            if not q.test(actual):
                return q.describe("query", actual)
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class CompiledRoute:
    """One xDS route: its position in the virtual host, its matcher and its prebuilt decision."""

    position: int
    matcher: RouteMatcher
    decision: Decision


def compile_regex(pattern: str, *, where: str, field: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise TableError(where, field, f"invalid regex {pattern!r}: {exc}") from exc


def _string_match(
    sm: Any, *, where: str, field: str
) -> tuple[ValueKind, str, re.Pattern[str] | None]:
    """Accept the StringMatcher forms docs/xds.md uses: exact or safe_regex, case-sensitive."""
    if sm.ignore_case:
        raise TableError(where, f"{field}.ignore_case", "unsupported (must be false)")
    kind = sm.WhichOneof("match_pattern")
    if kind == "exact":
        return "Exact", sm.exact, None
    if kind == "safe_regex":
        pattern = sm.safe_regex.regex
        return (
            "RegularExpression",
            pattern,
            compile_regex(pattern, where=where, field=f"{field}.safe_regex.regex"),
        )
    raise TableError(
        where, field, f"unsupported string matcher {kind!r} (want exact or safe_regex)"
    )


def _header_condition(hm: Any, *, where: str, field: str) -> ValueCondition:
    if not hm.name:
        raise TableError(where, f"{field}.name", "empty header name")
    if hm.invert_match or hm.treat_missing_header_as_empty:
        raise TableError(where, field, "invert_match/treat_missing_header_as_empty unsupported")
    name = hm.name.lower()
    spec = hm.WhichOneof("header_match_specifier")
    if spec == "string_match":
        kind, value, regex = _string_match(
            hm.string_match, where=where, field=f"{field}.string_match"
        )
    elif spec == "exact_match":
        kind, value, regex = "Exact", hm.exact_match, None
    elif spec == "safe_regex_match":
        value = hm.safe_regex_match.regex
        kind, regex = (
            "RegularExpression",
            compile_regex(value, where=where, field=f"{field}.safe_regex_match.regex"),
        )
    elif spec == "present_match" and hm.present_match:
        kind, value, regex = "Present", "", None
    else:
        raise TableError(where, field, f"unsupported header matcher {spec!r}")
    return ValueCondition(name=name, kind=kind, value=value, regex=regex)


def _query_condition(qm: Any, *, where: str, field: str) -> ValueCondition:
    if not qm.name:
        raise TableError(where, f"{field}.name", "empty query parameter name")
    spec = qm.WhichOneof("query_parameter_match_specifier")
    if spec == "string_match":
        kind, value, regex = _string_match(
            qm.string_match, where=where, field=f"{field}.string_match"
        )
    elif spec == "present_match" and qm.present_match:
        kind, value, regex = "Present", "", None
    else:
        raise TableError(where, field, f"unsupported query parameter matcher {spec!r}")
    return ValueCondition(name=qm.name, kind=kind, value=value, regex=regex)


_UNSUPPORTED_MATCH_FIELDS = (
    "connect_matcher",
    "path_match_policy",
    "runtime_fraction",
    "grpc",
    "tls_context",
)


def _normal_value(value: str, *, where: str, field: str) -> str:
    """A path the route matches, in the normal form requests are matched in (`paths.py`)."""
    normal = normalize_any(value)
    if isinstance(normal, Refusal):
        raise TableError(where, field, f"{value!r} can never match: {normal.reason}")
    return normal


def _path_condition(match: Any, *, where: str) -> PathCondition:
    spec = match.WhichOneof("path_specifier")
    if spec == "path":
        value = _normal_value(match.path, where=where, field="match.path")
        return PathCondition(kind="Exact", value=value)
    if spec == "prefix":
        value = match.prefix
        if value.startswith("/") and value.endswith("/") and not value.endswith("//"):
            value = _normal_value(value, where=where, field="match.prefix")
            if value == "/":
                return PathCondition(kind="PathPrefix", value="/", with_slash="/")
            # Element-wise "below P" (paired with `path: P` by the translator).
            return PathCondition(
                kind="PathPrefix", value=value[:-1], with_slash=value, below_only=True
            )
        raise TableError(
            where, "match.prefix", f"want '/' or a prefix ending in '/', got {value!r}"
        )
    if spec == "path_separated_prefix":
        value = match.path_separated_prefix
        if not value.startswith("/") or value.endswith("/"):
            raise TableError(
                where,
                "match.path_separated_prefix",
                f"must start and not end with '/', got {value!r}",
            )
        value = _normal_value(value, where=where, field="match.path_separated_prefix")
        value = value.rstrip("/")  # "/a/." is "/a/": the prefix "/a"
        if not value:
            return PathCondition(kind="PathPrefix", value="/", with_slash="/")
        return PathCondition(kind="PathPrefix", value=value, with_slash=value + "/")
    if spec == "safe_regex":
        pattern = match.safe_regex.regex
        regex = compile_regex(pattern, where=where, field="match.safe_regex.regex")
        return PathCondition(kind="RegularExpression", value=pattern, regex=regex)
    raise TableError(where, "match", f"unsupported path specifier {spec!r}")


def matcher_from_xds(match: Any, *, where: str) -> RouteMatcher:
    """Compile a `RouteMatch`; `where` names the route for errors."""
    for name in _UNSUPPORTED_MATCH_FIELDS:
        if match.HasField(name):
            raise TableError(where, f"match.{name}", "unsupported")
    if match.HasField("case_sensitive") and not match.case_sensitive.value:
        raise TableError(where, "match.case_sensitive", "case-insensitive paths are unsupported")
    if len(match.dynamic_metadata) or len(match.filter_state):
        raise TableError(where, "match", "dynamic_metadata/filter_state matchers are unsupported")
    path = _path_condition(match, where=where)
    method: str | None = None
    headers: list[ValueCondition] = []
    for i, hm in enumerate(match.headers):
        cond = _header_condition(hm, where=where, field=f"match.headers[{i}]")
        if cond.name == ":method" and cond.kind == "Exact" and method is None:
            method = cond.value
        else:
            headers.append(cond)
    query = tuple(
        _query_condition(qm, where=where, field=f"match.query_parameters[{i}]")
        for i, qm in enumerate(match.query_parameters)
    )
    return RouteMatcher(path=path, method=method, headers=tuple(headers), query=query)
