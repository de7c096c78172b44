"""Closing a connection leaves no cyclic garbage: the downstream HTTP/1 connection (parser,
protocol, writer, call) and the pooled upstream one are freed by reference counting alone,
so closed connections never feed the young collections that make the p99 tail.

```
client ──► listener (HttpServerProtocol, Call, ExchangeWriter) ──► pool (UpstreamConnection)
  close ┘                                 close (Connection: close) ┘ ──► backend
```

With the collector off, N connections are opened and closed through a real proxy (the
`Handler` on a table, real sockets); `gc.collect()` under DEBUG_SAVEALL then shows what was
left only in cycles: no object of turnout's classes or an httptools parser may be among them
(the test's loop is asyncio's, whose selector transports leave cycles of their own; uvloop's
do not).
"""

from __future__ import annotations

import asyncio
import gc
import json
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from turnout.cli.offline import offline_runtime
from turnout.proxy.handler import Handler, ProxyState
from turnout.proxy.process import ProxyConfig
from turnout.proxy.runner import build_proxy
from turnout.proxy.table import RuntimeTable
from turnout.proxy.telemetry import Telemetry
from turnout.proxy.transport.server import serve_http

NS = "cyc"
HOST = f"web.{NS}.svc.cluster.local"
ROUTE = f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: {NS}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: web, port: 80}}]
  rules:
  - backendRefs: [{{name: web-v1, port: 80}}]
"""
CONNECTIONS = 30


def _manifests(port: int) -> str:
    def svc(name: str) -> dict[str, object]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        }

    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-v1-slice",
            "namespace": NS,
            "labels": {"kubernetes.io/service-name": "web-v1"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
    }
    docs = [svc("web"), svc("web-v1"), slice_]
    return "\n---\n".join([*(json.dumps(d) for d in docs), ROUTE])


async def _backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers each request; `close` in the path: `Connection: close`, then closes."""
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            close = b"/close" in head.split(b"\r\n", 1)[0]
            extra = b"Connection: close\r\n" if close else b""
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + extra + b"\r\nok")
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def proxied() -> AsyncIterator[int]:
    """The proxy's port, forwarding `HOST` to the backend."""
    backend = await asyncio.start_server(_backend, "127.0.0.1", 0)
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "mesh.yaml"
        f.write_text(_manifests(backend.sockets[0].getsockname()[1]))
        table, _ = offline_runtime([str(f)], namespace=NS)
    proxy = build_proxy(ProxyConfig(namespace=NS, workload_name="client"))
    state = ProxyState(
        table=RuntimeTable.from_xds((), ()), balancers=proxy.balancers, budgets=proxy.budgets
    )
    handler = Handler(
        state=state,
        pool=proxy.pool,
        telemetry=Telemetry(proxy.metrics, proxy.tap),
        namespace=NS,
    )
    proxy.handlers.append(handler)
    proxy.apply(table, "test")
    server = await serve_http(handler, host="127.0.0.1", port=0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await proxy.pool.close()
        backend.close()


async def _exchange(port: int, path: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(2):  # a keep-alive request, then the one that closes
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"ok"
    writer.close()
    await writer.wait_closed()


def _ours(garbage: list[object]) -> Counter[str]:
    return Counter(
        type(o).__qualname__
        for o in garbage
        if type(o).__module__.startswith(("turnout.", "httptools."))
    )


async def test_closed_connections_leave_no_cyclic_garbage(proxied: int) -> None:
    await _exchange(proxied, "/warm/close")  # imports, memos, the first pool entry
    for _ in range(3):  # let the closes' callbacks run
        await asyncio.sleep(0)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for i in range(CONNECTIONS):
            # downstream closed by the client; upstream closed by the backend on /close
            await _exchange(proxied, "/close" if i % 2 else "/keep")
        async with asyncio.timeout(5):
            while len(asyncio.all_tasks()) > 1:  # the handlers' and the closes' callbacks
                await asyncio.sleep(0.01)
        for _ in range(5):
            await asyncio.sleep(0)
        gc.garbage.clear()
        gc.collect()
        left = _ours(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    # before: 72 cyclic objects per connection, 10 of them ours (parsers, protocols, flows,
    # bodies, the errors their futures held); what asyncio's own transports leave is not ours
    assert not left, left
