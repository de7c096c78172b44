"""Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection` does.

Every replica of `mesh serve --kubernetes --leader-elect` serves xDS; only the Lease holder
writes status (`status.py`'s `StatusSync` asks `leading`).

```
acquire: every retry_period_s (jittered ×(1 + rand·1.2)) try_acquire_or_renew
   GET lease ──404──> POST {holderIdentity: me, acquireTime = renewTime = now, transitions 0}
      │ spec differs from the last one seen ──> observed_at := local monotonic now
      │ held by another, observed_at + leaseDurationSeconds not yet passed ──> not ours
      v
   PUT {holderIdentity: me, renewTime: now, acquireTime/transitions: kept if ours, else
        now / +1} with the lease's resourceVersion ──409 (someone else was faster)──> not ours
leading: renew every retry_period_s; no success for renew_deadline_s ──> lost, acquire again
release (clean shutdown): PUT {holderIdentity: "", leaseDurationSeconds: 1}: the next replica
   takes over at its next try instead of waiting out the lease
```

Expiry is judged by the local clock since the holder's record last changed, never by the
timestamps in the Lease (the replicas' clocks need not agree). `renew_deadline_s <
lease_duration_s` makes a leader that cannot renew stop writing before anyone else may start.
The elector has its own small thread pool, so renewals never wait behind watches or status
writes. Deliberately not here: what the leader does (`status.py`); the Lease's name and the
flags (the CLI).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from turnout.engine.sources.k8s.api import (
    DEFAULT_KUBERNETES_SETTINGS,
    KubernetesApi,
    KubernetesApiError,
    KubernetesSettings,
    Sleep,
)
from turnout.engine.sources.k8s.kinds import Raw

log = logging.getLogger(__name__)

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseSettings:
    """Which Lease, who we are, and client-go's three durations (its defaults)."""

    namespace: str
    name: str
    identity: str
    """`holderIdentity` while we lead: the pod's name."""
    lease_duration_s: int = 15
    """`leaseDurationSeconds`: how long others wait, after the record last changed, before
    taking over a holder that stopped renewing."""
    renew_deadline_s: float = 10.0
    """A leader that could not renew for this long stops leading (and writing)."""
    retry_period_s: float = 2.0
    """Between tries to acquire (jittered) or to renew."""
    jitter: float = 1.2
    """client-go's JitterFactor: an acquire wait is retry_period_s × (1 + rand × jitter)."""

    def check(self) -> str | None:
        """Why these settings cannot work (client-go's own checks), or None."""
        if self.lease_duration_s < 1:
            return "the lease duration must be at least 1 s"
        if self.renew_deadline_s >= self.lease_duration_s:
            return "the renew deadline must be shorter than the lease duration"
        if self.retry_period_s <= 0 or self.renew_deadline_s <= self.jitter * self.retry_period_s:
            return f"the renew deadline must be longer than {self.jitter} x the retry period"
        if not self.identity:
            return "the holder identity must not be empty"
        return None


