"""The viz suites' shared lab: the demo's mesh (`turnout.demo.orchestrate.Demo`, the same
processes `mesh demo` runs) with its Prometheus and the vote-bot's traffic, started once per
session.

```
viz_lab (session fixture) ──thread "viz-lab" runs an event loop──> Demo.start()
   mesh serve --prometheus 127.0.0.1:P, emoji, voting v1/v2, web v1/v2 (proxyless gRPC),
   inbound proxies web-v1/web-v2, outbound proxy vote-bot, vote-bot (20 rps)
   ──wait (bounded) until Prometheus holds >= 2 samples of request_total for each of
     LAB_PODS and scraped each of the 5 targets (+ the web apps) twice (so increase()
     over a window has an answer)──> Lab
teardown: Demo.stop() on that loop (SIGTERM by pid, then SIGKILL), the loop closed
```

Use it from a test module of tests/viz (conftest.py wires it in): ``def test_x(viz_lab: Lab)``.
Another suite imports the fixture into its own conftest.py (`from tests.viz.lab import
viz_lab`). The mesh keeps running for the whole session, so tests must not change it (no
route edits, no stopped processes): read it only. Skips when `prometheus` is missing.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from turnout.demo.orchestrate import EXAMPLES, HOST, Demo
from turnout.viz.prom import QueryError, VectorSample, instant_query

T = TypeVar("T")

LAB_PODS = ("vote-bot", "web-v1", "web-v2")
"""The pods whose proxies Prometheus must have scraped (twice) before the lab is ready."""
LAB_RPS = 20.0
START_TIMEOUT_S = 60.0
"""Demo start plus Prometheus' discovery (up to 5 s) and two 2 s scrapes, on a busy machine."""
READY_QUERY = "min by (pod) (count_over_time(request_total[1m]))"
LAB_TARGETS = 8
"""Scrape targets: the three proxies and the five proxyless apps (their admin ports)."""
TARGETS_QUERY = 'count(count_over_time(up{job="turnout-proxies"}[1m]) >= 2)'


@dataclass
class Lab:
    """The running demo mesh and how to reach it."""

    demo: Demo
    loop: asyncio.AbstractEventLoop
    """The loop (in `thread`) that owns the demo's child processes."""
    thread: threading.Thread

    @property
    def prometheus(self) -> str:
        """``http://HOST:PORT`` of the mesh's Prometheus."""
        assert self.demo.prometheus_url is not None
        return self.demo.prometheus_url

    @property
    def control_plane(self) -> str:
        """``HOST:PORT`` of `mesh serve`'s admin port (`--control-plane`)."""
        return f"{HOST}:{self.demo.ports.serve_admin}"

    @property
    def admin(self) -> dict[str, str]:
        """pod -> ``HOST:PORT`` of its proxy's admin port (`/metrics`, `/tap`)."""
        p = self.demo.ports
        return {
            "vote-bot": f"{HOST}:{p.outbound_admin}",
            "web-v1": f"{HOST}:{p.inbound_admin['v1']}",
            "web-v2": f"{HOST}:{p.inbound_admin['v2']}",
        }

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run `coro` on the lab's loop (from a sync test) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def metrics(self, pod: str) -> str:
        """The exposition the proxy of `pod` serves right now."""
        url = f"http://{self.admin[pod]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def debug(self, path: str) -> Any:
        """A JSON answer of the control plane's admin port (``/debug/proxies``, ...)."""
        with urllib.request.urlopen(f"http://{self.control_plane}{path}", timeout=5) as resp:
            return json.loads(resp.read())

    def query(self, promql: str) -> list[VectorSample]:
        return self.run(instant_query(self.prometheus, promql))


async def wait_for_series(prometheus: str, deadline: float) -> None:
    """Until each of LAB_PODS has >= 2 request_total samples in Prometheus and each of the
    LAB_TARGETS was scraped twice (bounded)."""
    got: dict[str, float] = {}
    targets = 0.0
    last = ""
    while time.monotonic() < deadline:
        try:
            series = await instant_query(prometheus, READY_QUERY)
            got = {s.labels.get("pod", ""): s.value for s in series}
            targets = sum(s.value for s in await instant_query(prometheus, TARGETS_QUERY))
        except QueryError as exc:
            last = str(exc)
        if all(got.get(pod, 0) >= 2 for pod in LAB_PODS) and targets >= LAB_TARGETS:
            return
        await asyncio.sleep(0.25)
    raise TimeoutError(
        f"prometheus {prometheus}: no series for {LAB_PODS} yet: {got}, targets scraped"
        f" twice: {targets:g}/{LAB_TARGETS} {last}"
    )


def start_lab() -> Lab:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="viz-lab", daemon=True)
    thread.start()
    demo = Demo(examples=EXAMPLES / "emojivoto", rps=LAB_RPS, with_prometheus=True)
    lab = Lab(demo=demo, loop=loop, thread=thread)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        lab.run(demo.start(), timeout=START_TIMEOUT_S)
        lab.run(wait_for_series(lab.prometheus, deadline), timeout=START_TIMEOUT_S)
    except BaseException:
        stop_lab(lab)
        raise
    return lab


def stop_lab(lab: Lab) -> None:
    try:
        lab.run(lab.demo.stop(), timeout=30)
    finally:
        lab.loop.call_soon_threadsafe(lab.loop.stop)
        lab.thread.join(10)
        lab.loop.close()


@pytest.fixture(scope="session")
def viz_lab() -> Iterator[Lab]:
    """The demo's mesh with its Prometheus and traffic, shared by the session (read only)."""
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed: `make tools` installs Debian's package")
    lab = start_lab()
    try:
        yield lab
    finally:
        stop_lab(lab)
