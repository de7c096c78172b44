"""Reading what the mesh measured: the proxies' Prometheus expositions turned into per-route
and per-proxy numbers (`stats`), instant queries against a Prometheus that scraped them
(`prom`), one interface over both (`source`: Prometheus, or the proxies scraped twice),
kubectl-style targets (`targets`) and the `mesh stat` / `mesh edges` rows (`summary`).
Used by the viz commands, `mesh routes --live` and the demos; it prints nothing and imports
neither the engine nor the proxy."""

from __future__ import annotations
