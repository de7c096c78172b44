"""Prometheus file-based service discovery of the connected proxies (`mesh serve --prometheus-sd`).

```
ADS stream identified / closed ──AdsServer.on_streams_changed──> TargetsFile.changed()
                                                                   │ (wakes the writer task)
writer task: scrape_groups(server.status()) ──JSON, unchanged? skip──> FILE.tmp ─rename─> FILE
```

Each proxy reports its admin port in its xDS node metadata (`metadata.admin`,
`StreamStatus.admin`); the file holds one target group per distinct admin address,
``[{"targets": ["127.0.0.1:4191"], "labels": {"namespace", "workload", "pod"}}]``, the shape
Prometheus' `file_sd_configs` reads (it watches the file and rereads it on change). The
file is rewritten atomically (a temp file renamed over it, so Prometheus never reads half of
it) and only when its text changes: a reconnect of the same proxy costs no write. A stream
without `admin` (a proxyless client) is left out; a proxy bound on an unspecified host
(``0.0.0.0:4191``) is listed at the address its ADS stream came from.

Not here: Prometheus itself (`prometheus.py`), reading metrics (`turnout.viz`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from turnout.engine.server.ads_status import ServerStatus

log = logging.getLogger(__name__)

UNSPECIFIED_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
"""Admin hosts that name no address to scrape: the stream's peer address is used instead."""


def scrape_target(admin: str, peer: str) -> str:
    """``HOST:PORT`` to scrape for a proxy whose node said `admin` and whose ADS stream
    came from `peer` (grpc's ``ipv4:10.0.0.7:53312`` / ``ipv6:[::1]:53312``)."""
    host, _, port = admin.rpartition(":")
    if host not in UNSPECIFIED_HOSTS:
        return admin
    kind, _, address = peer.partition(":")
    peer_host = address.rpartition(":")[0]
    if kind not in ("ipv4", "ipv6") or not peer_host:
        return admin
    return f"{peer_host}:{port}"


def scrape_groups(status: ServerStatus) -> list[dict[str, object]]:
    """The file_sd target groups of `status`'s streams: one per distinct target, sorted by
    target; the first stream of a target (by peer) gives its labels (``--workers``
    children report their parent's admin, with the same labels)."""
    groups: dict[str, dict[str, str]] = {}
    for s in status.streams:
        if not s.node_id or not s.admin:
            continue
        target = scrape_target(s.admin, s.peer)
        if target not in groups:
            labels = {"namespace": s.namespace or "", "workload": s.workload, "pod": s.pod}
            groups[target] = {k: v for k, v in labels.items() if v}
    return [{"targets": [t], "labels": groups[t]} for t in sorted(groups)]


def write_atomic(path: Path, text: str) -> None:
    """`text` into `path` through a temp file in the same directory and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class TargetsFile:
    """Keeps `path` equal to the scrape groups of `status()`, rewritten when they change."""

    def __init__(self, path: Path, status: Callable[[], ServerStatus]) -> None:
        self.path = path
        self._status = status
        self._written: str | None = None
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.writes = 0
        """Files written since start (an unchanged set of targets writes none)."""

    def changed(self) -> None:
        """The set of streams changed (`AdsServer.on_streams_changed`): look again."""
        self._wakeup.set()

    async def start(self) -> None:
        """Write the file once (an empty list before any proxy connects), then follow."""
        await self.sync()
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="targets file")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _follow(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self.sync()
            except OSError as exc:  # a full disk or a removed directory: keep serving
                log.error("targets file not written path=%s error=%s", self.path, exc)

    async def sync(self) -> bool:
        """Write the file now if its targets changed since the last write; True if written."""
        groups = scrape_groups(self._status())
        text = json.dumps(groups, indent=1, sort_keys=True) + "\n"
        if text == self._written:
            return False
        await asyncio.to_thread(write_atomic, self.path, text)
        self._written = text
        self.writes += 1
        log.info("targets file written path=%s targets=%d", self.path, len(groups))
        return True
