"""`mesh demo`'s processes: copy the manifests, pick ports, start, wait until ready, stop.

```
Demo.start():
  copy examples/emojivoto -> <tmp>/ ; rewrite mesh/20-endpoints.yaml to this run's ports
  mesh serve --dir <tmp>  ──/ready──┐  (+ --prometheus H:P: a Prometheus, 2 s scrapes)
  emoji, voting v1, voting v2 (gRPC) ┤  (TCP accept)
  web v1, web v2 (proxyless gRPC)  ──┤  (/ready: both services answered through xDS;
                                     │   --grpc-via-proxy: web v2 through its proxy's outbound)
  mesh proxy --inbound (v1, v2)    ──┤  (/ready on admin, then GET /ready through it)
  mesh proxy --outbound (vote-bot) ──┘  (/ready, then GET / through it to web)
  vote-bot                              (started last: the numbers hold no startup errors)
Demo.stop(): SIGTERM each child by pid (reverse order), wait, SIGKILL stragglers, rm <tmp>
```

Every child runs in its own session (so a terminal's Ctrl-C reaches only `mesh demo`, which
then stops them in order) with stdout and stderr in ``<tmp>/logs/NAME.log``. Nothing here
prints: `DemoError` carries what failed and the tail of that child's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from turnout.demo import catalog
from turnout.demo.lifecycle import DemoError
from turnout.engine.identity.names import ServiceAccount
from turnout.engine.identity.settings import IdentitySettings
from turnout.engine.identity.store import init_store
from turnout.engine.identity.tokens import issue_join_token
from turnout.engine.model.limits import BadYAML, load_yaml, read_manifest
from turnout.engine.server import bootstrap_config

log = logging.getLogger(__name__)

EXAMPLES = Path(str(resources.files("turnout.demo") / "examples"))
"""The shipped examples (package data; `examples/` in a clone): the sample app, its
contracts and the canary walkthrough's steps."""

HOST = "127.0.0.1"
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
ENDPOINTS_FILE = Path("mesh") / "20-endpoints.yaml"
ROUTE_FILE = Path("mesh") / "30-web-route.yaml"
WEB_HOST = f"web.{catalog.NAMESPACE}"
SLICE_SERVICES = ("web-v1", "web-v2", "emoji", "voting", "voting-v2")
"""Services whose EndpointSlice gets this run's port."""
DOMAIN = "cluster.local"
WEB_SA = ServiceAccount(namespace=catalog.NAMESPACE, name="web")
EMOJI_SA = ServiceAccount(namespace=catalog.NAMESPACE, name="emoji")
VOTING_SA = ServiceAccount(namespace=catalog.NAMESPACE, name="voting")
VOTE_BOT_SA = ServiceAccount(namespace="loadgen", name="vote-bot")


def identity_of(sa: ServiceAccount) -> str:
    return f"{sa.name}.{sa.namespace}.serviceaccount.identity.{DOMAIN}"


@dataclass(frozen=True, slots=True)
class Ports:
    """Every port of one run, all free when picked."""

    xds: int
    serve_admin: int
    slices: dict[str, int]
    """Service name -> the port its EndpointSlice names (inbound proxy or gRPC server)."""
    web_app: dict[str, int]
    web_admin: dict[str, int]
    inbound_admin: dict[str, int]
    outbound: int
    outbound_admin: int
    prometheus: int
    """`mesh serve --prometheus`'s listen port (Prometheus' HTTP API)."""
    dashboard: int
    service_admin: dict[str, int]
    """emoji, voting-v1, voting-v2 -> their admin port (/metrics, /tap: grpcmesh.server)."""
    web_outbound: int
    """``--grpc-via-proxy``: web v2's proxy's outbound listener (its gRPC calls go there)."""

    @classmethod
    def pick(cls) -> Ports:
        socks: list[socket.socket] = []
        try:
            for _ in range(21):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind((HOST, 0))
                socks.append(s)
            p = [s.getsockname()[1] for s in socks]
        finally:
            for s in socks:
                s.close()
        return cls(
            xds=p[0],
            serve_admin=p[1],
            slices=dict(zip(SLICE_SERVICES, p[2:7], strict=True)),
            web_app={"v1": p[7], "v2": p[8]},
            web_admin={"v1": p[9], "v2": p[10]},
            inbound_admin={"v1": p[11], "v2": p[12]},
            outbound=p[13],
            outbound_admin=p[14],
            prometheus=p[15],
            dashboard=p[16],
            service_admin=dict(zip(("emoji", "voting-v1", "voting-v2"), p[17:20], strict=True)),
            web_outbound=p[20],
        )


