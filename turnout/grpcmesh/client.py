"""A grpc.aio client interceptor: a proxyless call counted as a sidecar's outbound request.

```
channel = grpc.aio.insecure_channel("xds:///emoji.emojivoto.svc.cluster.local:8080",
                                    interceptors=[MeshClientInterceptor(metrics, tap, ...)])
  call ──> request_total{direction="outbound",authority,target_addr,tls,dst_namespace,dst_service}
       ──> response_total{…,status_code="200",grpc_status,classification}
           response_latency_ms{…}          (ProxyMetrics: the proxy's own families)
       ──> if tap.active: req / rsp / end TapEvents (TapHub: the admin /tap the app serves)
```

Per call: one cached key (built once per channel), two counter updates and a histogram
observation; tap events only while someone taps. The endpoint grpcio picked is not exposed
to interceptors, so ``target_addr`` and tap's ``dst`` are the Service address the channel
dials (``emoji.emojivoto.svc.cluster.local:8080``), and ``src`` is this process
(``pod``). ``tls`` is the channel's: ``true`` for xDS credentials (mTLS where the cluster
says so), ``disabled`` for an insecure channel. Unary-unary only: the demo's calls.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc.aio

from turnout.proxy.metrics import ProxyMetrics
from turnout.proxy.tap import TapEvent, TapHub, tap_id

TLS_TRUE: Final = ("true", "", "")
TLS_OFF: Final = ("disabled", "", "")
_BASE = itertools.count(1)


class MeshClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Counts every unary call of one channel to `authority` (``HOST:PORT``)."""

    def __init__(
        self,
        metrics: ProxyMetrics,
        tap: TapHub,
        *,
        authority: str,
        dst_namespace: str,
        dst_service: str,
        mtls: bool,
        src: str,
    ) -> None:
        host, _, port = authority.rpartition(":")
        self.tls = TLS_TRUE if mtls else TLS_OFF
        self.key = metrics.http(
            direction="outbound",
            authority=authority,
            target_addr=(host, int(port)),
            dst_namespace=dst_namespace,
            dst_service=dst_service,
            tls=self.tls,
        )
        self.metrics, self.tap, self.authority, self.src = metrics, tap, authority, src
        self.dst_namespace, self.dst_service = dst_namespace, dst_service

    async def intercept_unary_unary(
        self,
        continuation: Callable[[Any, Any], Awaitable[Any]],
        client_call_details: Any,
        request: Any,
    ) -> Any:
        start = time.monotonic()
        self.metrics.request(self.key)
        tapped = self._publish("req", client_call_details, "") if self.tap.active else ""
        code = 2  # UNKNOWN unless the call says otherwise
        try:
            call = await continuation(client_call_details, request)
            code = (await call.code()).value[0]
            return call
        except grpc.aio.AioRpcError as exc:
            code = exc.code().value[0]
            raise
        finally:
            latency_ms = (time.monotonic() - start) * 1000
            self.metrics.response(
                self.key, status_code=200, latency_ms=latency_ms, grpc_status=code
            )
            if tapped:
                us = int(latency_ms * 1000)
                self._publish("rsp", client_call_details, tapped, latency_us=us)
                self._publish("end", client_call_details, tapped, grpc_status=code)

    def _publish(
        self,
        kind: Any,
        details: Any,
        rid: str,
        *,
        latency_us: int | None = None,
        grpc_status: int | None = None,
    ) -> str:
        rid = rid or tap_id(next(_BASE), 0)
        method = details.method
        path = method.decode() if isinstance(method, bytes) else str(method)
        self.tap.publish(
            TapEvent(
                kind=kind,
                id=rid,
                direction="outbound",
                src=self.src,
                dst=self.authority,
                tls=self.tls[0],
                method="POST",
                authority=self.authority,
                path=path,
                dst_namespace=self.dst_namespace,
                dst_service=self.dst_service,
                status=None if kind == "req" else 200,
                latency_us=latency_us,
                duration_us=0 if kind == "end" else None,
                response_bytes=0 if kind == "end" else None,
                grpc_status=grpc_status,
            )
        )
        return rid
