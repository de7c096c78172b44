"""Conflicting routes: a match that can never win because an identical one ranks first.

Two matches with the same path, method, headers and query parameters tie on every
precedence criterion, so the tie-break (older route, then `namespace/name`, then rule
order) decides once and for all: the later one never receives a request. That is almost
always a mistake (two teams claiming the same path), so it is reported as a warning at the
losing match, naming the one that wins. Same-route duplicates are reported too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from turnout.engine import ir
from turnout.engine.compile.context import Ctx
from turnout.engine.diagnostics import Diagnostic, warning
from turnout.engine.model import GRPCRoute, HTTPRoute, Loaded

MatchKey = tuple[object, ...]


def match_key(m: ir.Match) -> MatchKey:
    """Everything that decides whether and how strongly a match matches, order-free."""
    headers = tuple(sorted((h.name, h.kind, h.value) for h in m.headers)) if m.headers else ()
    query = tuple(sorted((q.name, q.kind, q.value) for q in m.query)) if m.query else ()
    return (m.path, m.method, headers, query)


def views_of(parent: ir.Parent) -> Iterable[ir.VirtualHost]:
    if isinstance(parent, ir.ServiceParent):
        yield parent.producer
        yield from (c.vhost for c in parent.consumers)
    else:
        yield from parent.vhosts


RouteOf = Callable[[ir.SourceRef], "Loaded[HTTPRoute] | Loaded[GRPCRoute] | None"]
Shadowed = tuple[str, Diagnostic | None]
"""A shadowed match's name, and its warning (None: its route is not among the inputs)."""


def report_conflicts(ctx: Ctx, table: ir.RouteTable) -> None:
    """Warn once per shadowed match (a rule compiled for several parents warns once)."""
    routes: dict[tuple[str, str, str], Loaded[HTTPRoute] | Loaded[GRPCRoute]] = {}

    def route_of(src: ir.SourceRef) -> Loaded[HTTPRoute] | Loaded[GRPCRoute] | None:
        if not routes:  # built at the first shadowed match: most tables have none
            routes.update(((r.obj.kind, r.obj.namespace, r.obj.name), r) for r in ctx.index.routes)
        return routes.get((src.kind, src.namespace, src.name))

    shadowed = (
        vhost_conflicts(vhost, route_of) for parent in table.parents for vhost in views_of(parent)
    )
    ctx.diags.extend(first_reports(shadowed))


def vhost_conflicts(
    vhost: ir.VirtualHost,
    route_of: RouteOf,
    keys: dict[int, tuple[ir.Match, MatchKey]] | None = None,
) -> list[Shadowed]:
    """The matches of `vhost` that an identical earlier one shadows, in rule order.

    `keys` caches `match_key` by the match's identity (the incremental compiler keeps one:
    an unchanged rule is the same object in the next table)."""
    winners: dict[MatchKey, ir.Match] = {}
    out: list[Shadowed] = []
    for rule in vhost.rules:
        for m in rule.matches:
            if keys is None:
                key = match_key(m)
            else:
                cached = keys.get(id(m))
                if cached is None or cached[0] is not m:
                    cached = keys[id(m)] = (m, match_key(m))
                key = cached[1]
            first = winners.setdefault(key, m)
            if first is m:
                continue
            loaded = route_of(rule.source)
            if loaded is None:
                out.append((m.name, None))
                continue
            rule_i, match_i = m.name.split("/rule/")[1].split("/match/")
            pos = loaded.field(f"spec.rules[{rule_i}].matches[{match_i}]")
            msg = (
                f"never matches on {vhost.name}: {first.name} has the same match and "
                "wins the tie-break (older route, then namespace/name, then rule order)"
            )
            out.append((m.name, warning("ConflictingRoutes", msg, pos)))
    return out


def first_reports(per_vhost: Iterable[list[Shadowed]]) -> list[Diagnostic]:
    """The warnings of every vhost in order, each shadowed match once."""
    reported: set[str] = set()
    out: list[Diagnostic] = []
    for shadowed in per_vhost:
        for name, diag in shadowed:
            if name in reported:
                continue
            reported.add(name)
            if diag is not None:
                out.append(diag)
    return out
