"""The dashboard's aiohttp app: pages, their htmx fragments, the vendored static files.

```
GET /                        namespaces + workloads  ┐ a full page (layout.html) on first load;
GET /workloads/NS/KIND/NAME  one workload            │ the fragment alone when htmx asks
GET /routes                  routes + explain form   │ (HX-Request), every REFRESH_S, cached
GET /rejected                rejected changes        ┘ per (path, snapshot seq)
GET /tap/NS/KIND/NAME        the workload view's live tap table + top (htmx, every 1 s):
                             tap.Taps, one control plane tap subscription per open view
GET /routes/explain?via=&method=&url=&headers=     manifests.explain_request (`mesh routes
                                                   explain`'s code), cached per table version
GET /static/htmx.min.js | dashboard.css | htmx.LICENSE    package data, long-cached
```

`dashboard_app(control_plane)` is what `mesh serve --dashboard` adds to the control plane's
loop and what `mesh dashboard` serves on its own; both read the control plane over its
admin port (`state.Poller`), so they show the same thing. `cli.dashboard.start` binds it with the
control plane's own `start_admin`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from string import Template

from aiohttp import web

from turnout.cli import explain as explain_mod
from turnout.cli.errors import CommandError
from turnout.cli.manifests import explain_request, parse_request
from turnout.dashboard import pages
from turnout.dashboard.state import DEFAULT_INTERVAL_S, Poller, Snapshot, Tables
from turnout.dashboard.tap import Taps

PACKAGE = Path(str(resources.files("turnout.dashboard")))
STATIC = PACKAGE / "static"
REFRESH_S = DEFAULT_INTERVAL_S
EXPLAIN_CACHE = 256
NAV = (("/", "Namespaces"), ("/routes", "Routes"), ("/rejected", "Rejected changes"))

POLLER = web.AppKey("poller", Poller)
TAPS = web.AppKey("taps", Taps)


class Renders:
    """Rendered views of the current snapshot (cleared when a poll makes a new one)."""

    def __init__(self) -> None:
        self.seq = -1
        self.pages: dict[tuple[str, bool], bytes] = {}
        self.explains: OrderedDict[tuple[object, ...], str] = OrderedDict()
        self.hits = 0


def _layout() -> Template:
    return Template((PACKAGE / "templates" / "layout.html").read_text(encoding="utf-8"))


def dashboard_app(control_plane: str, *, interval: float = REFRESH_S) -> web.Application:
    app = web.Application()
    poller = Poller(control_plane=control_plane, interval=interval)
    app[POLLER] = poller
    taps = app[TAPS] = Taps(control_plane=control_plane)
    renders = Renders()
    layout = _layout()

    def page(title: str, path: str, body: str, *, live: bool) -> str:
        nav = "".join(
            f'<a href="{href}"{" class=on" if href == path else ""}>{name}</a>'
            for href, name in NAV
        )
        trigger = f'hx-get="{path}" hx-trigger="every {interval:g}s" hx-swap="innerHTML"'
        return layout.substitute(
            title=title,
            nav=nav,
            control_plane=control_plane,
            live=trigger if live else "",
            body=body,
            refresh=f"{interval:g}",
        )

    async def view(
        request: web.Request, title: str, render: Callable[[Snapshot], str], extra: str = ""
    ) -> web.Response:
        snap = await poller.current()
        if snap.seq != renders.seq:
            renders.seq, renders.pages = snap.seq, {}
        fragment = request.headers.get("HX-Request") == "true"
        key = (request.path_qs, fragment)
        body = renders.pages.get(key)
        if body is None:
            html = render(snap)
            if not fragment:
                html = page(title, request.path, html, live=True)
                html = html.replace("<!--extra-->", extra, 1)
            body = html.encode()
            renders.pages[key] = body
        else:
            renders.hits += 1
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    async def index(request: web.Request) -> web.Response:
        return await view(request, "Namespaces", pages.namespaces)

    async def workload(request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        poller.want_edges()
        return await view(
            request, name, lambda s: pages.workload(s, ns, name), extra=pages.tap_panel(ns, name)
        )

    async def tap(request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        target = pages.tap_target(name)
        sub = taps.get(ns, target)
        html = pages.tap_view(
            sub.newest(),
            sub.top.rows(),
            ns=ns,
            target=target,
            events=sub.events,
            error=sub.error,
        )
        return web.Response(text=html, content_type="text/html")

    async def close_taps(_: web.Application) -> None:
        await taps.close()

    async def routes(request: web.Request) -> web.Response:
        snap = await poller.current()
        parents = sorted({r.parent for r in snap.tables.rows}) if snap.tables else []
        return await view(request, "Routes", pages.routes, extra=pages.explain_form(parents))

    async def rejected(request: web.Request) -> web.Response:
        return await view(request, "Rejected changes", lambda s: pages.rejected(s, control_plane))

    async def explain(request: web.Request) -> web.Response:
        q = request.query
        via, method, url = q.get("via", ""), q.get("method", "GET") or "GET", q.get("url", "")
        headers = tuple(h.strip() for h in q.get("headers", "").split(";") if h.strip())
        snap = await poller.current()
        key = (snap.tables.key if snap.tables else None, via, method, url, headers)
        html = renders.explains.get(key)
        if html is None:
            html = _explain(snap.tables, via, method, url, headers, control_plane)
            renders.explains[key] = html
            while len(renders.explains) > EXPLAIN_CACHE:
                renders.explains.popitem(last=False)
        return web.Response(text=html, content_type="text/html")

    app.router.add_get("/", index)
    app.router.add_get("/workloads/{ns}/{name:.+}", workload)
    app.router.add_get("/routes", routes)
    app.router.add_get("/routes/explain", explain)
    app.router.add_get("/rejected", rejected)
    app.router.add_get("/tap/{ns}/{name:.+}", tap)
    app.on_cleanup.append(close_taps)
    app.router.add_static("/static", STATIC, append_version=False)
    return app


def _explain(
    tables: Tables | None, via: str, method: str, url: str, headers: tuple[str, ...], cp: str
) -> str:
    if tables is None or tables.served.table is None:
        return pages.explain_error("the control plane serves no table yet")
    argv = ["routes", "explain", "--control-plane", cp, "--via", via, "-X", method, "--url", url]
    for h in headers:
        argv += ["-H", h]
    try:
        request = parse_request(method, url, headers)
        _, outcome = explain_request(tables.served.table, via=via, request=request)
    except (CommandError, ValueError) as exc:
        return pages.explain_error(str(exc))
    return pages.explained(explain_mod.outcome_text(outcome), argv)
