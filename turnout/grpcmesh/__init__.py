"""Mesh telemetry for proxyless gRPC: grpc.aio interceptors counting Linkerd's families into
`turnout.proxy.metrics.ProxyMetrics` and publishing `turnout.proxy.tap` events (`client`)."""

from __future__ import annotations
