"""What the walkthrough (test_walkthrough.py) runs: the fake API server with RBAC by bearer
token, and the real `mesh serve` / `mesh proxy` processes configured from what `mesh install`
and the injector wrote.

```
mesh (admin kubeconfig, token ADMIN) ──┐                       (no RBAC: cluster-admin)
mesh serve --kubernetes (token SA) ────┴─> MeshFake ── SA's requests: the rendered ClusterRole
```

Also the waits (`until`), plain and mesh TLS GETs, and a stand-in app. There is no kubelet: a test marks pods Running/Ready itself, materialises a pod's Secret
volumes as directories, and runs each container's args as a local process with the listen
addresses on 127.0.0.1 (port 0), the Service DNS names on the control plane's real ports
and `$(VAR)`s expanded from the container's env, as the kubelet would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import ssl
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.cluster.webhook_support import Injector
from tests.engine.sources.k8s_fake import ServedKind
from tests.engine.sources.k8s_fake_cluster import CLUSTER_KINDS, ClusterFakeApiServer
from turnout.cluster import names
from turnout.engine.sources.k8s.rbac import Rule

Obj = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "admin-token"
START_TIMEOUT_S = 15.0
STEP_TIMEOUT_S = 10.0


ENDPOINT_SLICES = ServedKind("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")


class MeshFake(ClusterFakeApiServer):
    """`ClusterFakeApiServer` serving EndpointSlices too (every cluster does), where only
    requests bearing `sa_token` are checked against `sa_rules` (as `sa_user`); every other
    token is a cluster-admin's (kubectl, mesh)."""

    def __init__(self) -> None:
        super().__init__((*CLUSTER_KINDS, ENDPOINT_SLICES))
        self.sa_token = ""
        self.sa_rules: tuple[Rule, ...] = ()

    def enforce_for(self, token: str, rules: tuple[Rule, ...], *, user: str) -> None:
        self.sa_token, self.sa_rules, self.user = token, rules, user

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        # no await before the base class's `refuse`: the rules are this request's
        bearer = request.headers.get("Authorization", "") == f"Bearer {self.sa_token}"
        self.rbac = self.sa_rules if self.sa_token and bearer else None
        return await super()._handle(request)


def kubeconfig(path: Path, url: str, *, token: str, user: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        f"clusters: [{{name: fake, cluster: {{server: '{url}'}}}}]\n"
        f"users: [{{name: '{user}', user: {{token: {token}}}}}]\n"
        f"contexts: [{{name: fake, context: {{cluster: fake, user: '{user}'}}}}]\n"
    )
    return path


def rules_of(cluster_role: Obj) -> tuple[Rule, ...]:
    """A ClusterRole's `rules`, as the RBAC authorizer reads them."""
    return tuple(
        Rule(tuple(r.get("apiGroups") or ()), tuple(r["resources"]), tuple(r["verbs"]))
        for r in cluster_role["rules"]
    )


def secret_volume(secret: Obj, directory: Path, *, mode: int = 0o644) -> Path:
    """The Secret's keys as the kubelet mounts them in `directory`: the files in a
    timestamped directory, ``..data`` a symlink to it, each key a symlink through ``..data``
    (what lets the kubelet swap every key at once), with the volume's `defaultMode`."""
    directory.mkdir(parents=True)
    data_dir = directory / "..2026_01_01_00_00_00.000000001"
    data_dir.mkdir()
    for key, value in (secret.get("data") or {}).items():
        (data_dir / key).write_bytes(base64.b64decode(value))
        (data_dir / key).chmod(mode)
        (directory / key).symlink_to(f"..data/{key}")
    (directory / "..data").symlink_to(data_dir.name)
    return directory


def expand(arg: str, env: Mapping[str, str]) -> str:
    """The kubelet's `$(VAR)` expansion of a container arg."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), arg)


def local_args(
    args: list[str], *, env: Mapping[str, str], mounts: Mapping[str, Path], hosts: Mapping[str, str]
) -> list[str]:
    """A container's args for a process here: `$(VAR)` expanded, mount paths moved to their
    directories, ``0.0.0.0:N`` / ``127.0.0.1:N`` listen addresses on ``127.0.0.1:0`` and
    Service names (``HOST:PORT`` keys of `hosts`) on the address that serves them."""
    out = []
    for arg in args:
        arg = expand(arg, env)
        for path, directory in mounts.items():
            if arg == path or arg.startswith(path + "/"):
                arg = str(directory) + arg[len(path) :]
        if re.fullmatch(r"(0\.0\.0\.0|127\.0\.0\.1):\d+", arg):
            arg = "127.0.0.1:0"
        out.append(hosts.get(arg, arg))
    return out


def container_env(container: Obj, pod: Obj) -> dict[str, str]:
    """The container's `env`, the downward API's metadata.name / metadata.namespace filled in."""
    meta = pod["metadata"]
    fields = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"]}
    env = {}
    for var in container.get("env") or ():
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif (ref := (var.get("valueFrom") or {}).get("fieldRef")) is not None:
            env[var["name"]] = fields[ref["fieldPath"]]
    return env


@dataclass
class Process:
    """A `mesh` process; its first stdout lines (up to `ready_prefix`), stderr in a file."""

    proc: asyncio.subprocess.Process
    lines: list[str]
    stderr: Path
    drain: asyncio.Task[None] | None = field(default=None)

    def line(self, prefix: str) -> str:
        (line,) = [x for x in self.lines if x.startswith(prefix)]
        return line

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.terminate()
        async with asyncio.timeout(START_TIMEOUT_S):
            code = await self.proc.wait()
        if self.drain is not None:
            self.drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.drain
        return code


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def start_mesh(
    argv: list[str], *, env: Mapping[str, str], ready_prefix: str, stderr: Path
) -> Process:
    """`mesh ARGV` (the image's entrypoint) until it prints a line starting `ready_prefix`."""
    full_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("POD_NAME", "POD_NAMESPACE", names.PROXY_IMAGE_ENV, "KUBECONFIG")
    }
    full_env.update(env, PYTHONPATH=str(ROOT))
    with stderr.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "turnout", *argv,
            stdout=asyncio.subprocess.PIPE, stderr=err, env=full_env, cwd=ROOT,
        )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(START_TIMEOUT_S):
        while not (lines and lines[-1].startswith(ready_prefix)):
            line = (await proc.stdout.readline()).decode()
            if not line:
                await proc.wait()
                raise AssertionError(f"mesh {argv[0]} exited: {stderr.read_text()[-3000:]}")
            lines.append(line.strip())
    return Process(proc, lines, stderr, asyncio.create_task(_drain(proc.stdout)))


