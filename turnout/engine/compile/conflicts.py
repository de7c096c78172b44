"""Conflicting routes: a match that can never win because an identical one ranks first.

Two matches with the same path, method, headers and query parameters tie on every
precedence criterion, so the tie-break (older route, then `namespace/name`, then rule
order) decides once and for all: the later one never receives a request. That is almost
always a mistake (two teams claiming the same path), so it is reported as a warning at the
losing match, naming the one that wins. Same-route duplicates are reported too.
"""

from __future__ import annotations

from collections.abc import Iterable

from turnout.engine import ir
from turnout.engine.compile.context import Ctx
from turnout.engine.diagnostics import warning
from turnout.engine.model import GRPCRoute, HTTPRoute, Loaded

MatchKey = tuple[object, ...]


def match_key(m: ir.Match) -> MatchKey:
    """Everything that decides whether and how strongly a match matches, order-free."""
    headers = tuple(sorted((h.name, h.kind, h.value) for h in m.headers))
    query = tuple(sorted((q.name, q.kind, q.value) for q in m.query))
    return (m.path, m.method, headers, query)


def views_of(parent: ir.Parent) -> Iterable[ir.VirtualHost]:
    if isinstance(parent, ir.ServiceParent):
        yield parent.producer
        yield from (c.vhost for c in parent.consumers)
    else:
        yield from parent.vhosts


def report_conflicts(ctx: Ctx, table: ir.RouteTable) -> None:
    """Warn once per shadowed match (a rule compiled for several parents warns once)."""
    routes: dict[tuple[str, str, str], Loaded[HTTPRoute] | Loaded[GRPCRoute]] = {
        (r.obj.kind, r.obj.namespace, r.obj.name): r for r in ctx.index.routes
    }
    reported: set[str] = set()
    for parent in table.parents:
        for vhost in views_of(parent):
            winners: dict[MatchKey, ir.Match] = {}
            for rule in vhost.rules:
                for m in rule.matches:
                    first = winners.setdefault(match_key(m), m)
                    if first is m or m.name in reported:
                        continue
                    reported.add(m.name)
                    src = rule.source
                    loaded = routes.get((src.kind, src.namespace, src.name))
                    if loaded is None:
                        continue
                    rule_i, match_i = m.name.split("/rule/")[1].split("/match/")
                    pos = loaded.field(f"spec.rules[{rule_i}].matches[{match_i}]")
                    msg = (
                        f"never matches on {vhost.name}: {first.name} has the same match and "
                        "wins the tie-break (older route, then namespace/name, then rule order)"
                    )
                    ctx.report(warning("ConflictingRoutes", msg, pos))
