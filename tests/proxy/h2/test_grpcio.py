"""Real grpcio clients through our proxies to real grpcio servers (docs/http2.md): a
client -> outbound proxy -> inbound proxy -> server chain for every RPC kind (unary,
client-, server-, bidi-streaming) with metadata and trailers both ways, and GRPCRoute
applied by the outbound proxy (method and header matches, weights, a fault abort with a
gRPC status), each call in `response_total{classification,grpc_status}` of both proxies."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.proxy.e2e.harness import Mesh, bounded, metric, service_yaml, start_mesh
from tests.proxy.h2.grpc_server import GrpcServer
from turnout.cli.offline import offline_runtime

ROUTES = """
apiVersion: policy.turnout.dev/v1alpha1
kind: FaultInjection
metadata: {name: denied, namespace: shop}
spec:
  abort: {grpcStatus: 7, percentage: 100}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{method: {service: test.Echo, method: NotFound}}]
    filters:
    - type: ExtensionRef
      extensionRef: {group: policy.turnout.dev, kind: FaultInjection, name: denied}
    backendRefs: [{name: grpc-a, port: 80}]
  - matches:  # the same method plus a header: more specific than the split below
    - method: {service: test.Echo, method: Unary}
      headers: [{name: x-canary, value: "yes"}]
    backendRefs: [{name: grpc-b, port: 80}]
  - matches: [{method: {service: test.Echo, method: Unary}}]
    backendRefs: [{name: grpc-a, port: 80, weight: 50}, {name: grpc-b, port: 80, weight: 50}]
  - backendRefs: [{name: grpc-a, port: 80}]
"""


@dataclass
class Chain:
    outbound: Mesh
    inbound: Mesh
    a: GrpcServer
    b: GrpcServer
    channel: grpc.Channel

    def unary(self, method: str, req: bytes, **kw: object) -> tuple[bytes, grpc.Call]:
        call = self.channel.unary_unary(f"/test.Echo/{method}")
        return call.with_call(req, timeout=10, **kw)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[GrpcServer, GrpcServer]]:
    a, b = GrpcServer("a").start(), GrpcServer("b").start()
    yield a, b
    a.stop()
    b.stop()


def _table(tmp: Path, name: str, text: str):  # type: ignore[no-untyped-def]
    f = tmp / name
    f.write_text(text)
    table, diags = offline_runtime([str(f)], namespace="shop")
    assert not [d for d in diags if d.severity.value == "error"], diags
    return table


@pytest.fixture
async def chain(tmp_path: Path, servers: tuple[GrpcServer, GrpcServer]) -> AsyncIterator[Chain]:
    a, b = servers
    # server a sits behind its own inbound proxy; the client's outbound proxy routes to it
    inbound = await start_mesh(
        _table(tmp_path, "in.yaml", service_yaml("app", [a.port])),
        inbound_app=("127.0.0.1", a.port),
    )
    assert inbound.inbound is not None
    text = "\n---\n".join(
        [
            service_yaml("web", []),
            service_yaml("grpc-a", [inbound.inbound]),
            service_yaml("grpc-b", [b.port]),
            ROUTES,
        ]
    )
    outbound = await start_mesh(_table(tmp_path, "out.yaml", text))
    channel = grpc.insecure_channel(
        f"127.0.0.1:{outbound.outbound}", options=[("grpc.default_authority", "web")]
    )
    yield Chain(outbound, inbound, a, b, channel)
    channel.close()
    await outbound.close()
    await inbound.close()


@bounded(20)
async def test_every_rpc_kind_crosses_two_proxies_with_metadata_and_trailers(chain: Chain) -> None:
    def calls() -> list[object]:
        ch = chain.channel
        # header match wins over the weights: x-canary goes to b, without it Unary is split
        reply, call = chain.unary("Unary", b"ping", metadata=(("x-client", "me"),))
        trailers = dict(call.trailing_metadata())
        streamed = ch.unary_stream("/test.Echo/ServerStream")(b"3", timeout=10)
        messages = list(streamed)
        served_by = dict(streamed.trailing_metadata())["x-served-by"]
        joined = ch.stream_unary("/test.Echo/ClientStream")(iter([b"a", b"b", b"c"]), timeout=10)
        bidi = list(ch.stream_stream("/test.Echo/Bidi")(iter([b"x", b"y"]), timeout=10))
        return [reply, trailers["x-seen-client"], messages, served_by, joined, bidi]

    reply, seen, messages, served_by, joined, bidi = await asyncio.to_thread(calls)
    assert (reply, seen) == (b"ping", "me")
    assert (messages, served_by) == ([b"m0", b"m1", b"m2"], "a")  # the default rule: a
    assert (joined, bidi) == (b"abc", [b"x", b"y"])
    for mesh, direction in ((chain.outbound, "outbound"), (chain.inbound, "inbound")):
        text = await mesh.metrics()
        ok = {"direction": direction, "grpc_status": "0", "classification": "success"}
        assert metric(text, "response_total", **ok) >= 3, direction


@bounded(20)
async def test_grpcroute_matches_weights_and_a_fault_abort_with_a_grpc_status(
    chain: Chain,
) -> None:
    def calls() -> tuple[Counter[str], Counter[str], grpc.RpcError]:
        split: Counter[str] = Counter()
        for _ in range(40):
            _, call = chain.unary("Unary", b"w")
            split[dict(call.initial_metadata())["x-backend"]] += 1
        canary: Counter[str] = Counter()
        for _ in range(5):
            _, call = chain.unary("Unary", b"c", metadata=(("x-canary", "yes"),))
            canary[dict(call.initial_metadata())["x-backend"]] += 1
        try:
            chain.unary("NotFound", b"x")
        except grpc.RpcError as err:
            return split, canary, err
        raise AssertionError("the fault did not abort")

    before = chain.a.calls["NotFound"]
    split, canary, err = await asyncio.to_thread(calls)
    assert split["a"] >= 5 and split["b"] >= 5, split  # 50/50 (p of failing < 1e-6)
    assert canary == Counter({"b": 5})
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    assert chain.a.calls["NotFound"] == before  # aborted by the proxy, never sent
    text = await chain.outbound.metrics()
    denied = {"direction": "outbound", "grpc_status": "7", "classification": "failure"}
    assert metric(text, "response_total", **denied) == 1

    def unknown() -> grpc.RpcError:
        with grpc.insecure_channel(
            f"127.0.0.1:{chain.outbound.outbound}",
            options=[("grpc.default_authority", "nope.elsewhere")],
        ) as ch:
            try:
                ch.unary_unary("/test.Echo/Unary")(b"x", timeout=10)
            except grpc.RpcError as err:
                return err
        raise AssertionError("an unknown authority was answered")

    err = await asyncio.to_thread(unknown)  # the 404 "unknown destination", in gRPC form
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
    text = await chain.outbound.metrics()
    assert metric(text, "response_total", direction="outbound", grpc_status="12") == 1
