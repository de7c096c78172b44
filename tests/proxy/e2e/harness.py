"""A real proxy in front of real backends, all on 127.0.0.1: the e2e test harness.

`Mesh` writes manifests (Services + EndpointSlices for the given backends, plus route YAML),
compiles them the way `mesh proxy -f` does, starts the proxy's outbound, inbound and admin
listeners on free ports, and sends requests through them with an aiohttp client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.proxy.e2e.backends import Backend
from turnout.engine.cli import offline_runtime
from turnout.proxy.runner import Address, Proxy, ProxyConfig, StaticTable, start_proxy, stop_proxy
from turnout.proxy.table import RuntimeTable

NS = "shop"


def service_yaml(name: str, backends: Sequence[Backend], *, port: int = 80) -> str:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"ports": [{"name": "http", "port": port}]},
    }
    docs = [svc]
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
                "ports": [{"name": "http", "port": b.port} for b in backends[:1]],
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
            }
        )
    return "\n---\n".join(json.dumps(d) for d in docs)


def compile_runtime(
    tmp: Path, services: Mapping[str, Sequence[Backend]], routes: str
) -> RuntimeTable:
    text = "\n---\n".join([*(service_yaml(n, b) for n, b in services.items()), routes])
    f = tmp / "mesh.yaml"
    f.write_text(text)
    table, diags = offline_runtime([str(f)], namespace=NS)
    errors = [str(d) for d in diags if d.severity.value == "error"]
    assert not errors, errors
    return table


@dataclass
class Mesh:
    proxy: Proxy
    task: object
    session: aiohttp.ClientSession
    outbound: int
    admin: int
    extra: list[object] = field(default_factory=list)

    async def get(
        self,
        host: str,
        path: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        url = f"http://127.0.0.1:{self.outbound}{path}"
        hdrs = {"Host": host, **(headers or {})}
        async with self.session.request(
            method, url, headers=hdrs, data=data, allow_redirects=False
        ) as resp:
            body = await resp.read()
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, body

    async def metrics(self) -> str:
        async with self.session.get(f"http://127.0.0.1:{self.admin}/metrics") as resp:
            return await resp.text()

    def apply(self, table: RuntimeTable, version: str) -> None:
        self.proxy.apply(table, version)

    async def close(self) -> None:
        await self.session.close()
        await stop_proxy(self.proxy, self.task)  # type: ignore[arg-type]


async def start_mesh(table: RuntimeTable, *, inbound_app: tuple[str, int] | None = None) -> Mesh:
    config = ProxyConfig(
        namespace=NS,
        workload_name="client",
        outbound=Address(host="127.0.0.1", port=0),
        admin=Address(host="127.0.0.1", port=0),
        inbound=Address(host="127.0.0.1", port=0) if inbound_app else None,
        app=Address(host=inbound_app[0], port=inbound_app[1]) if inbound_app else None,
    )
    proxy, task = await start_proxy(config, StaticTable(table))
    outbound = proxy.port_of(proxy.servers[0])
    assert proxy.admin is not None
    admin_port = proxy.admin.addresses[0][1]
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
    return Mesh(proxy=proxy, task=task, session=session, outbound=outbound, admin=admin_port)
