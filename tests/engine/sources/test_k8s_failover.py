"""Two real `mesh serve --kubernetes --leader-elect` processes against `FakeApiServer`
(k8s_fake.py, through a kubeconfig per replica with its own bearer token, so the fake's
request log says who sent what): one writes status, SIGKILL it and the other takes over
after the lease duration; a route changed during the failover ends up in status; status
writes come from one holder at a time and none conflicts. SIGTERM releases the Lease and
the other takes over at its next try. The measured failover time is printed (`-s`)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import signal
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.engine.sources.k8s_fake import LEASES, Call, FakeApiServer
from tests.engine.sources.test_k8s import OURS, SERVED, every_kind, mk_route
from tests.proxy.e2e.harness import bounded
from tests.support.serving import lines_until_serving

ROOT = Path(__file__).resolve().parents[3]
D, RENEW, RETRY, JITTER = 2, 1.5, 0.25, 1.2
"""Lease duration, renew deadline, retry period (seconds) and client-go's jitter factor."""
LEASE_FLAGS = [
    "--lease-duration",
    str(D),
    "--lease-renew-deadline",
    str(RENEW),
    "--lease-retry-period",
    str(RETRY),
    "--lease-namespace",
    "turnout",
]
CODE = "import sys; from turnout.cli.main import main; sys.exit(main(sys.argv[1:]))"


@dataclass
class Replica:
    name: str
    proc: asyncio.subprocess.Process
    admin: str

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.admin + path, timeout=5) as resp:
            return str(resp.read().decode())


@pytest.fixture
async def fake() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer([*SERVED.values(), LEASES]) as api:
        for obj in every_kind():
            api.apply(obj)
        yield api


def kubeconfig(tmp_path: Path, url: str, token: str) -> Path:
    path = tmp_path / f"kubeconfig-{token}"
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": token, "user": {"token": token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": token}}],
        "current-context": "fake",
    }
    path.write_text(json.dumps(cfg))
    return path


@contextlib.asynccontextmanager
async def replicas(
    fake: FakeApiServer, tmp_path: Path, *names: str
) -> AsyncIterator[Callable[[str], Any]]:
    """`start(name)` runs one replica (holder identity and token `name`) until the end."""
    started: list[Replica] = []

    async def start(name: str) -> Replica:
        argv = [
            "-v",
            "serve",
            "--kubernetes",
            "--kubeconfig",
            str(kubeconfig(tmp_path, fake.url, name)),
        ]
        argv += ["--xds", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--leader-elect"]
        argv += [*LEASE_FLAGS, "--pod-name", name]
        with (tmp_path / f"{name}.log").open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CODE, *argv, stdout=asyncio.subprocess.PIPE, stderr=log,
                cwd=ROOT,
            )  # fmt: skip
        replica = Replica(name, proc, "")
        started.append(replica)
        assert proc.stdout is not None

        async def why() -> str:
            return f"{name}: {(tmp_path / f'{name}.log').read_text()}"

        lines = await lines_until_serving(proc, timeout_s=None, why=why)
        assert f"leader election on lease turnout/turnout-controller as {name}" in lines[-1]
        replica.admin = "http://" + lines[1].rsplit(" ", 1)[1]
        return replica

    try:
        yield start
    finally:
        for r in started:
            if r.proc.returncode is None:
                r.proc.kill()
            await r.proc.wait()


def holder(fake: FakeApiServer) -> str:
    store = fake.objects.get((LEASES.group, LEASES.kind), {})
    lease = store.get(("turnout", "turnout-controller"))
    return "" if lease is None else str(lease["spec"].get("holderIdentity") or "")


def observed(fake: FakeApiServer, kind: str = "HTTPRoute", name: str = "web") -> int | None:
    obj = fake.get(SERVED[kind], "shop", name)
    parents = (obj.get("status") or {}).get("parents") or ()
    ours = [p for p in parents if p["controllerName"] == OURS]
    return int(ours[0]["conditions"][0]["observedGeneration"]) if ours else None


async def until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> float:
    """The monotonic time `check()` first held (polled every 10 ms)."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)
    return time.monotonic()


def status_writes(fake: FakeApiServer) -> list[Call]:
    return [c for c in fake.calls if c.method == "PUT" and c.path.endswith("/status")]


def leader_of(replica: Replica) -> dict[str, Any]:
    return dict(json.loads(replica.get("/debug/diagnostics"))["leader"])


async def two_replicas(fake: FakeApiServer, start: Callable[[str], Any]) -> tuple[Replica, Replica]:
    """`a` leads and has written status; `b` is serving and has seen `a`'s Lease."""
    a = await start("a")
    await until(lambda: holder(fake) == "a", "a leads")
    b = await start("b")
    await until(lambda: observed(fake) == 1, "status written")
    await asyncio.sleep(2 * RETRY * (1 + JITTER))  # b has tried and seen a's record
    return a, b


