"""Reading what the mesh measured: the proxies' Prometheus expositions turned into per-route
and per-proxy numbers (`stats`), and instant queries against a Prometheus that scraped them
(`prom`). Used by `mesh routes --live` and the demos; it prints
nothing and imports neither the engine nor the proxy."""

from __future__ import annotations
