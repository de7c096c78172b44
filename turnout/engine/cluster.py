"""`mesh serve --kubernetes`: the API server as the source, route status written back.

```
KubernetesSource (list+watch) ──snapshot──> compile_snapshot (in a thread) ──┬─> AdsServer.publish
                                                                             └─> write_route_status
```

A snapshot with errors in some objects still compiles the others (the API server admitted
them all, so errors here are our stricter rules); a compile that fails internally keeps the
last good table. Status is written for every route the compiler gave status to, only our
`status.parents` entries, and only when something changed (the source skips no-op writes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from turnout.engine.diagnostics import Diagnostic, Severity
from turnout.engine.model import Resources
from turnout.engine.pipeline import CompiledInputs, compile_snapshot
from turnout.engine.server import AdsServer
from turnout.engine.sources.k8s import KubernetesSource, api_client_from_environment

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ClusterControlPlane:
    """Joins the Kubernetes source to the ADS server."""

    server: AdsServer
    source: KubernetesSource | None = None
    last: CompiledInputs | None = None
    published: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def on_snapshot(self, resources: Resources, diagnostics: Sequence[Diagnostic]) -> None:
        async with self._lock:  # snapshots are applied in order, one at a time
            try:
                compiled = await asyncio.to_thread(compile_snapshot, resources, diagnostics)
            except Exception:
                log.exception("compile failed; keeping the last good table")
                return
            for d in compiled.diagnostics:
                if d.severity is not Severity.INFO:
                    log.warning("%s", d)
            self.last = compiled
            self.published = self.server.publish(compiled.result.table)
            if self.source is not None:
                # SMI TrafficSplits have no status subresource; only routes get status.
                statuses = [
                    s
                    for s in compiled.result.statuses
                    if s.route.kind in ("HTTPRoute", "GRPCRoute")
                ]
                await self.source.write_route_status(statuses)


async def start_cluster_control_plane(
    server: AdsServer, *, kubeconfig: str | None = None, context: str | None = None
) -> ClusterControlPlane:
    api = await asyncio.to_thread(
        api_client_from_environment, kubeconfig=kubeconfig, context=context
    )
    plane = ClusterControlPlane(server=server)
    plane.source = KubernetesSource(api, on_snapshot=plane.on_snapshot)
    await plane.source.start()
    return plane