def yaml_documents(path: Path) -> list[Any]:
    """The non-empty documents of one of the demo's YAML files, read like every manifest
    (`engine.model.limits`: capped, aliases never expanded)."""
    docs: list[Any] = []
    for doc in load_yaml(read_manifest(str(path)), file=str(path)):
        if isinstance(doc, BadYAML):
            raise DemoError(f"{path}: {doc.message}")
        if doc:
            docs.append(doc)
    return docs


def rewrite_endpoints(path: Path, ports: dict[str, int]) -> None:
    """Point each EndpointSlice of `path` (by ``kubernetes.io/service-name``) at its port. A
    slice of another Service on one of those pods (the same port as written: `web` selects
    the pods of web-v1 and web-v2) follows that pod to its new port."""
    docs = yaml_documents(path)
    slices = [d for d in docs if d.get("kind") == "EndpointSlice"]
    moved: dict[int, int] = {}
    for doc in slices:
        svc = doc.get("metadata", {}).get("labels", {}).get("kubernetes.io/service-name")
        if svc in ports:
            for port in doc.get("ports", []):
                moved[port["port"]] = ports[svc]
                port["port"] = ports[svc]
    for doc in slices:
        svc = doc.get("metadata", {}).get("labels", {}).get("kubernetes.io/service-name")
        if svc not in ports:
            for port in doc.get("ports", []):
                port["port"] = moved.get(port["port"], port["port"])
    header = "# Rewritten by `mesh demo`: the ports of this run's local processes.\n"
    body = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=None)
    path.write_text(header + body, encoding="utf-8")


def mesh_command() -> list[str]:
    """How to run `mesh` with this interpreter (the venv's script when there is one)."""
    script = Path(sys.executable).parent / "mesh"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "turnout"]


