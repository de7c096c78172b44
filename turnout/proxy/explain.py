"""The slow, exhaustive path behind ``mesh routes explain``: why this route, why not the others.

```
RequestInfo + VirtualHostTable ──explain_routes──> Explanation
    every route of the virtual host, in xDS order, with the same compiled matchers:
      no-match          the first failing condition, in plain words
      winner            the first route that matches (what decide() returns)
      lower-precedence  matched too, and why the winner ranks above it
```

Nothing here is on the per-request path; it allocates freely. It shares `RouteMatcher` with
`decide()`, so the explanation cannot drift from the routing, and the tests assert that
``explain(...).winner == decide(...)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from turnout.proxy.actions import Decision, RouteRef
from turnout.proxy.matching import CompiledRoute, RouteMatcher
from turnout.proxy.request import MatchContext, RequestInfo

log = logging.getLogger(__name__)

Outcome = Literal["winner", "lower-precedence", "no-match"]
_KIND_RANK = {"Exact": 3, "PathPrefix": 2, "RegularExpression": 1}


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteVerdict:
    position: int
    """Index of the route in its virtual host (xDS order)."""
    route: RouteRef
    matched: bool
    outcome: Outcome
    reason: str
    """The first failing condition, or why it won / lost to the winner."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    listener: str
    authority: str
    virtual_host: str | None
    """Name of the chosen virtual host; None = no listener or no domain matched."""
    host_reason: str
    """How the virtual host was chosen (or why none was)."""
    verdicts: tuple[RouteVerdict, ...]
    winner: Decision
    """Equal to what `decide()` returns for the same request."""


def describe_match(m: RouteMatcher) -> str:
    """``PathPrefix /v1, method GET, 2 headers, 1 query param``."""
    parts = [m.path.describe()]
    if m.method is not None:
        parts.append(f"method {m.method}")
    if m.headers:
        parts.append(f"{len(m.headers)} header{'s' if len(m.headers) != 1 else ''}")
    if m.query:
        parts.append(f"{len(m.query)} query param{'s' if len(m.query) != 1 else ''}")
    return ", ".join(parts)


def why_first(winner: RouteMatcher, loser: RouteMatcher) -> str:
    """Why `winner` ranks above `loser`, in Gateway API precedence words (§3)."""
    wp, lp = winner.path, loser.path
    if _KIND_RANK[wp.kind] != _KIND_RANK[lp.kind]:
        return f"{wp.kind} path match beats {lp.kind}"
    if wp.kind == "PathPrefix" and len(wp.value) != len(lp.value):
        return f"longer prefix {wp.value} beats {lp.value}"
    if (winner.method is None) != (loser.method is None):
        return "a method match beats none"
    if len(winner.headers) != len(loser.headers):
        return f"{len(winner.headers)} header matches beat {len(loser.headers)}"
    if len(winner.query) != len(loser.query):
        return f"{len(winner.query)} query param matches beat {len(loser.query)}"
    return "same precedence; the winner comes first in tie-break order (oldest route, then namespace/name, then rule and match index)"


def explain_routes(
    request: RequestInfo,
    routes: tuple[CompiledRoute, ...],
    *,
    not_found: Decision,
) -> tuple[tuple[RouteVerdict, ...], Decision]:
    """Evaluate every route; return the verdicts and the winning decision (`not_found` if none)."""
    ctx = MatchContext(request)
    failures = [r.matcher.first_failure(request, ctx) for r in routes]
    winner = next((r for r, f in zip(routes, failures, strict=True) if f is None), None)
    verdicts = []
    for route, failure in zip(routes, failures, strict=True):
        ref = route.decision.route
        assert ref is not None
        if failure is not None:
            verdicts.append(
                RouteVerdict(
                    position=route.position,
                    route=ref,
                    matched=False,
                    outcome="no-match",
                    reason=failure,
                )
            )
        elif route is winner:
            reason = f"first matching route in precedence order ({describe_match(route.matcher)})"
            verdicts.append(
                RouteVerdict(
                    position=route.position,
                    route=ref,
                    matched=True,
                    outcome="winner",
                    reason=reason,
                )
            )
        else:
            assert winner is not None and winner.decision.route is not None
            reason = f"matched, but {winner.decision.route.name} wins: {why_first(winner.matcher, route.matcher)}"
            verdicts.append(
                RouteVerdict(
                    position=route.position,
                    route=ref,
                    matched=True,
                    outcome="lower-precedence",
                    reason=reason,
                )
            )
    return tuple(verdicts), (winner.decision if winner is not None else not_found)
