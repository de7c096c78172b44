"""One `mesh check` run: which categories, in which order, and `--wait`'s retries.

```
CheckOptions ──run_check──> kubernetes-api, kubernetes-version        (every mode; stop on ×)
   --pre                    pre-kubernetes-setup, gateway-api
   (default)                turnout-existence, turnout-crds, turnout-identity,
                            turnout-webhooks-and-apisvc-tls, turnout-status
   --proxy -n NS            turnout-existence, turnout-data-plane
check_until(options, wait) ──> the first report without a ×, or the last one when `wait` is up
```
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from turnout.cluster import names
from turnout.cluster.check import control_plane, pre, proxies, tls
from turnout.cluster.check.api import ApiError, ClusterApi
from turnout.cluster.check.results import Report, failed

log = logging.getLogger(__name__)

Mode = Literal["pre", "control-plane", "proxy"]
DEFAULT_TIMEOUT_S = 10.0
RETRY_INTERVAL_S = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckOptions:
    mode: Mode = "control-plane"
    cp_namespace: str = names.NAMESPACE
    """The control plane's namespace."""
    namespace: str = "default"
    """`--proxy`: the data plane namespace."""
    control_plane: str | None = None
    """HOST:PORT of the control plane's admin, asked directly (else the API server's proxy)."""
    injector_url: str | None = None
    """https://HOST:PORT of the injector, asked directly (else the API server's proxy)."""
    timeout_s: float = DEFAULT_TIMEOUT_S
    """Deadline of each request."""


ClientFactory = Callable[[], Any]
"""Builds the kubernetes `ApiClient` (blocking; raises when the kubeconfig cannot be read)."""


async def run_check(
    options: CheckOptions, make_client: ClientFactory, *, now: dt.datetime | None = None
) -> Report:
    report = Report()
    api: ClusterApi | None = None
    load_error = ""
    try:
        api = ClusterApi(await asyncio.to_thread(make_client), timeout_s=options.timeout_s)
    except Exception as exc:  # the kubeconfig loaders raise many kinds; each is one finding
        load_error = f"{type(exc).__name__}: {exc}"
    try:
        if await pre.kubernetes_api(report, api, load_error) is None or api is None:
            return report
        if not report.success:
            return report
        await _categories(report, api, options, now or dt.datetime.now(dt.UTC))
        return report
    finally:
        if api is not None:
            api.close()


READ_HINT = (
    "mesh check only reads: run it as a user who may get and list what this category looks at"
    " (kubectl auth can-i get ... says which is missing)"
)


async def _guarded(report: Report, step: Awaitable[object]) -> object:
    """Run one category; a request it did not expect to fail (403 on a list, the server gone
    mid-check) becomes a × in that category instead of ending the run."""
    try:
        return await step
    except ApiError as exc:
        target = report.categories[-1] if report.categories else report.category("kubernetes-api")
        target.checks.append(failed("can read what this category checks", str(exc), READ_HINT))
        return None


async def _categories(report: Report, api: ClusterApi, o: CheckOptions, now: dt.datetime) -> None:
    if o.mode == "pre":
        await _guarded(report, pre.pre_setup(report, api, namespace=o.cp_namespace))
        await _guarded(report, pre.gateway_api(report, api))
        return
    there = await _guarded(
        report,
        control_plane.existence(
            report, api, namespace=o.cp_namespace, control_plane=o.control_plane
        ),
    )
    if not there:
        return
    if o.mode == "proxy":
        await _guarded(
            report,
            proxies.data_plane(
                report,
                api,
                namespace=o.namespace,
                cp_namespace=o.cp_namespace,
                control_plane=o.control_plane,
            ),
        )
        return
    await _guarded(report, control_plane.crds(report, api))
    await _guarded(report, tls.identity(report, api, namespace=o.cp_namespace, now=now))
    await _guarded(
        report,
        tls.webhook(report, api, namespace=o.cp_namespace, injector_url=o.injector_url, now=now),
    )
    await _guarded(
        report,
        control_plane.status_writing(
            report, api, namespace=o.cp_namespace, now=now, control_plane=o.control_plane
        ),
    )


async def check_until(
    options: CheckOptions, make_client: ClientFactory, *, wait_s: float
) -> Report:
    """Run the check until it has no × or `wait_s` is up (0: once)."""
    deadline = time.monotonic() + wait_s
    attempt = 1
    while True:
        report = await run_check(options, make_client)
        left = deadline - time.monotonic()
        if report.success or left <= 0:
            return report
        log.info(
            "check failed, retrying attempt #%d in %.1fs (%.1fs left)",
            attempt + 1,
            RETRY_INTERVAL_S,
            left,
        )
        attempt += 1
        await asyncio.sleep(min(RETRY_INTERVAL_S, left))
