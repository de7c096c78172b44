"""`mesh routes`: one row per rule per parent view, rendered as a table.

A Service parent has a producer view and one view per consumer namespace (shown as
``service/ns/name:port (from ns2)``); a Gateway parent has one view per hostname. Each row
says where the rule came from, what it matches, where it sends traffic and with which
timeouts, retries and faults. Pure functions over the IR; printing is the CLI's job.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from turnout.engine import ir


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRow:
    parent: str
    view: str
    """"" for the producer view, ``from <ns>`` for a consumer view, a hostname for gateways."""
    route: str
    """``HTTPRoute/ns/name`` or ``Service/ns/name`` for a default rule."""
    rule: str
    """IR rule name."""
    hostnames: str
    match: str
    backends: str
    timeout: str
    retry: str
    fault: str
    filters: str


def pct(per_million: int) -> str:
    whole, rest = divmod(per_million * 100, ir.PER_MILLION)
    return f"{whole}%" if rest == 0 else f"{per_million * 100 / ir.PER_MILLION:.2f}%"


def fmt_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


def describe_match(m: ir.Match) -> str:
    path = m.path
    if isinstance(path, ir.ExactPath):
        parts = [f"Exact {path.value}"]
    elif isinstance(path, ir.PrefixPath):
        parts = [f"PathPrefix {path.value}"]
    else:
        parts = [f"Regex {path.pattern}"]
    if m.method:
        parts.append(f"method={m.method}")
    for h in m.headers:
        op = "=" if h.kind == "Exact" else "~"
        parts.append(f"header {h.name}{op}{h.value}")
    for q in m.query:
        op = "=" if q.kind == "Exact" else "~"
        parts.append(f"query {q.name}{op}{q.value}")
    return " ".join(parts)


def describe_backend(b: ir.WeightedBackend) -> str:
    t = b.target
    if not isinstance(t, ir.ServiceTarget):
        return f"{t.ref} <invalid: {t.status} {t.reason}> {b.weight}"
    own = [
        f"redirect {f.status_code}" if isinstance(f, ir.RedirectFilter) else "rewrite"
        for f in b.filters
        if isinstance(f, ir.RedirectFilter | ir.URLRewriteFilter)
    ]
    extra = f" ({', '.join(own)})" if own else ""
    return f"{t.namespace}/{t.service}:{t.port} {b.weight}{extra}"


def describe_backends(rule: ir.Rule) -> str:
    redirect = next((f for f in rule.filters if isinstance(f, ir.RedirectFilter)), None)
    if redirect is not None:
        return f"redirect {redirect.status_code}"
    error = next((f for f in rule.filters if isinstance(f, ir.ErrorResponse)), None)
    if error is not None:
        return f"error {error.status}"
    if not rule.backends:
        return "<none: 500>"
    return ", ".join(describe_backend(b) for b in rule.backends)


def describe_retry(r: ir.RetryPolicy | None) -> str:
    if r is None:
        return "-"
    codes = ",".join(str(c) for c in r.codes) or "conn"
    return f"{r.attempts}x {codes} {fmt_ms(r.backoff_ms)}"


def describe_fault(f: ir.FaultInjection | None) -> str:
    if f is None:
        return "-"
    parts: list[str] = []
    if f.delay is not None:
        parts.append(f"delay {fmt_ms(f.delay.duration_ms)}@{pct(f.delay.per_million)}")
    if f.abort is not None:
        code = (
            f"http {f.abort.http_status}" if f.abort.http_status else f"grpc {f.abort.grpc_status}"
        )
        parts.append(f"abort {code}@{pct(f.abort.per_million)}")
    return ", ".join(parts) or "-"


def describe_filters(rule: ir.Rule) -> str:
    names = [type(f).__name__.removesuffix("Filter") for f in rule.filters]
    return ",".join(names) or "-"


def _views(parent: ir.Parent) -> Iterator[tuple[str, ir.VirtualHost]]:
    if isinstance(parent, ir.ServiceParent):
        yield "", parent.producer
        for c in parent.consumers:
            yield f"from {c.namespace}", c.vhost
    else:
        for vh in parent.vhosts:
            yield vh.domains[0], vh


def route_rows(table: ir.RouteTable) -> list[RouteRow]:
    rows: list[RouteRow] = []
    for parent in table.parents:
        for view, vhost in _views(parent):
            hostnames = ",".join(vhost.domains) if isinstance(parent, ir.GatewayParent) else "-"
            for rule in vhost.rules:
                src = rule.source
                t = rule.timeouts
                timeout = "-"
                if t.request_ms is not None or t.backend_request_ms is not None:
                    timeout = f"{fmt_ms(t.request_ms)}/{fmt_ms(t.backend_request_ms)}"
                rows.append(
                    RouteRow(
                        parent=parent.name,
                        view=view,
                        route=f"{src.kind}/{src.namespace}/{src.name}",
                        rule=rule.name,
                        hostnames=hostnames,
                        match=" | ".join(describe_match(m) for m in rule.matches),
                        backends=describe_backends(rule),
                        timeout=timeout,
                        retry=describe_retry(rule.retry),
                        fault=describe_fault(rule.fault),
                        filters=describe_filters(rule),
                    )
                )
    return rows


TABLE_COLUMNS = ("PARENT", "ROUTE", "MATCH", "BACKENDS", "TIMEOUT", "RETRY", "FAULT")
WIDE_COLUMNS = (*TABLE_COLUMNS[:2], "RULE", "HOSTNAMES", *TABLE_COLUMNS[2:], "FILTERS")


def row_cells(row: RouteRow, *, wide: bool) -> list[str]:
    parent = f"{row.parent} ({row.view})" if row.view else row.parent
    cells = [parent, row.route, row.match, row.backends, row.timeout, row.retry, row.fault]
    if wide:
        cells = [
            *cells[:2],
            row.rule.rsplit("/", 2)[-2] + "/" + row.rule.rsplit("/", 1)[-1],
            row.hostnames,
            *cells[2:],
            row.filters,
        ]
    return cells


def format_table(header: tuple[str, ...], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by three spaces, like kubectl and linkerd."""
    widths = [len(h) for h in header]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]
    lines = ["   ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"
