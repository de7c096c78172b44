"""Cost of `grpcmesh.client.MeshClientInterceptor` per proxyless unary call.

```
python -m bench.grpc_interceptor [CALLS]
   grpc.aio server on 127.0.0.1 (one echo method) <── CALLS sequential unary calls, a channel
   without the interceptor, then one with it (tap off), then with a tap subscriber
   ──> µs per call each way, and the difference
```
"""

from __future__ import annotations

import asyncio
import sys
import time

import grpc
import grpc.aio

from turnout.grpcmesh.client import MeshClientInterceptor
from turnout.proxy.metrics import ProxyMetrics
from turnout.proxy.tap import TapHub

METHOD = "/bench.Echo/Echo"


async def timed(channel: grpc.aio.Channel, calls: int) -> float:
    stub = channel.unary_unary(METHOD)
    for _ in range(200):  # warm up
        await stub(b"x")
    start = time.perf_counter()
    for _ in range(calls):
        await stub(b"x")
    return (time.perf_counter() - start) / calls * 1e6


class _Done:
    async def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.OK


class _Details:
    method = METHOD.encode()


async def bookkeeping(mesh: MeshClientInterceptor, calls: int) -> float:
    """The interceptor's own work per call (metrics, no tap), with a continuation that
    returns at once: what it adds, without the network's noise."""
    done, details = _Done(), _Details()

    async def continuation(d: object, r: object) -> _Done:
        return done

    async def bare(d: object, r: object) -> _Done:
        call = await continuation(d, r)
        await call.code()
        return call

    for fn in (bare, mesh.intercept_unary_unary):
        start = time.perf_counter()
        for _ in range(calls):
            if fn is bare:
                await bare(details, b"")
            else:
                await mesh.intercept_unary_unary(continuation, details, b"")
        if fn is bare:
            base = time.perf_counter() - start
    return ((time.perf_counter() - start) - base) / calls * 1e6


async def main(calls: int) -> None:
    async def echo(request: bytes, context: object) -> bytes:
        return request

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    target = f"127.0.0.1:{port}"
    metrics = ProxyMetrics(namespace="bench", workload_name="web")
    tap = TapHub()
    mesh = MeshClientInterceptor(
        metrics,
        tap,
        authority=target,
        dst_namespace="bench",
        dst_service="echo",
        mtls=False,
        src="web",
    )
    results = {}
    for name, interceptors in (("plain", None), ("interceptor", [mesh])):
        async with grpc.aio.insecure_channel(target, interceptors=interceptors) as ch:
            results[name] = await timed(ch, calls)
    sub = tap.subscribe()
    async with grpc.aio.insecure_channel(target, interceptors=[mesh]) as ch:
        results["interceptor+tap"] = await timed(ch, calls)
    sub.close()
    await server.stop(None)
    results["bookkeeping"] = await bookkeeping(mesh, calls * 10)
    for name, us in results.items():
        print(f"{name:16} {us:8.1f} µs/call")
    print(
        f"channel difference {results['interceptor'] - results['plain']:+.1f} µs/call (noise-bound)"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
