"""Mesh TLS as users run it, for the identity acceptance tests: every part a real process.

```
mesh identity init|token|rotate (CLI processes) ──> CA directory ca/
mesh serve --dir manifests/ --identity-dir ca/  (ADS + Certify on one port)
         │ xDS + Certify                          │ xDS + Certify
PacedLoad ──> mesh proxy (web, --outbound) ──mTLS──> mesh proxy (api, --inbound) ──> app
```

The manifests name the server proxy's inbound port as the endpoint of Service `api`, meshed
as `API` (EndpointSlice annotation `identity.turnout.dev/name`), so the client proxy
originates mTLS to it. `PacedLoad` sends requests at fixed times (each on its own task, so a
slow answer does not delay the next) and counts every answer that is not a 200 whose echo
carries the verified `l5d-client-id` as failed. Bursts of concurrent slow requests, one
larger each time, make the client proxy open one more upstream connection per burst (its
pool is LIFO, the others stay warm): a fresh mTLS handshake with the leaves of the moment,
not only connections made before a renewal. Proxies log to files (a full pipe would block
them); every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from cryptography import x509

from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import dead_port, wait_admin_ready
from tests.proxy.identity.kit import API, WEB
from tests.proxy.identity.test_mtls_e2e import service
from tests.reliability.plane import ROOT, ServeProcess

HOST = "api.shop.svc.cluster.local"


async def mesh_cli(*argv: str) -> tuple[str, str]:
    """`mesh ARGV` as a process; (stdout, stderr); AssertionError unless it exits 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "turnout.cli", *argv, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, f"mesh {' '.join(argv)}: {err.decode()}"
    return out.decode(), err.decode()


def established_to(port: int) -> int:
    """Connections in state ESTABLISHED whose local end is 127.0.0.1:`port` (Linux)."""
    mine = f"0100007F:{port:04X}"
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for r in rows if (f := r.split())[1] == mine and f[3] == "01")


def refresh_count(text: str) -> int:
    """`identity_cert_refresh_count` in a /metrics answer (0 when absent)."""
    found = re.search(r"^identity_cert_refresh_count(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


@dataclass
class MeshProxy:
    """One `mesh proxy` process and its admin port."""

    proc: asyncio.subprocess.Process
    admin: int
    log: Path
    refreshes: int = 0
    """The last `identity_cert_refresh_count` read (`poll`)."""

    async def poll(self, session: aiohttp.ClientSession) -> int:
        async with session.get(f"http://127.0.0.1:{self.admin}/metrics") as resp:
            self.refreshes = refresh_count(await resp.text())
        return self.refreshes

    async def stop(self) -> str:
        if self.proc.returncode is None:
            self.proc.terminate()
            async with asyncio.timeout(10):
                await self.proc.wait()
        return self.log.read_text()


async def start_proxy(log: Path, *argv: str) -> MeshProxy:
    admin = dead_port()
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "turnout.cli", "proxy", *argv,
            "--admin", f"127.0.0.1:{admin}", cwd=ROOT, stdout=out, stderr=out,
        )  # fmt: skip
    return MeshProxy(proc, admin, log)


@dataclass
class MeshLab:
    ca: Path
    app: Backend
    serve: ServeProcess
    server: MeshProxy
    client: MeshProxy
    outbound: int
    inbound: int
    session: aiohttp.ClientSession
    grown: set[int] = field(default_factory=set)

    @property
    def proxies(self) -> tuple[MeshProxy, MeshProxy]:
        return self.client, self.server

    async def poll(self) -> tuple[int, int]:
        return await self.client.poll(self.session), await self.server.poll(self.session)

    async def keep_polling(self, every_s: float = 1.0) -> None:
        """`poll` until cancelled (`MeshProxy.refreshes` stays fresh for a `done` check),
        noting in `grown` each leaf generation (the lower count of the two) during which a
        new connection to the inbound port was made."""
        last = self.inbound_connections()
        while True:
            generation = min(await self.poll())
            now = self.inbound_connections()
            if now > last:
                self.grown.add(generation)
            last = max(last, now)
            await asyncio.sleep(every_s)

    def bundle(self) -> bytes:
        return (self.ca / "bundle.pem").read_bytes()

    async def renewed(self, *, timeout_s: float) -> float:
        """Until each proxy installed one more leaf than now; seconds it took."""
        started = time.monotonic()
        before = await self.poll()
        async with asyncio.timeout(timeout_s):
            while any(now <= then for now, then in zip(await self.poll(), before, strict=True)):
                await asyncio.sleep(0.2)
        return time.monotonic() - started

    async def served_leaf(self, bundle: bytes) -> x509.Certificate:
        """The leaf a fresh TLS handshake to the server proxy's inbound port presents,
        verified against `bundle` with the name `API` (ssl raises otherwise)."""
        ctx = ssl.create_default_context(cadata=bundle.decode())
        ctx.set_alpn_protocols(["http/1.1"])
        _, writer = await asyncio.open_connection(
            "127.0.0.1", self.inbound, ssl=ctx, server_hostname=API
        )
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            return x509.load_der_x509_certificate(der)
        finally:
            writer.close()

    def inbound_connections(self) -> int:
        """Established connections to the server proxy's inbound port (`/proc/net/tcp`)."""
        return established_to(self.inbound)

    def pids(self) -> tuple[int, ...]:
        return tuple(p.proc.pid for p in self.proxies if p.proc.returncode is None)


