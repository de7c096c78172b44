"""A real proxy in front of real backends, all on 127.0.0.1: the e2e test harness.

`Mesh` writes manifests (Services + EndpointSlices for the given backends, plus route YAML),
compiles them the way `mesh proxy -f` does, starts the proxy's outbound, inbound and admin
listeners on free ports, and sends requests through them with an aiohttp client.

```
httproute(rules) / route_to(backend, options=) -> route YAML for Service web
compile_runtime(tmp, {"svc": [backend | port]}, ROUTES) -> RuntimeTable
start_mesh(table) -> Mesh    (returns once the table is applied: no sleeping for it)
mesh.get(host, path) / mesh.load(host, path, n=, workers=) / mesh.raw(bytes)
```

Every e2e test is wrapped in `bounded(seconds)`, so a hung proxy fails one test instead of
stalling the run.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import socket
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec, TypeVar

import aiohttp
from multidict import CIMultiDict

from tests.proxy.e2e.backends import Backend, RawBackend
from turnout.cli.offline import offline_runtime
from turnout.proxy.process import Address, OnPolicy, OnTable, ProxyConfig
from turnout.proxy.runner import Proxy, start_proxy, stop_proxy
from turnout.proxy.table import RuntimeTable

NS = "shop"

Endpoint = Backend | RawBackend | int
"""What a Service points at: a backend, or a bare port (e.g. one nobody listens on)."""

P = ParamSpec("P")
T = TypeVar("T")


def bounded(seconds: float) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Fail the test (TimeoutError) if it runs longer than `seconds`."""

    def wrap(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(fn)
        async def run(*args: P.args, **kwargs: P.kwargs) -> T:
            async with asyncio.timeout(seconds):
                return await fn(*args, **kwargs)

        return run

    return wrap


def dead_port() -> int:
    """A port on 127.0.0.1 that nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port(ep: Endpoint) -> int:
    return ep if isinstance(ep, int) else ep.port


def service_yaml(
    name: str,
    backends: Sequence[Endpoint],
    *,
    port: int = 80,
    ready: bool = True,
    cluster_ip: str | None = None,
) -> str:
    """A Service (with `cluster_ip` when given) and, when `backends` is not empty, an
    EndpointSlice with one endpoint on 127.0.0.1 at the first backend's port (`ready=False`:
    the endpoint is not ready)."""
    spec: dict[str, object] = {"ports": [{"name": "http", "port": port}]}
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    svc: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }
    docs: list[dict[str, object]] = [svc]
    if backends:
        docs.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-slice",
                    "namespace": NS,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": _port(b)} for b in backends[:1]],
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready}}],
            }
        )
    return "\n---\n".join(json.dumps(d) for d in docs)


def httproute(rules: str, *, name: str = "web") -> str:
    """An HTTPRoute for Service `name` (port 80) with `rules`, the YAML list items under
    ``rules:`` (indented by two spaces, each starting with ``- ``)."""
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: {NS}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: {name}, port: 80}}]
  rules:
{rules.strip(chr(10))}
"""


def route_to(backend: str, *, options: str = "") -> str:
    """An HTTPRoute sending every request for Service `web` (port 80) to `backend`:80;
    `options` (YAML) are added to the rule, e.g. ``timeouts: {request: 100ms}``."""
    rule = f"  - backendRefs: [{{name: {backend}, port: 80}}]"
    return httproute(f"{rule}\n    {options}" if options else rule)


def compile_runtime(
    tmp: Path,
    services: Mapping[str, Sequence[Endpoint]],
    routes: str,
    *,
    unready: Sequence[str] = (),
    name: str = "mesh.yaml",
) -> RuntimeTable:
    """Compile Services for `services` (those in `unready` get a not-ready endpoint) plus
    `routes`; fails the test on any error diagnostic."""
    text = "\n---\n".join(
        [*(service_yaml(n, b, ready=n not in unready) for n, b in services.items()), routes]
    )
    f = tmp / name
    f.write_text(text)
    table, diags = offline_runtime([str(f)], namespace=NS)
    errors = [str(d) for d in diags if d.severity.value == "error"]
    assert not errors, errors
    return table