@contextlib.asynccontextmanager
async def running(process: Process) -> AsyncIterator[Process]:
    try:
        yield process
    finally:
        await process.stop()


def bound_ports(args: list[str], printed: Mapping[str, str]) -> dict[int, str]:
    """containerPort -> the local address a process bound for it: the port of each
    ``--FLAG 0.0.0.0:N`` in the container's `args`, to what the process printed for FLAG."""
    out = {}
    for flag, value in itertools.pairwise(args):
        m = re.fullmatch(r"(?:0\.0\.0\.0|127\.0\.0\.1):(\d+)", value)
        if flag.startswith("--") and m and flag[2:] in printed:
            out[int(m[1])] = printed[flag[2:]]
    return out


def container_port(container: Obj, port: int | str) -> int:
    """A probe's or a Service's targetPort (a number, or a container port's name)."""
    if isinstance(port, int):
        return port
    (named,) = [p for p in container.get("ports") or () if p.get("name") == port]
    return int(named["containerPort"])


def probe_urls(container: Obj, ports: Mapping[int, str]) -> dict[str, str]:
    """What the kubelet would GET for each of the container's probes."""
    out = {}
    for key in ("startupProbe", "readinessProbe", "livenessProbe"):
        if (get := (container.get(key) or {}).get("httpGet")) is not None:
            out[key] = f"http://{ports[container_port(container, get['port'])]}{get['path']}"
    return out


def endpoints(
    services: list[Obj], pod: Obj, container: Obj, ports: Mapping[int, str]
) -> dict[tuple[str, str, int], str]:
    """(namespace, Service, port) -> the local address behind it, for each Service whose
    selector picks `pod` (kube-proxy's part, for one pod)."""
    labels = pod["metadata"].get("labels") or {}
    out = {}
    for svc in services:
        selector = svc["spec"].get("selector") or {}
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            continue
        for p in svc["spec"]["ports"]:
            target = container_port(container, p.get("targetPort", p["port"]))
            key = (svc["metadata"]["namespace"], svc["metadata"]["name"], int(p["port"]))
            out[key] = ports[target]
    return out


async def until(what: str, cond: Any) -> Any:
    """Poll `cond` (sync or async) until it returns a truthy value (that value)."""
    try:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            while True:
                got = cond()
                if asyncio.iscoroutine(got):
                    got = await got
                if got:
                    return got
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting: {what}") from None


async def get(url: str, **headers: str) -> tuple[int, str, dict[str, str]]:
    timeout = aiohttp.ClientTimeout(total=3)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers, allow_redirects=False) as resp,
        ):
            return resp.status, await resp.text(), dict(resp.headers)
    except (aiohttp.ClientError, TimeoutError):
        return 0, "", {}


def secret_file(secret: Obj, key: str) -> bytes:
    return base64.b64decode(secret["data"][key])


async def over_mesh_tls(address: str, anchor: bytes, name: str) -> str | None:
    """The body of ``GET /`` sent to `address` over TLS, verified to be `name` under `anchor`
    (no client certificate: an unmeshed caller); None until it answers 200."""
    ctx = ssl.create_default_context(cadata=anchor.decode())
    timeout = aiohttp.ClientTimeout(total=3)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"https://{address}/", ssl=ctx, server_hostname=name) as resp,
        ):
            return await resp.text() if resp.status == 200 else None
    except (aiohttp.ClientError, TimeoutError):
        return None


async def start_app() -> tuple[web.AppRunner, str]:
    """emojivoto's web container, as far as the test needs it: one answer on 127.0.0.1."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="emojivoto web")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"127.0.0.1:{runner.addresses[0][1]}"


async def patched(client: Injector, pod: Obj) -> bool:
    return (await client.review(pod))[1] is not None


async def ok(url: str) -> bool:
    status, _, _ = await get(url)
    return status == 200