@asynccontextmanager
async def mesh_lab(tmp: Path, *, lifetime: str) -> AsyncIterator[MeshLab]:
    """The CA (`--lifetime`, no clock skew: renewals after 70% of it), `mesh serve` and
    two proxies, all ready (each holds its first leaf)."""
    ca = tmp / "ca"
    await mesh_cli(
        "identity", "init", "--dir", str(ca), "--lifetime", lifetime, "--clock-skew", "0"
    )
    tokens = {}
    for sa in ("web", "api"):
        token, _ = await mesh_cli("identity", "token", "--dir", str(ca), "-n", "shop", "--service-account", sa)  # fmt: skip
        tokens[sa] = tmp / f"{sa}.token"
        tokens[sa].write_text(token)
    app = await Backend("api").start()
    inbound, outbound = dead_port(), dead_port()
    manifests = tmp / "manifests"
    manifests.mkdir()
    (manifests / "api.yaml").write_text(service("api", inbound, API))
    serve = ServeProcess(manifests, tmp / "serve.log", extra=("--identity-dir", str(ca)))
    await serve.start()
    xds = ("--xds", f"127.0.0.1:{serve.port}", "--namespace", "shop")
    server = await start_proxy(
        tmp / "server.log", *xds, "--workload", "deployment/api",
        "--inbound", f"127.0.0.1:{inbound}", "--app", f"127.0.0.1:{app.port}",
        "--identity", API, "--identity-token-file", str(tokens["api"]),
    )  # fmt: skip
    client = await start_proxy(
        tmp / "client.log", *xds, "--workload", "deployment/web",
        "--outbound", f"127.0.0.1:{outbound}",
        "--identity", WEB, "--identity-token-file", str(tokens["web"]),
    )  # fmt: skip
    try:
        for p in (server, client):
            await wait_admin_ready(p.admin)
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            lab = MeshLab(ca, app, serve, server, client, outbound, inbound, session)
            yield lab
    finally:
        for p in (client, server):
            await p.stop()
        await serve.kill()
        await app.stop()


@dataclass
class PacedLoad:
    """`rps` requests a second to `port` (Host `HOST`), each started at its own time."""

    port: int
    rps: float
    burst_every_s: float = 0.0
    """A burst of concurrent slow requests this often, one larger each time (0: none)."""
    burst_max: int = 24
    bursts: int = 0
    sent: int = 0
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    _inflight: set[asyncio.Task[None]] = field(default_factory=set)

    async def _one(self, session: aiohttp.ClientSession, path: str) -> None:
        self.sent += 1
        try:
            async with session.get(f"http://127.0.0.1:{self.port}{path}", headers={"Host": HOST}) as resp:  # fmt: skip
                body = await resp.read()
                status = resp.status
            if status == 200 and path == "/echo":
                seen = json.loads(body)["headers"].get("l5d-client-id")
                status = status if seen == WEB else 600  # not over mTLS
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            status, body = 0, f"{type(exc).__name__}: {exc}".encode()
        if status == 200:
            self.ok += 1
            return
        self.failed += 1
        if len(self.errors) < 10:
            self.errors.append(f"{time.strftime('%H:%M:%S')} {status} {body[:200]!r}")

    def _start(self, session: aiohttp.ClientSession, path: str) -> None:
        task = asyncio.create_task(self._one(session, path), name="paced-load")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def run(self, done: Callable[[], bool]) -> float:
        """Send until `done()` (checked before every request); waits for the answers;
        returns the seconds it ran."""
        timeout = aiohttp.ClientTimeout(total=5, sock_connect=2)
        connector = aiohttp.TCPConnector(limit=0)
        started = time.monotonic()
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            i = 0
            while not done():
                at = started + i / self.rps
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                self._start(session, "/echo")
                i += 1
                since = time.monotonic() - started
                if self.burst_every_s and since >= (self.bursts + 1) * self.burst_every_s:
                    self.bursts += 1
                    for _ in range(min(self.bursts + 1, self.burst_max)):
                        self._start(session, "/delay/300")
            async with asyncio.timeout(10):
                while self._inflight:
                    await asyncio.wait(set(self._inflight))
        return time.monotonic() - started
