"""`mesh serve --prometheus`: Debian's `prometheus` as a child of the control plane, scraping
every connected proxy (through the targets file) and the control plane's own admin port.

```
start_prometheus(workdir, targets_file=, control_plane=, settings=)
   workdir/prometheus.yml  (prometheus_config: job turnout-proxies: file_sd_configs -> the
                            targets file, honor_labels; job turnout-control-plane: static)
   workdir/data/           (its TSDB)       workdir/prometheus.log  (its stdout and stderr)
   `prometheus` child ──until GET /-/ready is 200──> PrometheusProcess(url, pid)
PrometheusProcess.stop(): SIGTERM, bounded wait, then SIGKILL
```

`honor_labels` keeps the proxies' own `namespace`/`pod`/`deployment` labels (the proxy exports
them, `turnout.proxy.metrics`) where they meet the target's labels of the same name; the
values agree, the only difference is that Prometheus would otherwise rename the scraped ones
`exported_*`. The scrape interval is short (seconds) because the viz commands look at the
last few seconds of a local mesh, not at weeks of history.

Not here: writing the targets file (`targets.py`), querying (`turnout.viz`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from turnout.engine.config import DEFAULT_PROMETHEUS_ADDRESS
from turnout.engine.errors import ControlPlaneError

log = logging.getLogger(__name__)

DEFAULT_SCRAPE_INTERVAL_MS = 2_000
DEFAULT_START_TIMEOUT_MS = 30_000
"""How long Prometheus gets to answer /-/ready (it replays its WAL and loads the config)."""
DEFAULT_STOP_TIMEOUT_MS = 5_000
"""How long Prometheus gets to stop after SIGTERM before it is killed."""
LOG_TAIL_CHARS = 500
"""How much of Prometheus' log an error message quotes."""

PROXIES_JOB = "turnout-proxies"
CONTROL_PLANE_JOB = "turnout-control-plane"


@dataclass(frozen=True, slots=True, kw_only=True)
class PrometheusSettings:
    """How the control plane runs Prometheus; durations in milliseconds."""

    binary: str = "prometheus"
    """The executable, a path or a name looked up on PATH."""
    listen: str = DEFAULT_PROMETHEUS_ADDRESS
    """``HOST:PORT`` of its HTTP API (`--web.listen-address`)."""
    scrape_interval_ms: int = DEFAULT_SCRAPE_INTERVAL_MS
    """Scrape and rule-evaluation interval; the scrape timeout is the same."""
    start_timeout_ms: int = DEFAULT_START_TIMEOUT_MS
    stop_timeout_ms: int = DEFAULT_STOP_TIMEOUT_MS


def prometheus_config(
    *, targets_file: Path, control_plane: str, scrape_interval_ms: int
) -> dict[str, object]:
    """The prometheus.yml (as data; JSON is YAML) scraping the proxies of `targets_file`
    and the control plane's admin `control_plane` (``HOST:PORT``), both at `/metrics`."""
    interval = f"{scrape_interval_ms}ms"
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "scrape_configs": [
            {
                "job_name": PROXIES_JOB,
                "honor_labels": True,
                "metrics_path": "/metrics",
                "file_sd_configs": [{"files": [str(targets_file)]}],
            },
            {
                "job_name": CONTROL_PLANE_JOB,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [control_plane]}],
            },
        ],
    }


@dataclass
class PrometheusProcess:
    """A running `prometheus` child; `stop()` ends it."""

    process: asyncio.subprocess.Process
    url: str
    """``http://HOST:PORT`` of its HTTP API."""
    workdir: Path
    stop_timeout_ms: int = DEFAULT_STOP_TIMEOUT_MS

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after `stop_timeout_ms`; idempotent."""
        proc = self.process
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                async with asyncio.timeout(self.stop_timeout_ms / 1000):
                    await proc.wait()
            except TimeoutError:
                log.error("prometheus did not stop in time, killing pid=%d", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        log.info("prometheus stopped pid=%d code=%s", proc.pid, proc.returncode)


def log_tail(workdir: Path) -> str:
    path = workdir / "prometheus.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][-LOG_TAIL_CHARS:] if lines else "(no output)"


async def start_prometheus(
    workdir: Path, *, targets_file: Path, control_plane: str, settings: PrometheusSettings
) -> PrometheusProcess:
    """Write the config into `workdir`, start Prometheus there and wait until it is ready.
    A missing binary, an early exit or no readiness in time: `ControlPlaneError`, one line
    (with the last line of its log), and no process left running."""
    binary = shutil.which(settings.binary)
    if binary is None:
        raise ControlPlaneError(f"no {settings.binary} executable (make tools installs Debian's)")
    config = prometheus_config(
        targets_file=targets_file,
        control_plane=control_plane,
        scrape_interval_ms=settings.scrape_interval_ms,
    )
    config_file = workdir / "prometheus.yml"
    await asyncio.to_thread(config_file.write_text, json.dumps(config, indent=1) + "\n")
    with (workdir / "prometheus.log").open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={settings.listen}",
            "--log.level=warn",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            cwd=workdir,
        )
    running = PrometheusProcess(
        proc, f"http://{settings.listen}", workdir, stop_timeout_ms=settings.stop_timeout_ms
    )
    try:
        await _wait_ready(running, settings.start_timeout_ms)
    except BaseException:
        await running.stop()
        raise
    log.info("prometheus ready url=%s pid=%d config=%s", running.url, proc.pid, config_file)
    return running


async def _wait_ready(running: PrometheusProcess, timeout_ms: int) -> None:
    timeout = aiohttp.ClientTimeout(total=1)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                while running.process.returncode is None:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with session.get(f"{running.url}/-/ready") as resp:
                            if resp.status == 200:
                                return
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise ControlPlaneError(
                f"prometheus not ready at {running.url} after {timeout_ms} ms:"
                f" {log_tail(running.workdir)}"
            ) from None
    raise ControlPlaneError(
        f"prometheus exited with code {running.process.returncode}: {log_tail(running.workdir)}"
    )
