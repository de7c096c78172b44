"""Proxyless gRPC: a real grpcio client, configured only by our ADS server, calls real grpcio
backends on 127.0.0.1 and follows the routes we publish (what docs/xds.md promises).

```
 test ── publish(table from manifests: Services, EndpointSlices -> backend ports, routes)
   │                                   │
   │     AdsServer (127.0.0.1:0) <── ADS ── grpcio client subprocess (GRPC_XDS_BOOTSTRAP_CONFIG,
   │                                         xds:///echo.grpc.svc.cluster.local:9000)
   └── Backend "v1" / "v2" (grpc.aio, generic handler /test.Echo/Who) <── calls ──┘
```

The client runs in a subprocess per test (grpcio reads its bootstrap once per process) and
is driven line by line (`grpc_client.py`). Set `TURNOUT_GRPC_TRACE=1` to get grpc's xDS
logs on the subprocess's stderr (printed when a test fails).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

from tests.engine.server.builders import compile_table, manifest, mk_endpoints, mk_service
from turnout.engine.server import AdsServer, ServerSettings, bootstrap_config, service_target

ROOT = Path(__file__).resolve().parents[3]
NS = "grpc"
PORT = 9000
TARGET = service_target("echo", NS, PORT)
TIMEOUT_S = 15.0


class Backend:
    """A grpcio server answering `/test.Echo/Who` with its name; `fail_next` calls fail."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0
        self.fail_next = 0
        self.port = 0
        self._server: grpc.aio.Server | None = None

    async def who(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        self.calls += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.name} is flaky")
        return self.name.encode()

    async def start(self) -> None:
        handler = grpc.method_handlers_generic_handler(
            "test.Echo", {"Who": grpc.unary_unary_rpc_method_handler(self.who)}
        )
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)


class ProxylessClient:
    """The grpcio client subprocess; `call` sends one command and returns its calls."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc

    async def call(
        self,
        n: int = 1,
        *,
        metadata: tuple[tuple[str, str], ...] = (),
        timeout_s: float = 5.0,
        wait_for_ready: bool = False,
    ) -> list[tuple[str | None, str, int]]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        cmd = {
            "n": n,
            "metadata": metadata,
            "timeout_s": timeout_s,
            "wait_for_ready": wait_for_ready,
        }
        self._proc.stdin.write((json.dumps(cmd) + "\n").encode())
        async with asyncio.timeout(TIMEOUT_S):
            await self._proc.stdin.drain()
            line = await self._proc.stdout.readline()
        assert line, "grpc client exited"
        return [tuple(c) for c in json.loads(line)["calls"]]

    async def backends(self, n: int, **kw: object) -> Counter[str | None]:
        return Counter(b if s == "OK" else s for b, s, _ in await self.call(n, **kw))  # type: ignore[arg-type]


@pytest.fixture
async def backends() -> AsyncIterator[dict[str, Backend]]:
    out = {name: Backend(name) for name in ("v1", "v2")}
    for b in out.values():
        await b.start()
    try:
        yield out
    finally:
        for b in out.values():
            await b.stop()


@pytest.fixture
async def ads() -> AsyncIterator[AdsServer]:
    srv = AdsServer(settings=ServerSettings(stop_grace_ms=0))
    await srv.start("127.0.0.1", 0)
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def client(ads: AdsServer, tmp_path: Path) -> AsyncIterator[ProxylessClient]:
    env = dict(os.environ)
    config = bootstrap_config(
        xds=f"127.0.0.1:{ads.port}", namespace="client-ns", workload="deployment/caller"
    )
    env["GRPC_XDS_BOOTSTRAP_CONFIG"] = json.dumps(config)
    env["PYTHONPATH"] = str(ROOT)
    if os.environ.get("TURNOUT_GRPC_TRACE"):
        env |= {"GRPC_TRACE": "xds_client,xds_resolver", "GRPC_VERBOSITY": "DEBUG"}
    stderr_path = tmp_path / "grpc-client.stderr"
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.engine.server.grpc_client",
            TARGET,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=ROOT,
        )
    try:
        yield ProxylessClient(proc)
    finally:
        if proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        sys.stderr.write(stderr_path.read_text(errors="replace")[-20_000:])


def mesh(backends: dict[str, Backend], route: str, *extra: str) -> str:
    """Services echo, echo-v1, echo-v2 (port 9000, gRPC); v1/v2 endpoints at the backends."""
    services = [
        mk_service(n, ns=NS, port=PORT, proto="grpc") for n in ("echo", "echo-v1", "echo-v2")
    ]
    slices = [
        mk_endpoints(f"echo-{name}", b.port, ns=NS, svc_port_name="grpc")
        for name, b in backends.items()
    ]
    return manifest(*services, *slices, *extra, route)


def grpc_route(rules: str) -> str:
    return (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\n"
        f"metadata: {{name: echo, namespace: {NS}}}\nspec:\n"
        f'  parentRefs: [{{group: "", kind: Service, name: echo, port: {PORT}}}]\n'
        f"  rules:\n{rules}"
    )


def split(v1: int, v2: int) -> str:
    return (
        f"  - backendRefs: [{{name: echo-v1, port: {PORT}, weight: {v1}}},"
        f" {{name: echo-v2, port: {PORT}, weight: {v2}}}]\n"
    )


def fault(name: str, spec: str) -> str:
    return (
        "apiVersion: policy.turnout.dev/v1alpha1\nkind: FaultInjection\n"
        f"metadata: {{name: {name}, namespace: {NS}}}\nspec: {spec}\n"
    )


def with_fault(name: str) -> str:
    return (
        "    filters:\n    - type: ExtensionRef\n"
        f"      extensionRef: {{group: policy.turnout.dev, kind: FaultInjection, name: {name}}}\n"
    )


CANARY_HEADER = f"""\
  - matches:
    - method: {{service: test.Echo, method: Who}}
      headers: [{{name: x-canary, value: "true"}}]
    backendRefs: [{{name: echo-v2, port: {PORT}}}]
  - backendRefs: [{{name: echo-v1, port: {PORT}}}]