@bounded(60)
async def test_sigkill_of_the_leader_fails_over_within_the_lease_and_loses_no_update(
    fake: FakeApiServer, tmp_path: Path
) -> None:
    async with replicas(fake, tmp_path) as start:
        a, b = await two_replicas(fake, start)
        info_a, info_b = await asyncio.gather(
            asyncio.to_thread(leader_of, a), asyncio.to_thread(leader_of, b)
        )
        assert (info_a["leading"], info_a["holder"]) == (True, "a")
        assert (info_b["leading"], info_b["holder"]) == (False, "a")
        assert "turnout_leader 1" in await asyncio.to_thread(a.get, "/metrics")
        assert "turnout_leader 0" in await asyncio.to_thread(b.get, "/metrics")
        assert {c.token for c in status_writes(fake)} == {"a"}

        fake.apply(mk_route("shop", "web", {"web": 80, "web-canary": 20}))  # generation 2
        await until(lambda: observed(fake) == 2, "generation 2 written by a")
        lease = fake.get(LEASES, "turnout", "turnout-controller")["spec"]

        a.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await a.proc.wait()
        fake.apply(mk_route("shop", "web", {"web": 50, "web-canary": 50}))  # during failover
        took_over = await until(lambda: holder(fake) == "b", "b leads")
        written = await until(lambda: observed(fake) == 3, "generation 3 written by b")
        takeover, status = took_over - killed, written - killed
        print(
            f"\nfailover after SIGKILL: lease taken over in {takeover:.2f}s, the change made"
            f" during the failover in status after {status:.2f}s (lease {D}s, renew deadline"
            f" {RENEW}s, retry {RETRY}s)"
        )
        # Worst case: b saw a's last renewal one jittered retry late, and notices the expiry
        # one jittered retry late; the slack is the processes' scheduling on a busy machine.
        assert D - RETRY - 0.1 <= takeover <= D + 2 * (1 + JITTER) * RETRY + 0.5, takeover
        assert status - takeover < 1.0
        assert observed(fake, "GRPCRoute", "rpc") == 1
        assert (await asyncio.to_thread(leader_of, b))["leading"]
        after = fake.get(LEASES, "turnout", "turnout-controller")["spec"]
        assert after["leaseTransitions"] == lease["leaseTransitions"] + 1

    writes = status_writes(fake)
    assert all(c.status == 200 for c in writes), [c for c in writes if c.status != 200]
    by_a = [c.at for c in writes if c.token == "a"]
    by_b = [c.at for c in writes if c.token == "b"]
    acquired = min(
        c.at for c in fake.calls if c.token == "b" and c.method == "PUT" and "/leases/" in c.path
        if c.status == 200
    )  # fmt: skip
    assert by_a and by_b and max(by_a) < killed < acquired <= min(by_b)


@bounded(60)
async def test_sigterm_releases_the_lease_and_the_other_replica_takes_over_at_once(
    fake: FakeApiServer, tmp_path: Path
) -> None:
    async with replicas(fake, tmp_path) as start:
        a, b = await two_replicas(fake, start)
        a.proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        released = await until(lambda: holder(fake) != "a", "a released")
        took_over = await until(lambda: holder(fake) == "b", "b leads")
        assert await a.proc.wait() == 0
        print(
            f"\nhandover after SIGTERM: released in {released - stopped:.2f}s, taken over"
            f" {took_over - released:.2f}s later"
        )
        assert took_over - released <= (1 + JITTER) * RETRY + 0.5
        assert took_over - stopped < D
        assert (await asyncio.to_thread(leader_of, b))["leading"]
        fake.apply(mk_route("shop", "web", {"web": 50, "web-canary": 50}))  # generation 2
        await until(lambda: observed(fake) == 2, "generation 2 written by b")
    assert {c.token for c in status_writes(fake) if c.at > took_over} == {"b"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param(
            ["--dir", "."], "--leader-elect: needs --kubernetes (the Lease is on the API server)",
            id="without-kubernetes",
        ),
        pytest.param(
            ["--kubernetes", "--lease-duration", "2", "--lease-renew-deadline", "2"],
            "--leader-elect: the renew deadline must be shorter than the lease duration",
            id="renew-deadline-too-long",
        ),
        pytest.param(
            ["--kubernetes", "--lease-retry-period", "9"],
            "--leader-elect: the renew deadline must be longer than 1.2 x the retry period",
            id="retry-period-too-long",
        ),
    ],
)  # fmt: skip
def test_leader_election_flags_that_cannot_work_are_one_line_and_exit_2(
    flags: list[str], message: str
) -> None:
    from turnout.cli.main import main

    err = io.StringIO()
    assert main(["serve", "--leader-elect", *flags], stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue().strip().splitlines()[-1].endswith(message)