def micro_time(when: datetime) -> str:
    """A `MicroTime` as the API writes it."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Holds `settings`' Lease while it can (see the module docstring); `start()`/`stop()`.

    `clock` (monotonic seconds) judges expiry, `wall` stamps the Lease; `sleep` and `rng`
    are the seams of the waits."""

    def __init__(
        self,
        api_client: Any,
        settings: LeaseSettings,
        *,
        kube: KubernetesSettings = DEFAULT_KUBERNETES_SETTINGS,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        # One try per request, bounded by the renew deadline: the loop below is the retry.
        timeout = min(kube.request_timeout_s, settings.renew_deadline_s)
        kube = dataclasses.replace(
            kube,
            attempts=1,
            request_timeout_s=timeout,
            connect_timeout_s=min(kube.connect_timeout_s, timeout),
        )
        self._api = KubernetesApi(api_client, settings=kube, pool_size=2, sleep=sleep)
        self.settings = settings
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._path = f"{LEASES.format(namespace=settings.namespace)}/{settings.name}"
        self._lease: Raw | None = None
        """The Lease as last read or written (its resourceVersion is the next write's)."""
        self._observed: Mapping[str, Any] | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None
        self._elected: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self.transitions_seen = 0
        """Times this replica became the leader."""

    # ---------------------------------------------------------------- what others read

    @property
    def lease(self) -> str:
        return f"{self.settings.namespace}/{self.settings.name}"

    @property
    def identity(self) -> str:
        return self.settings.identity

    @property
    def holder(self) -> str:
        """The holder in the last record seen ("" for none)."""
        return str((self._observed or {}).get("holderIdentity") or "")

    @property
    def leading(self) -> bool:
        """We hold the Lease and renewed it within the renew deadline."""
        return (
            self.holder == self.identity
            and self._renewed_at is not None
            and self._clock() < self._renewed_at + self.settings.renew_deadline_s
        )

    def describe(self) -> dict[str, object]:
        """What `/debug/diagnostics` shows under ``leader``."""
        spec = self._observed or {}
        return {
            "lease": self.lease,
            "identity": self.identity,
            "leading": self.leading,
            "holder": self.holder,
            "transitions": int(spec.get("leaseTransitions") or 0),
        }

    def on_elected(self, fn: Callable[[], None]) -> None:
        """Call `fn` each time this replica becomes the leader."""
        self._elected.append(fn)

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start campaigning (a guarded task ``k8s-lease``); returns at once."""
        self._task = asyncio.create_task(self._guarded(), name="k8s-lease")

    async def stop(self, *, release: bool = True) -> None:
        """Stop renewing; with `release`, clear `holderIdentity` so a successor need not
        wait for the lease to expire. The elector cannot be used after this."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            if release:
                await self.release()
        finally:
            self._api.close()

    async def _guarded(self) -> None:
        try:
            await self.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task crashed task=k8s-lease")

    async def run(self) -> None:
        """Acquire, renew until lost, again; forever."""
        s = self.settings
        while True:
            while not await self.try_acquire_or_renew():
                await self._sleep(s.retry_period_s * (1 + self._rng.random() * s.jitter))
            self.transitions_seen += 1
            log.info(
                "leader elected lease=%s identity=%s transitions=%s",
                self.lease,
                self.identity,
                (self._observed or {}).get("leaseTransitions"),
            )
            for fn in self._elected:
                fn()
            await self._renew()
            log.warning(
                "leadership lost lease=%s identity=%s holder=%s",
                self.lease,
                self.identity,
                self.holder or "-",
            )

    async def _renew(self) -> None:
        """Renew every retry period; return when no renewal succeeded in the deadline."""
        s = self.settings
        while True:
            await self._sleep(s.retry_period_s)
            while True:
                assert self._renewed_at is not None
                left = self._renewed_at + s.renew_deadline_s - self._clock()
                if left <= 0 or self.holder not in ("", self.identity):
                    return
                try:
                    async with asyncio.timeout(left):
                        if await self.try_acquire_or_renew():
                            break
                except TimeoutError:
                    return
                await self._sleep(min(s.retry_period_s, max(0.0, left)))

    # ---------------------------------------------------------------- one try

    async def try_acquire_or_renew(self) -> bool:
        """One round of client-go's `tryAcquireOrRenew`: True when we hold the Lease now."""
        now, stamp = self._clock(), micro_time(self._wall())
        s = self.settings
        try:
            lease = await self._api.request("GET", self._path)
        except KubernetesApiError as exc:
            if exc.status != 404:
                log.info("lease not read lease=%s: %s", self.lease, exc)
                return False
            return await self._create(now, stamp)
        spec = lease.get("spec") or {}
        if spec != self._observed:
            self._observed, self._observed_at = spec, now
        self._lease = lease
        holder = str(spec.get("holderIdentity") or "")
        duration = int(spec.get("leaseDurationSeconds") or s.lease_duration_s)
        if holder and holder != self.identity and now < self._observed_at + duration:
            return False
        ours = holder == self.identity
        new = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": s.lease_duration_s,
            "acquireTime": spec.get("acquireTime") if ours else stamp,
            "renewTime": stamp,
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if ours else 1),
        }
        if new["acquireTime"] is None:
            new["acquireTime"] = stamp
        return await self._write({**lease, "spec": new}, now)

    async def _create(self, now: float, stamp: str) -> bool:
        s = self.settings
        body: Raw = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": s.name, "namespace": s.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": s.lease_duration_s,
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        }
        try:
            created = await self._api.request(
                "POST", LEASES.format(namespace=s.namespace), body=body
            )
        except KubernetesApiError as exc:
            log.info("lease not created lease=%s: %s", self.lease, exc)
            return False
        self._took(created, now)
        return True

    async def _write(self, body: Raw, now: float) -> bool:
        try:
            written = await self._api.request("PUT", self._path, body=body)
        except KubernetesApiError as exc:
            # 409: another replica wrote the Lease since our GET; it won this round.
            log.info("lease not written lease=%s: %s", self.lease, exc)
            return False
        self._took(written, now)
        return True

    def _took(self, lease: Raw, now: float) -> None:
        self._lease = lease
        self._observed, self._observed_at = lease.get("spec") or {}, now
        self._renewed_at = now

    async def release(self) -> bool:
        """Give the Lease up if we lead (client-go's `release`); True when released.

        The Lease is read again first: a renewal cancelled in flight (by `stop()`) may have
        landed and moved its resourceVersion."""
        if self._lease is None or self.holder != self.identity:
            return False
        self._renewed_at = None  # from here on we do not lead, whatever the answer
        for attempt in range(1, 4):
            try:
                lease = await self._api.request("GET", self._path)
                spec = dict(lease.get("spec") or {})
                if spec.get("holderIdentity") != self.identity:
                    return False  # someone else holds it already
                stamp = micro_time(self._wall())
                spec.update(
                    holderIdentity="", leaseDurationSeconds=1, acquireTime=stamp, renewTime=stamp
                )
                written = await self._api.request("PUT", self._path, body={**lease, "spec": spec})
            except KubernetesApiError as exc:
                log.warning(
                    "lease not released lease=%s attempt #%d/3: %s", self.lease, attempt, exc
                )
                continue
            self._lease = written
            self._observed, self._observed_at = spec, self._clock()
            log.info("leadership released lease=%s identity=%s", self.lease, self.identity)
            return True
        return False
