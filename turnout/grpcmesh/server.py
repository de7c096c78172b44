"""A sync grpc server interceptor: a proxyless server's calls counted as a sidecar's inbound.

```
grpc.server(pool, interceptors=[MeshServerInterceptor(metrics, tap, local=(host, port))])
  call (a pool thread) ──lock──> request_total / response_total{grpc_status,classification} /
                                 response_latency_ms {direction="inbound",target_addr,tls}
                       ──if tap.active: loop.call_soon_threadsafe(tap.publish, TapEvent)
MeshAdmin: /metrics and /tap (turnout.proxy.admin) on an event loop thread of its own
```

`ProxyMetrics` and `TapHub` belong to one thread; the handlers run on the server's pool, so
the counters are updated under one lock and tap events are handed to the admin's loop.
Handlers are wrapped once per method (cached), so a call costs a dict lookup, the lock, two
counter updates and a histogram observation. ``tls`` is the server credentials': ``true``
for xDS credentials (mTLS where the control plane says so), else ``disabled``. Unary-unary
only: the demo's methods.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from turnout.proxy.admin import AdminServer, start_admin
from turnout.proxy.metrics import ProxyMetrics
from turnout.proxy.tap import TapEvent, TapHub, tap_id

_BASE = itertools.count(1)


class MeshAdmin:
    """The admin port (`/metrics`, `/tap`) of a threaded gRPC server, on a loop thread."""

    def __init__(self, metrics: ProxyMetrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.tap = TapHub()
        self.loop = asyncio.new_event_loop()
        self._server: AdminServer | None = None
        started = threading.Event()

        async def serve() -> None:
            self._server = await start_admin(
                host, port, metrics=metrics, tap=self.tap, ready=lambda: True
            )
            started.set()

        threading.Thread(target=self.loop.run_forever, name="mesh-admin", daemon=True).start()
        asyncio.run_coroutine_threadsafe(serve(), self.loop).result(timeout=10)
        started.wait(10)

    def publish(self, event: TapEvent) -> None:
        self.loop.call_soon_threadsafe(self.tap.publish, event)


def _peer(context: Any) -> str:
    """``ipv4:127.0.0.1:5000`` → ``127.0.0.1:5000``."""
    peer = str(context.peer())
    return peer.partition(":")[2] if peer.startswith(("ipv4:", "ipv6:")) else peer


class MeshServerInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Counts every unary call the server answers on `local` (its ``HOST:PORT``)."""

    def __init__(self, admin: MeshAdmin, *, local: tuple[str, int], mtls: bool) -> None:
        self.tls = ("true", "", "") if mtls else ("disabled", "", "")
        self.admin, self.metrics = admin, admin.metrics
        self.key = admin.metrics.http(
            direction="inbound", authority="", target_addr=local, tls=self.tls
        )
        self.dst = f"{local[0]}:{local[1]}"
        self.lock = threading.Lock()
        self._wrapped: dict[str, Any] = {}

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        method = str(handler_call_details.method)
        cached = self._wrapped.get(method)
        if cached is not None:
            return cached
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        wrapped = grpc.unary_unary_rpc_method_handler(
            self._wrap(handler.unary_unary, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, inner: Callable[[Any, Any], Any], path: str) -> Callable[[Any, Any], Any]:
        def call(request: Any, context: Any) -> Any:
            start = time.monotonic()
            with self.lock:
                self.metrics.request(self.key)
            rid = self._publish("req", path, context) if self.admin.tap.active else ""
            code = 2
            try:
                response = inner(request, context)
                set_code = context.code()
                code = 0 if set_code is None else set_code.value[0]
                return response
            finally:
                latency_ms = (time.monotonic() - start) * 1000
                with self.lock:
                    self.metrics.response(
                        self.key, status_code=200, latency_ms=latency_ms, grpc_status=code
                    )
                if rid:
                    us = int(latency_ms * 1000)
                    self._publish("rsp", path, context, rid=rid, latency_us=us)
                    self._publish("end", path, context, rid=rid, grpc_status=code)

        return call

    def _publish(
        self,
        kind: Any,
        path: str,
        context: Any,
        *,
        rid: str = "",
        latency_us: int | None = None,
        grpc_status: int | None = None,
    ) -> str:
        rid = rid or tap_id(next(_BASE), 0)
        self.admin.publish(
            TapEvent(
                kind=kind,
                id=rid,
                direction="inbound",
                src=_peer(context),
                dst=self.dst,
                tls=self.tls[0],
                method="POST",
                authority="",
                path=path,
                status=None if kind == "req" else 200,
                latency_us=latency_us,
                duration_us=0 if kind == "end" else None,
                response_bytes=0 if kind == "end" else None,
                grpc_status=grpc_status,
            )
        )
        return rid
