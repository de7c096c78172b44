"""Which `turnout.viz.source.Source` a viz command reads, and the line that says so.

```
--prometheus URL ──────────────────────────────────────────────> PromSource(URL, -t or 1m)
else GET --control-plane /debug/diagnostics: "prometheus" URL ───> PromSource(URL, -t or 1m)
else GET --control-plane /debug/proxies: every "admin" HOST:PORT ─> ScrapeSource(-t or 10s)
     stderr: "no Prometheus: scraping 3 proxies directly over 10s"
```

`mesh routes --live` asks the same way (`live_prometheus`, `prometheus_route_stats`). A
control plane that does not answer and no `--prometheus`: `CommandError`, one line (exit
2). The workloads' pods (MESHED) come from `/debug/proxies` too: `running_pods`.
"""

from __future__ import annotations

import argparse
import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

from turnout.cli.errors import CommandError, UsageError
from turnout.viz.source import PromSource, ScrapeSource, Source
from turnout.viz.stats import RouteKey, RouteStats, metrics_url, route_stats_of_vectors

DEFAULT_PROM_WINDOW_S = 60.0
"""linkerd viz stat's default `-t 1m`."""
DEFAULT_SCRAPE_WINDOW_S = 10.0
"""Without Prometheus the command waits the whole window: shorter by default."""
TIMEOUT_S = 5.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)?")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_window(text: str) -> float:
    """``30s``, ``1m``, ``500ms``, ``10`` (seconds) -> seconds (> 0)."""
    m = _DURATION.fullmatch(text.strip())
    if m is None or float(m.group(1)) <= 0:
        raise UsageError(f"-t/--window: not a duration: {text!r} (e.g. 30s, 1m)")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def _get_json(address: str, path: str) -> Mapping[str, object]:
    url = f"http://{address}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            data = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        why = getattr(exc, "reason", None) or exc
        raise CommandError(f"control plane {address}: cannot read {path}: {why}") from None
    if not isinstance(data, dict):
        raise CommandError(f"control plane {address}: {path} is not a JSON object")
    return data


@dataclass(frozen=True, slots=True)
class Proxy:
    namespace: str
    workload: str
    """``deployment/web``."""
    pod: str
    admin: str


def proxies(address: str) -> list[Proxy]:
    got = _get_json(address, "/debug/proxies").get("proxies")
    out = []
    for p in got if isinstance(got, list) else []:
        if isinstance(p, dict):
            out.append(
                Proxy(*(str(p.get(k) or "") for k in ("namespace", "workload", "pod", "admin")))
            )
    return out


def running_pods(found: list[Proxy]) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(namespace, kind, name) -> (meshed, running) pods, from what the control plane
    knows: each pod a proxy named (``--pod``), meshed when that proxy serves metrics (an
    admin port); a workload whose streams name no pod (proxyless gRPC) counts one."""
    pods: dict[tuple[str, str, str], dict[str, bool]] = {}
    for p in found:
        kind, _, name = p.workload.partition("/")
        if not name:
            continue
        seen = pods.setdefault((p.namespace, kind, name), {})
        if p.pod:
            seen[p.pod] = seen.get(p.pod, False) or bool(p.admin)
    return {key: (sum(seen.values()), len(seen)) if seen else (1, 1) for key, seen in pods.items()}


def open_source(args: argparse.Namespace, err: TextIO) -> tuple[Source, list[Proxy] | None]:
    """The source per the flags (see the module docstring), and the proxies when the
    control plane answered."""
    window = None if args.window is None else parse_window(args.window)
    found: list[Proxy] | None = None
    url = args.prometheus
    try:
        if url is None:
            url = _get_json(args.control_plane, "/debug/diagnostics").get("prometheus")
        found = proxies(args.control_plane)
    except CommandError:
        if args.prometheus is None:
            raise
    if isinstance(url, str) and url:
        return PromSource(url, window or DEFAULT_PROM_WINDOW_S), found
    assert found is not None
    admins = sorted({p.admin for p in found if p.admin})
    seconds = window or DEFAULT_SCRAPE_WINDOW_S
    print(
        f"no Prometheus: scraping {len(admins)} proxies directly over {seconds:g}s"
        + ("" if window else " (-t to change; mesh serve --prometheus keeps history)"),
        file=err,
    )
    err.flush()
    return ScrapeSource([metrics_url(a) for a in admins], seconds), found


ROUTE_FAMILIES = (
    ("route_response_total", "classification"),
    ("route_actual_response_total", "classification"),
    ("route_response_latency_ms_bucket", "le"),
)


async def prometheus_route_stats(source: PromSource) -> dict[RouteKey, RouteStats]:
    """`linkerd viz routes`' queries: ``sum(increase(route_response_total{direction=
    "outbound"}[W])) by (namespace, dst, rt_route, classification)``, the same on
    ``route_actual_response_total`` and on the latency buckets by ``le``."""
    got: list[tuple[str, Mapping[str, str], float]] = []
    for metric, extra in ROUTE_FAMILIES:
        vector = await source.increase(
            metric, {"direction": "outbound"}, ["namespace", "dst", "rt_route", extra]
        )
        got.extend((metric, s.labels, s.value) for s in vector)
    return route_stats_of_vectors(got, seconds=source.window_s)


def live_prometheus(args: argparse.Namespace, address: str) -> PromSource | list[str]:
    """`mesh routes --live` without --metrics: the Prometheus to ask (-t/--window; the
    flag's, else the control plane's), else the metrics URLs of the control plane's proxies."""
    url = args.prometheus
    if url is None:
        url = _get_json(address, "/debug/diagnostics").get("prometheus")
    if isinstance(url, str) and url:
        return PromSource(url, args.window)
    return sorted({metrics_url(p.admin) for p in proxies(address) if p.admin})