"""


async def test_header_match_routes_the_canary_header_to_v2(
    ads: AdsServer, backends: dict[str, Backend], client: ProxylessClient, tmp_path: Path
) -> None:
    ads.publish(compile_table(tmp_path, mesh(backends, grpc_route(CANARY_HEADER))))
    assert await client.backends(1, wait_for_ready=True, timeout_s=10) == {"v1": 1}
    assert await client.backends(10, metadata=(("x-canary", "true"),)) == {"v2": 10}
    assert await client.backends(10, metadata=(("x-canary", "false"),)) == {"v1": 10}
    assert await client.backends(10) == {"v1": 10}


async def test_weighted_split_and_a_live_weight_change_without_restart(
    ads: AdsServer, backends: dict[str, Backend], client: ProxylessClient, tmp_path: Path
) -> None:
    ads.publish(compile_table(tmp_path, mesh(backends, grpc_route(split(80, 20)))))
    await client.call(1, wait_for_ready=True, timeout_s=10)
    got = await client.backends(300)
    assert set(got) == {"v1", "v2"}
    assert 0.10 <= got["v2"] / 300 <= 0.32, got  # 20% expected; wide bounds, no flakes
    ads.publish(compile_table(tmp_path, mesh(backends, grpc_route(split(0, 100)))))
    async with asyncio.timeout(TIMEOUT_S):
        while (got := await client.backends(20)) != {"v2": 20}:
            await asyncio.sleep(0.05)
    assert got == {"v2": 20}


async def test_fault_abort_answers_unavailable(
    ads: AdsServer, backends: dict[str, Backend], client: ProxylessClient, tmp_path: Path
) -> None:
    rules = f"  - backendRefs: [{{name: echo-v1, port: {PORT}}}]\n" + with_fault("down")
    text = mesh(backends, grpc_route(rules), fault("down", "{abort: {grpcStatus: 14}}"))
    ads.publish(compile_table(tmp_path, text))
    got = await client.call(20, wait_for_ready=True, timeout_s=10)
    assert {s for _, s, _ in got} == {"UNAVAILABLE"}
    assert backends["v1"].calls == 0


async def test_fault_delay_holds_every_call(
    ads: AdsServer, backends: dict[str, Backend], client: ProxylessClient, tmp_path: Path
) -> None:
    rules = f"  - backendRefs: [{{name: echo-v1, port: {PORT}}}]\n" + with_fault("slow")
    text = mesh(backends, grpc_route(rules), fault("slow", "{delay: {fixedDelay: 300ms}}"))
    ads.publish(compile_table(tmp_path, text))
    await client.call(1, wait_for_ready=True, timeout_s=10)
    got = await client.call(3)
    assert [(b, s) for b, s, _ in got] == [("v1", "OK")] * 3
    assert all(ms >= 290 for _, _, ms in got), got
    # And a deadline shorter than the delay ends the call with DEADLINE_EXCEEDED.
    [(_, status, _)] = await client.call(1, timeout_s=0.1)
    assert status == "DEADLINE_EXCEEDED"


RETRY_ROUTE = f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: echo, namespace: {NS}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: echo, port: {PORT}}}]
  rules:
  - backendRefs: [{{name: echo-v1, port: {PORT}}}]
    retry: {{codes: [503], attempts: 2, backoff: 10ms}}
"""


async def test_retries_repeat_a_call_that_failed_unavailable(
    ads: AdsServer, backends: dict[str, Backend], client: ProxylessClient, tmp_path: Path
) -> None:
    ads.publish(compile_table(tmp_path, mesh(backends, RETRY_ROUTE)))
    await client.call(1, wait_for_ready=True, timeout_s=10)
    v1 = backends["v1"]
    v1.calls, v1.fail_next = 0, 2
    [(backend, status, _)] = await client.call(1)
    assert (backend, status, v1.calls) == ("v1", "OK", 3)
