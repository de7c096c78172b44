"""Turnout's Grafana dashboards: JSON files shipped in the package, read as text.

```
turnout/viz/grafana/control-plane.json   the control plane's /metrics (job turnout-control-plane)
                    namespace.json       per-workload success, RPS, latency, TCP; in vs out
                    workload.json        one workload by peer: status codes, mTLS, authz
                    route.json           one route: effective vs actual, latency, retries
dashboard_text(name) ──> the file's text (what `mesh install --grafana` puts in a ConfigMap
                          and `mesh install --grafana-json DIR` writes out)
```

Each file is Grafana's dashboard model (``schemaVersion`` 39) with a fixed ``uid``
(``turnout-<name>``) and a ``DS_PROMETHEUS`` datasource variable every panel and template
variable queries through, so the same file imports into any Grafana (the dashboard asks which
Prometheus) and provisions through Grafana's dashboard sidecar unchanged. The PromQL reads the
Linkerd-shaped families the proxies export (`turnout.proxy.families`) with the workload labels
they carry themselves (``namespace``, ``deployment``, ``pod``); docs/grafana.md says what each
panel shows. tests/viz/test_grafana.py runs every query against a real Prometheus.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Final

DASHBOARDS: Final[tuple[str, ...]] = ("control-plane", "namespace", "workload", "route")
"""The dashboards, by file stem (``uid`` is ``turnout-<stem>``)."""


def dashboard_text(name: str) -> str:
    """The JSON text of dashboard `name` (one of `DASHBOARDS`), as shipped."""
    if name not in DASHBOARDS:
        raise ValueError(f"no Grafana dashboard {name!r} (known: {', '.join(DASHBOARDS)})")
    return resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")


def dashboard(name: str) -> dict[str, Any]:
    """Dashboard `name`, parsed."""
    data: dict[str, Any] = json.loads(dashboard_text(name))
    return data


def file_name(name: str) -> str:
    """``turnout-<name>.json``: the file (and ConfigMap key) a dashboard is written as."""
    return f"turnout-{name}.json"
