"""`mesh dashboard` and `mesh serve --dashboard`: the mesh in a browser, each view with its command.

```
browser ──GET──> app.dashboard_app (aiohttp) ──> pages.* (HTML fragments, htmx refresh)
                        │
                        └─> state.Poller ──> control plane admin: /debug/diagnostics,
                                             /debug/table (per version), /debug/proxies
                                         ──> every proxy's admin /metrics (viz.stats deltas)
```

The dashboard is the CLI's other front end: every view calls the function its `mesh`
command calls (`cli.views.route_rows`, `cli.manifests.explain_request`, `cli.served`,
`viz.stats`) and prints that command under it. The front end is plain HTML and htmx
(vendored in `static/`, with its licence); nothing is fetched from elsewhere at run time.
"""

from __future__ import annotations