def metric(text: str, name: str, **labels: str) -> int:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0
    for m in re.finditer(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", text, re.MULTILINE):
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += int(float(m.group(2)))
    return total


@dataclass(frozen=True, slots=True)
class _ReadySource:
    """`StaticTable` that also says when the table has been applied."""

    table: RuntimeTable
    applied: asyncio.Event

    async def run(self, on_table: OnTable, on_policy: OnPolicy | None = None) -> None:
        on_table(self.table, "v0")
        self.applied.set()
        await asyncio.Event().wait()


@dataclass
class Mesh:
    proxy: Proxy
    task: asyncio.Task[None]
    session: aiohttp.ClientSession
    outbound: int
    admin: int
    inbound: int | None = None
    extra: list[object] = field(default_factory=list)

    async def get(
        self,
        host: str,
        path: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        data: bytes | None = None,
        port: int | None = None,
    ) -> tuple[int, CIMultiDict[str], bytes]:
        """One request through the proxy: status, headers (all values), body."""
        url = f"http://127.0.0.1:{port or self.outbound}{path}"
        hdrs: list[tuple[str, str]] = [("Host", host)]
        if isinstance(headers, Mapping):
            hdrs += list(headers.items())
        elif headers is not None:
            hdrs += list(headers)
        async with self.session.request(
            method, url, headers=hdrs, data=data, allow_redirects=False
        ) as resp:
            body = await resp.read()
            return resp.status, CIMultiDict(resp.headers), body

    async def load(
        self, host: str, path: str, *, n: int, workers: int = 32
    ) -> Counter[tuple[int, str]]:
        """`n` GETs from `workers` concurrent loops; counts of (status, x-backend or "")."""
        out: Counter[tuple[int, str]] = Counter()
        left = iter(range(n))

        async def worker() -> None:
            for _ in left:
                status, headers, _ = await self.get(host, path)
                out[(status, headers.get("x-backend", ""))] += 1

        async with asyncio.TaskGroup() as tg:
            for _ in range(workers):
                tg.create_task(worker())
        return out

    async def raw(self, data: bytes, *, port: int | None = None) -> bytes:
        """Write `data` on a fresh connection and read until the proxy closes it."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port or self.outbound)
        try:
            writer.write(data)
            await writer.drain()
            return await reader.read(-1)
        finally:
            writer.close()
            await writer.wait_closed()

    async def admin_get(self, path: str) -> tuple[int, str]:
        async with self.session.get(f"http://127.0.0.1:{self.admin}{path}") as resp:
            return resp.status, await resp.text()

    async def metrics(self) -> str:
        return (await self.admin_get("/metrics"))[1]

    def apply(self, table: RuntimeTable, version: str) -> None:
        self.proxy.apply(table, version)

    async def close(self) -> None:
        await self.session.close()
        await stop_proxy(self.proxy, self.task)


async def start_mesh(
    table: RuntimeTable,
    *,
    inbound_app: tuple[str, int] | None = None,
    gateway: str | None = None,
    service_listeners: bool = False,
    transparent: bool = False,
) -> Mesh:
    """Start a proxy serving `table` (as the data plane of `gateway`, ``NS/NAME:PORT``,
    when given); returns once the table is applied."""
    config = ProxyConfig(
        gateway=gateway,
        service_listeners=service_listeners,
        transparent=transparent,
        namespace=NS,
        workload_name="client",
        outbound=Address(host="127.0.0.1", port=0),
        admin=Address(host="127.0.0.1", port=0),
        inbound=Address(host="127.0.0.1", port=0) if inbound_app else None,
        app=Address(host=inbound_app[0], port=inbound_app[1]) if inbound_app else None,
    )
    applied = asyncio.Event()
    proxy, task = await start_proxy(config, _ReadySource(table, applied))
    await applied.wait()
    while not proxy.ready:  # a Gateway port turning HTTPS is served again first
        await asyncio.sleep(0.005)
    outbound = proxy.port_of(proxy.servers[0])
    inbound = proxy.port_of(proxy.servers[1]) if inbound_app else None
    assert proxy.admin is not None
    admin_port = proxy.admin.addresses[0][1]
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=20),
        connector=aiohttp.TCPConnector(limit=0),
    )
    return Mesh(
        proxy=proxy,
        task=task,
        session=session,
        outbound=outbound,
        admin=admin_port,
        inbound=inbound,
    )


async def start_cli_proxy(*args: str) -> asyncio.subprocess.Process:
    """`python -m turnout.cli proxy ARGS` as a process, output piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "turnout.cli", "proxy", *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_admin_ready(admin: int, *, tries: int = 400) -> None:
    """Until the admin port answers /ready 200 (the table is in); a test's own bound ends it."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for _ in range(tries):
            try:
                async with session.get(f"http://127.0.0.1:{admin}/ready") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"admin :{admin} never answered /ready 200")
