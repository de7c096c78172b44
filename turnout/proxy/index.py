"""The per-virtual-host route index: the per-request path of `decide()`.

```
routes in xDS order ──RouteIndex.build──> exact  {"/a/b": (r3, r7)}
                                          prefix {"/a/b": (r9,), "/a": (r12, r13), "/": (r20,)}
                                          regex  (r21, r22)
select(request):
  1. exact[path]                                 first candidate whose conditions hold
  2. prefix[p] for p in /a/b/c, /a/b, /a, /      longest first; same rule inside each bucket
  3. regex routes in order, path full-matched first
```

Why this equals "the first route in xDS order that matches": docs/xds.md sorts routes by
Gateway API precedence, so every Exact route comes before every prefix route that could also
match its path, a longer prefix before the shorter prefixes that contain it, and regex routes
last. `build` verifies exactly those three facts and raises `ShadowedRouteError` when the
order breaks one, instead of silently routing differently from Envoy or grpcio. Inside a
bucket the xDS order is kept. `tests/proxy/test_equivalence.py` checks it with hypothesis.

The lookup costs one dict probe per path segment plus the candidates of the hit buckets; it
does not depend on the number of routes, and allocates only the probed prefixes (and a
`MatchContext` when a candidate has header or query conditions).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

from turnout.proxy.errors import ShadowedRouteError
from turnout.proxy.matching import CompiledRoute
from turnout.proxy.request import MatchContext, RouteRequest

log = logging.getLogger(__name__)


def segment_prefixes(path: str) -> Iterator[str]:
    """``/a/b/c`` -> ``/a/b/c``, ``/a/b``, ``/a``, ``/`` (the keys `select` probes)."""
    key = path
    while key:
        yield key
        if key == "/":
            return
        cut = key.rfind("/")
        if cut > 0:
            key = key[:cut]
        elif cut == 0:
            key = "/"
        else:
            return


MAX_REMEMBERED = 4096
"""Paths whose route a `RouteIndex` remembers (clients sending endless distinct paths only
make it start over)."""


class RouteIndex:
    """Routes of one virtual host, indexed by path kind."""

    __slots__ = ("_decided", "exact", "path_only", "prefix", "regex", "routes")

    def __init__(
        self,
        *,
        routes: tuple[CompiledRoute, ...],
        exact: dict[str, tuple[CompiledRoute, ...]],
        prefix: dict[str, tuple[CompiledRoute, ...]],
        regex: tuple[CompiledRoute, ...],
    ) -> None:
        self.routes = routes
        """All routes in xDS order (explain walks these)."""
        self.exact = exact
        self.prefix = prefix
        self.regex = regex
        self.path_only = not any(r.matcher.headers or r.matcher.query for r in routes)
        """No route here looks at headers or the query: method and path decide."""
        self._decided: dict[tuple[str, str], CompiledRoute | None] = {}

    @classmethod
    def build(cls, routes: Sequence[CompiledRoute]) -> RouteIndex:
        """Bucket `routes` (in xDS order); raise `ShadowedRouteError` on a precedence break."""
        exact: dict[str, list[CompiledRoute]] = {}
        prefix: dict[str, list[CompiledRoute]] = {}
        regex: list[CompiledRoute] = []
        # Prefix keys that also match the key itself as a path (all but `prefix: "P/"`).
        whole: set[str] = set()
        for route in routes:
            path = route.matcher.path
            if regex and path.kind != "RegularExpression":
                first = regex[0].matcher.path
                raise ShadowedRouteError(
                    route.position,
                    f"{path.describe()} is listed after {first.describe()}; "
                    "regex routes must come last (docs/xds.md precedence)",
                )
            if path.kind == "Exact":
                shadow = next(
                    (
                        p
                        for p in segment_prefixes(path.value)
                        if p in whole or (p in prefix and p != path.value)
                    ),
                    None,
                )
                if shadow is not None:
                    raise ShadowedRouteError(
                        route.position,
                        f"Exact {path.value} is listed after PathPrefix {shadow}, which shadows it",
                    )
                exact.setdefault(path.value, []).append(route)
            elif path.kind == "PathPrefix":
                shorter = list(segment_prefixes(path.value))[1:]
                shadow = next((p for p in shorter if p in prefix), None)
                if shadow is not None:
                    raise ShadowedRouteError(
                        route.position,
                        f"PathPrefix {path.value} is listed after PathPrefix {shadow}, "
                        "which shadows it (longer prefixes first)",
                    )
                prefix.setdefault(path.value, []).append(route)
                if not path.below_only:
                    whole.add(path.value)
            else:
                regex.append(route)
        return cls(
            routes=tuple(routes),
            exact={k: tuple(v) for k, v in exact.items()},
            prefix={k: tuple(v) for k, v in prefix.items()},
            regex=tuple(regex),
        )

    def lookup(self, request: RouteRequest) -> CompiledRoute | None:
        """`select`, remembered per (method, path) where method and path alone decide (no
        route here has header or query conditions): a path seen before costs one dictionary
        hit. At most `MAX_REMEMBERED` paths per virtual host; then it starts over."""
        if not self.path_only:
            return self.select(request)
        key = (request.method, request.path)
        decided = self._decided
        try:
            return decided[key]
        except KeyError:  # a path not seen yet (or since the last start over)
            pass
        route = self.select(request)
        if len(decided) >= MAX_REMEMBERED:
            decided.clear()
        decided[key] = route
        return route

    def select(self, request: RouteRequest) -> CompiledRoute | None:
        """The route that handles `request`, or None (the caller answers 404)."""
        path = request.path
        ctx: MatchContext | None = None
        bucket = self.exact.get(path)
        if bucket is not None:
            for route in bucket:
                m = route.matcher
                if m.headers or m.query:
                    if ctx is None:
                        ctx = MatchContext(request)
                    if m.conditions_hold(request, ctx):
                        return route
                elif m.method is None or m.method == request.method:
                    return route
        prefix = self.prefix
        if prefix:
            key = path
            while key:
                bucket = prefix.get(key)
                if bucket is not None:
                    for route in bucket:
                        m = route.matcher
                        if m.path.below_only and key == path:
                            continue
                        if m.headers or m.query:
                            if ctx is None:
                                ctx = MatchContext(request)
                            if m.conditions_hold(request, ctx):
                                return route
                        elif m.method is None or m.method == request.method:
                            return route
                if key == "/":
                    break
                cut = key.rfind("/")
                if cut > 0:
                    key = key[:cut]
                elif cut == 0:
                    key = "/"
                else:
                    break
        for route in self.regex:
            m = route.matcher
            if m.path.matches(path):
                if ctx is None and (m.headers or m.query):
                    ctx = MatchContext(request)
                if m.conditions_hold(request, ctx):
                    return route
        return None