@dataclass(slots=True)
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    proc: asyncio.subprocess.Process | None = None
    log_path: Path | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def log_tail(self, n: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


@dataclass(slots=True)
class Demo:
    """One run: `start`, then read `metrics_urls` / `manifests`, then `stop` (always)."""

    examples: Path
    """The sample app's manifests (examples/emojivoto)."""
    rps: float = 20.0
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mesh-demo-")))
    ports: Ports = field(default_factory=Ports.pick)
    children: list[Child] = field(default_factory=list)
    keep_workdir: bool = False
    with_prometheus: bool = field(default_factory=lambda: shutil.which("prometheus") is not None)
    """Start `mesh serve --prometheus` (default: when a `prometheus` binary is on PATH)."""
    grpc_via_proxy: bool = False
    """web v2 calls emoji and voting through its proxy's outbound listener (HTTP/2 over mesh
    TLS, the proxy applying the GRPCRoute); web v1 stays proxyless."""

    @property
    def manifests(self) -> Path:
        return self.workdir / "manifests"

    @property
    def route_file(self) -> Path:
        return self.manifests / ROUTE_FILE

    @property
    def metrics_urls(self) -> list[str]:
        """The outbound proxy (web routes) and both web versions (their gRPC calls)."""
        p = self.ports
        return [
            f"http://{HOST}:{p.outbound_admin}/metrics",
            *(f"http://{HOST}:{p.web_admin[v]}/metrics" for v in ("v1", "v2")),
            # web v2's proxy counts its calls when they go through it
            *([f"http://{HOST}:{p.inbound_admin['v2']}/metrics"] if self.grpc_via_proxy else []),
        ]

    @property
    def prometheus_url(self) -> str | None:
        """The Prometheus `mesh serve --prometheus` started, scraping every proxy every 2 s
        (None: `with_prometheus` is off)."""
        return f"http://{HOST}:{self.ports.prometheus}" if self.with_prometheus else None

    @property
    def inbound_urls(self) -> dict[str, str]:
        """web version -> the metrics URL of the inbound proxy in front of it."""
        return {
            f"web-{v}": f"http://{HOST}:{self.ports.inbound_admin[v]}/metrics" for v in ("v1", "v2")
        }

    @property
    def pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self.children if c.pid is not None}

    @property
    def identity_dir(self) -> Path:
        return self.workdir / "identity"

    def prepare(self) -> None:
        shutil.copytree(self.examples, self.manifests)
        rewrite_endpoints(self.manifests / ENDPOINTS_FILE, self.ports.slices)
        (self.workdir / "logs").mkdir()
        now = dt.datetime.now(dt.UTC)
        material = init_store(self.identity_dir, IdentitySettings(domain=DOMAIN), now=now)
        for sa in (WEB_SA, EMOJI_SA, VOTING_SA, VOTE_BOT_SA):
            token = issue_join_token(material.token_key, sa, now=now, ttl=dt.timedelta(days=1))
            self.token_file(sa).write_text(token + "\n", encoding="utf-8")

    def token_file(self, sa: ServiceAccount) -> Path:
        return self.workdir / f"{sa.namespace}-{sa.name}.token"

    def identity_flags(self, sa: ServiceAccount) -> list[str]:
        """`mesh proxy` as `sa`: mTLS with a certificate from `mesh serve`'s identity service."""
        return ["--identity", identity_of(sa), "--identity-token-file", str(self.token_file(sa))]

    def grpc_security(
        self, name: str, sa: ServiceAccount, labels: dict[str, str], *, admin: str | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """A proxyless workload's identity flags (its in-process agent) and the bootstrap
        env naming the files that agent keeps (gRFC A29's file_watcher provider)."""
        certs = self.workdir / "certs" / name
        xds = f"{HOST}:{self.ports.xds}"
        boot = bootstrap_config(
            xds=xds,
            namespace=sa.namespace,
            workload=f"deployment/{name}",
            certs=str(certs),
            labels=labels,
            refresh_interval_s=5,
            admin=admin,
        )
        flags = [*self.identity_flags(sa), "--identity-addr", xds, "--certs", str(certs)]
        return flags, {"GRPC_XDS_BOOTSTRAP_CONFIG": json.dumps(boot)}

    async def spawn(
        self, name: str, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> Child:
        child = Child(name=name, argv=list(argv), env=env)
        child.log_path = self.workdir / "logs" / f"{name}.log"
        with child.log_path.open("wb") as logf:
            child.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logf,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                start_new_session=True,
            )
        self.children.append(child)
        log.info("started %s pid=%d", name, child.proc.pid)
        return child

    async def start(self, *, timeout: float = READY_TIMEOUT_S) -> None:
        self.prepare()
        p = self.ports
        mesh = mesh_command()
        py = [sys.executable, "-m"]
        xds = f"{HOST}:{p.xds}"
        serve = await self.spawn(
            "serve",
            [*mesh, "serve", "--dir", str(self.manifests), "--xds", xds,
             "--admin", f"{HOST}:{p.serve_admin}", "--identity-dir", str(self.identity_dir),
             *(["--prometheus", f"{HOST}:{p.prometheus}"] if self.with_prometheus else []),
             "--dashboard", f"{HOST}:{p.dashboard}"],
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            # the identity service must answer before the workloads ask it for certificates
            await self.wait_http(session, serve, f"http://{HOST}:{p.serve_admin}/ready", deadline)
        services = []
        for name, svc, sa, labels, extra in (
            ("emoji", "emoji", EMOJI_SA, {"app": "emoji"}, []),
            (
                "voting-v1",
                "voting",
                VOTING_SA,
                {"app": "voting", "version": "v1"},
                ["--version", "v1"],
            ),
            (
                "voting-v2",
                "voting-v2",
                VOTING_SA,
                {"app": "voting", "version": "v2"},
                ["--version", "v2"],
            ),
        ):
            admin = p.service_admin[name]
            flags, env = self.grpc_security(name, sa, labels, admin=f"{HOST}:{admin}")
            services.append(await self.spawn(
                name,
                [*py, "turnout.demo.services", svc.split("-")[0], "--port", str(p.slices[svc]), *extra,
                 "--admin-port", str(admin), "--workload", name, *flags],
                env=env,
            ))  # fmt: skip
        webs: list[tuple[Child, Child, str]] = []
        for v in ("v1", "v2"):
            via = self.grpc_via_proxy and v == "v2"
            flags, env = self.grpc_security(
                f"web-{v}",
                WEB_SA,
                {"app": "web", "version": v},
                admin=f"{HOST}:{p.web_admin[v]}",  # its gRPC calls' metrics, for Prometheus
            )
            app = await self.spawn(
                f"web-{v}",
                [*py, "turnout.demo.web", "--port", str(p.web_app[v]),
                 "--admin-port", str(p.web_admin[v]), "--version", v, "--xds", xds, *flags,
                 *(["--via-proxy", f"{HOST}:{p.web_outbound}"] if via else [])],
                env=env,
            )  # fmt: skip
            inbound = await self.spawn(
                f"proxy-web-{v}",
                [*mesh, "proxy", "--xds", xds, "--namespace", catalog.NAMESPACE,
                 "--workload", f"deployment/web-{v}", "--pod", f"web-{v}",
                 "--inbound", f"{HOST}:{p.slices[f'web-{v}']}", "--app", f"{HOST}:{p.web_app[v]}",
                 "--admin", f"{HOST}:{p.inbound_admin[v]}", "--label", "app=web",
                 *(["--outbound", f"{HOST}:{p.web_outbound}"] if via else []),
                 *self.identity_flags(WEB_SA)],
            )  # fmt: skip
            webs.append((app, inbound, v))
        outbound = await self.spawn(
            "proxy-vote-bot",
            [*mesh, "proxy", "--xds", xds, "--namespace", "loadgen",
             "--workload", "deployment/vote-bot", "--pod", "vote-bot",
             "--outbound", f"{HOST}:{p.outbound}", "--admin", f"{HOST}:{p.outbound_admin}",
             *self.identity_flags(VOTE_BOT_SA)],
        )  # fmt: skip
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            for child, svc in zip(services, ("emoji", "voting", "voting-v2"), strict=True):
                await self.wait_tcp(child, p.slices[svc], deadline)
            for app, inbound, v in webs:
                await self.wait_http(session, app, f"http://{HOST}:{p.web_app[v]}/ready", deadline)
                await self.wait_http(
                    session, inbound, f"http://{HOST}:{p.inbound_admin[v]}/ready", deadline
                )
                await self.wait_http(
                    session, inbound, f"http://{HOST}:{p.slices[f'web-{v}']}/ready", deadline
                )
            await self.wait_http(
                session, outbound, f"http://{HOST}:{p.outbound_admin}/ready", deadline
            )
            await self.wait_http(
                session, outbound, f"http://{HOST}:{p.outbound}/", deadline, host=WEB_HOST
            )
        await self.spawn(
            "vote-bot",
            [*py, "turnout.demo.votebot", "--proxy", f"{HOST}:{p.outbound}",
             "--host", WEB_HOST, "--rps", str(self.rps)],
        )  # fmt: skip

    def check_alive(self, child: Child) -> None:
        proc = child.proc
        if proc is not None and proc.returncode is not None:
            raise DemoError(
                f"{child.name} exited with code {proc.returncode}; its log "
                f"({child.log_path}):\n{child.log_tail()}"
            )

    async def wait_http(
        self,
        session: aiohttp.ClientSession,
        child: Child,
        url: str,
        deadline: float,
        *,
        host: str | None = None,
    ) -> None:
        """Poll `url` until it answers 200 (`child` must stay up meanwhile)."""
        last = "no answer"
        headers = {"host": host} if host else {}
        while time.monotonic() < deadline:
            self.check_alive(child)
            try:
                async with session.get(url, headers=headers) as resp:
                    if resp.status == 200:
                        return
                    last = f"{resp.status} {(await resp.text())[:200]}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = str(exc) or type(exc).__name__
            await asyncio.sleep(0.1)
        raise DemoError(f"{child.name} not ready: GET {url}: {last}\n{child.log_tail()}")

    async def wait_tcp(self, child: Child, port: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.check_alive(child)
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(HOST, port)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return
            await asyncio.sleep(0.1)
        raise DemoError(f"{child.name} does not accept on {HOST}:{port}\n{child.log_tail()}")

    def exited(self) -> list[Child]:
        """Children that stopped on their own (a crash while the demo runs)."""
        return [c for c in self.children if c.proc is not None and c.proc.returncode is not None]

    async def stop(self) -> list[tuple[str, int, int | None]]:
        """Terminate every child (newest first), wait, kill stragglers, remove the work dir.
        Returns (name, pid, exit code) of each child."""
        for child in reversed(self.children):
            proc = child.proc
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            proc = child.proc
            if proc is None:
                continue
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
            except TimeoutError:
                log.warning("%s (pid %d) ignored SIGTERM; killing it", child.name, proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return [(c.name, c.proc.pid, c.proc.returncode) for c in self.children if c.proc]
