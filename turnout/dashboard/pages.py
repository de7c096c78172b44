"""The dashboard's views as HTML: one function per view, each a fragment htmx refreshes.

```
namespaces(snap)        /                     per namespace, then per workload: MESHED,
                                              SUCCESS, RPS, LATENCY_P50/P95/P99
workload(snap, ns, w)   /workloads/NS/KIND/N  its proxies, inbound numbers, outbound routes
routes(snap)            /routes               the served table with live columns + explain form
explained(text)         /routes/explain       `mesh routes explain`'s text for the form's request
rejected(snap)          /rejected             what the control plane held back, and why
tap_view(…)             /tap/NS/KIND/N        the workload's live tap table and top
```

Each view ends with the `mesh` command that prints the same data (`command`). A row whose
success rate is under `FAILING_BELOW` gets ``class="failing"`` (red). Pure functions of a
`Snapshot`: `app.py` caches their output per snapshot.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from urllib.parse import quote

from turnout.cli.live import QUANTILES, fmt_latency
from turnout.dashboard.state import Proxy, Snapshot
from turnout.viz import stats, summary, tap, top
from turnout.viz.stats import RouteStats

FAILING_BELOW = 0.95
STAT_COLUMNS = ("MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99")


def command(*argv: str) -> str:
    """The CLI line under a view (``data-command`` lets a test run it)."""
    line = shlex.join(["mesh", *argv])
    return (
        f'<p class="cmd">same data: <code data-command="{escape(line)}">$ {escape(line)}</code></p>'
    )


def _cell(text: str, cls: str = "") -> str:
    return f'<td class="{cls}">{escape(text)}</td>' if cls else f"<td>{escape(text)}</td>"


def stat_cells(st: RouteStats | None) -> tuple[list[str], bool]:
    """SUCCESS RPS P50 P95 P99 cells (`mesh routes --live`'s format), and whether it fails."""
    rate = None if st is None else st.success_rate
    if st is None or rate is None:
        return ["-"] * 5, False
    cells = [f"{rate * 100:.2f}%", f"{st.rps:.1f}rps"]
    cells += [fmt_latency(st.quantile(q)) for q in QUANTILES]
    return cells, rate < FAILING_BELOW


def table(header: Sequence[str], rows: Iterable[str], *, cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(rows) or f'<tr><td colspan="{len(header)}" class="empty">none</td></tr>'
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _row(first: Sequence[str], st: RouteStats | None, *, meshed: str | None, attrs: str) -> str:
    cells, failing = stat_cells(st)
    tds = "".join(first)
    if meshed is not None:
        tds += _cell(meshed)
    tds += "".join(_cell(c, "failing" if failing and i == 0 else "") for i, c in enumerate(cells))
    cls = ' class="failing"' if failing else ""
    return f"<tr{cls} {attrs}>{tds}</tr>"


def _by_workload(snap: Snapshot) -> dict[tuple[str, str], list[Proxy]]:
    out: dict[tuple[str, str], list[Proxy]] = {}
    for p in snap.proxies:
        out.setdefault((p.namespace, p.workload or p.pod or p.admin), []).append(p)
    return out


def _inbound(snap: Snapshot, proxies: Sequence[Proxy]) -> RouteStats | None:
    parts = [{"": snap.inbound[p.admin]} for p in proxies if p.admin in snap.inbound]
    return stats.merge(parts).get("") if parts else None


def window_note(snap: Snapshot) -> str:
    if snap.window_s is None:
        return '<p class="note">first scrape: numbers after the next refresh</p>'
    errors = "".join(f"<li>{escape(e)}</li>" for e in snap.errors)
    more = f'<ul class="errors">{errors}</ul>' if errors else ""
    return f'<p class="note">window {snap.window_s:.1f}s, poll #{snap.seq}</p>{more}'


def workload_href(ns: str, workload: str) -> str:
    return f"/workloads/{quote(ns, safe='')}/{quote(workload, safe='/')}"


def namespaces(snap: Snapshot) -> str:
    groups = _by_workload(snap)
    per_ns: dict[str, list[tuple[str, list[Proxy]]]] = {}
    for (ns, w), ps in sorted(groups.items()):
        per_ns.setdefault(ns, []).append((w, ps))
    ns_rows = []
    for ns, ws in per_ns.items():
        st = _inbound(snap, [p for _, ps in ws for p in ps])
        meshed = f"{sum(1 for _, ps in ws if ps)}/{len(ws)}"
        ns_rows.append(_row([_cell(ns)], st, meshed=meshed, attrs=f'data-namespace="{escape(ns)}"'))
    w_rows = []
    for (ns, w), ps in sorted(groups.items()):
        link = f'<td><a href="{escape(workload_href(ns, w))}">{escape(w)}</a></td>'
        w_rows.append(
            _row(
                [_cell(ns), link],
                _inbound(snap, ps),
                meshed=f"{len(ps)}/{len(ps)}",
                attrs=f'data-workload="{escape(ns)}/{escape(w)}"',
            )
        )
    return (
        "<h2>Namespaces</h2>"
        + table(("NAMESPACE", *STAT_COLUMNS), ns_rows, cls="stat ns")
        + command("stat", "ns")
        + "<h2>Workloads</h2>"
        + table(("NAMESPACE", "NAME", *STAT_COLUMNS), w_rows, cls="stat workloads")
        + command("stat", "deploy", "-A")
        + window_note(snap)
    )


def _route_rows(snap: Snapshot, live: Mapping[stats.RouteKey, RouteStats]) -> list[str]:
    if snap.tables is None:
        return []
    out = []
    for r in snap.tables.rows:
        first = [_cell(r.parent), _cell(r.route), _cell(r.match), _cell(r.backends)]
        st = stats.lookup(live, parent=r.parent, rule=r.rule)
        attrs = f'data-route="{escape(r.parent)} {escape(r.rule)}"'
        out.append(_row(first, st, meshed=None, attrs=attrs))
    return out


ROUTE_COLUMNS = ("PARENT", "ROUTE", "MATCH", "BACKENDS", *STAT_COLUMNS[1:])


def workload(snap: Snapshot, ns: str, name: str) -> str:
    proxies = _by_workload(snap).get((ns, name), [])
    short = name.partition("/")[2]
    target = tap_target(name)
    proxy_rows = [
        f"<tr><td>{escape(p.pod)}</td><td>{escape(p.admin or '(proxyless)')}</td></tr>"
        for p in proxies
    ]
    inbound = _row(
        [_cell(name)],
        _inbound(snap, proxies),
        meshed=f"{len(proxies)}/{len(proxies)}",
        attrs=f'data-workload="{escape(ns)}/{escape(name)}"',
    )
    live = stats.merge(snap.outbound[p.admin] for p in proxies if p.admin in snap.outbound)
    called = {k.parent for k in live}
    rows = [
        r
        for r in _route_rows(snap, live)
        if any(f'data-route="{escape(c or "")} ' in r for c in called)
    ]
    admins = [p.admin for p in proxies if p.admin]
    metrics = [a for admin in admins for a in ("--metrics", admin)]
    outbound = [e for e in snap.edges if (e.src_namespace, e.src) == (ns, short)]
    inbound_edges = [
        e
        for e in snap.edges
        if e.dst_namespace == ns and (e.dst == short or short.startswith(e.dst + "-"))
    ]
    edges_html = (
        "<h3>Edges</h3>"
        + table(
            EDGE_COLUMNS,
            [edge_row(e, "inbound") for e in inbound_edges]
            + [edge_row(e, "outbound") for e in outbound],
            cls="edges",
        )
        + command("edges", target, "-n", ns)
        if snap.prometheus is not None
        else '<p class="note">edges: the control plane runs no Prometheus (mesh serve'
        " --prometheus); <code>mesh edges</code> scrapes the proxies over a window</p>"
    )
    return (
        f"<h2>{escape(ns)} / {escape(name)}</h2>"
        + table(("POD", "ADMIN"), proxy_rows, cls="proxies")
        + "<h3>Inbound</h3>"
        + table(("NAME", *STAT_COLUMNS), [inbound], cls="stat inbound")
        + command("stat", target, "-n", ns)
        + "<h3>Outbound routes</h3>"
        + table(ROUTE_COLUMNS, rows, cls="stat routes")
        + command("routes", "--live", *metrics)
        + edges_html
        + window_note(snap)
    )


EDGE_COLUMNS = ("DIRECTION", "SRC", "DST", "SRC_NS", "DST_NS", "SECURED")


def edge_row(e: summary.EdgeRow, direction: str) -> str:
    """One `mesh edges` row; an edge without mTLS is red (plaintext)."""
    cls = "" if e.secured == "√" else ' class="plaintext"'
    cells = (direction, e.src, e.dst, e.src_namespace, e.dst_namespace, e.secured)
    tds = "".join(_cell(c) for c in cells)
    return f'<tr{cls} data-edge="{escape(e.src)}>{escape(e.dst)}">{tds}</tr>'


def routes(snap: Snapshot) -> str:
    served = snap.tables.served if snap.tables is not None else None
    head = "no table served yet" if served is None else served.summary().splitlines()[0]
    return (
        f'<p class="summary">{escape(head)}</p>'
        + table(ROUTE_COLUMNS, _route_rows(snap, snap.routes()), cls="stat routes")
        + command(
            "routes",
            "--live",
            *(a for p in snap.proxies if p.admin for a in ("--metrics", p.admin)),
        )
        + window_note(snap)
    )


def explain_form(parents: Sequence[str]) -> str:
    options = "".join(f'<option value="{escape(p)}">' for p in parents)
    return (
        '<form id="explain" hx-get="/routes/explain" hx-target="#explained">'
        '<label>via <input name="via" list="parents" required size="36"></label>'
        f'<datalist id="parents">{options}</datalist>'
        '<label>method <input name="method" value="GET" size="6"></label>'
        '<label>url <input name="url" value="http://web.emojivoto/" size="40" required></label>'
        '<label>headers <input name="headers" placeholder="x-canary: true; ..." size="24"></label>'
        '<button type="submit">explain</button></form><div id="explained"></div>'
    )


def explained(text: str, argv: Sequence[str]) -> str:
    return f'<pre class="explain">{escape(text)}</pre>' + command(*argv)


def explain_error(message: str) -> str:
    return f'<p class="error">error: {escape(message)}</p>'


def rejected(snap: Snapshot, control_plane: str) -> str:
    served = snap.tables.served if snap.tables is not None else None
    if served is None:
        return "<p>control plane not read yet</p>"
    items = []
    for r in served.rejected:
        kept = "its last good version is served" if r.kept else "left out"
        diags = "".join(
            f"<li>{escape(d.severity.value)}: {escape(d.message)}</li>" for d in r.diagnostics
        )
        items.append(
            f'<li class="rejected failing" data-file="{escape(r.file)}"><b>{escape(r.file)}</b>'
            f" ({escape(kept)})<ul>{diags}</ul></li>"
        )
    body = f'<ul class="rejected">{"".join(items)}</ul>' if items else '<p class="ok">none</p>'
    error = (
        f'<p class="error">the last change failed: {escape(served.error)}</p>'
        if served.error
        else ""
    )
    return (
        f'<p class="summary">{escape(served.summary().splitlines()[0])}</p>'
        + error
        + body
        + command("routes", "--control-plane", control_plane)
    )


TAP_COLUMNS = ("DIRECTION", "SRC", "DST", "TLS", "METHOD", "AUTHORITY", "PATH", "STATUS", "LATENCY")
TOP_COLUMNS = ("SOURCE", "DESTINATION", "METHOD", "PATH", "COUNT", "BEST", "WORST", "LAST")
TOP_SHOWN = 20


def _tap_row(e: Mapping[str, object]) -> str:
    status = e.get("status")
    latency = e.get("latency_us")
    failing = (isinstance(status, int) and status >= 500) or bool(e.get("reset_error"))
    grpc = e.get("grpc_status")
    shown = "-" if status is None else str(status)
    if isinstance(grpc, int) and grpc:
        shown += f" grpc {tap.grpc_name(grpc)}"
        failing = True
    cells = (
        str(e.get("direction", "")),
        str(e.get("src", "")),
        str(e.get("dst", "")),
        str(e.get("tls", "")),
        str(e.get("method", "")),
        str(e.get("authority", "")),
        str(e.get("path", "")),
        shown,
        top.latency(latency) if isinstance(latency, int) else "-",
    )
    cls = ' class="failing"' if failing else ""
    return f"<tr{cls} data-tap>{''.join(_cell(c) for c in cells)}</tr>"


def _top_row(r: top.Row) -> str:
    cells = [r.source, r.destination, r.method, r.path, str(r.count)]
    cells += [top.latency(r.best_us), top.latency(r.worst_us), top.latency(r.last_us)]
    failing = r.success_rate < FAILING_BELOW
    rate = _cell(f"{r.success_rate * 100:.2f}%", "failing" if failing else "")
    cls = ' class="failing"' if failing else ""
    return f"<tr{cls} data-top>{''.join(_cell(c) for c in cells)}{rate}</tr>"


def tap_panel(ns: str, name: str) -> str:
    """The workload view's live tap part (outside the 2 s refresh: its own, faster poll)."""
    href = "/tap" + workload_href(ns, name)[len("/workloads") :]
    return (
        f'<div id="tap" hx-get="{escape(href)}" hx-trigger="load, every 1s"'
        ' hx-swap="innerHTML"><p class="note">starting tap…</p></div>'
    )


def tap_view(
    sub_rows: Sequence[Mapping[str, object]],
    top_rows: Sequence[top.Row],
    *,
    ns: str,
    target: str,
    events: int,
    error: str,
) -> str:
    """The live tap table (newest first) and top, each with its `mesh` command."""
    note = (
        f'<p class="error">tap: {escape(error)}</p>'
        if error
        else f'<p class="note">{events} tap events since this view opened</p>'
    )
    return (
        "<h3>Live tap</h3>"
        + table(TAP_COLUMNS, [_tap_row(e) for e in sub_rows], cls="tap")
        + command("tap", target, "-n", ns)
        + "<h3>Top</h3>"
        + table(
            (*TOP_COLUMNS, "SUCCESS RATE"), [_top_row(r) for r in top_rows[:TOP_SHOWN]], cls="top"
        )
        + command("top", target, "-n", ns)
        + note
    )


def tap_target(name: str) -> str:
    """``deployment/web-v1`` → ``deploy/web-v1`` (what the commands take)."""
    kind, _, short = name.partition("/")
    return f"{'deploy' if kind == 'deployment' else kind}/{short}" if short else name
