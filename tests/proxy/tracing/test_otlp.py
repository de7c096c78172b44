"""`otlp.SpanExporter` against a real HTTP/1.1 collector on 127.0.0.1 that keeps its
connections alive and then drops them while idle, as collectors do (an idle timeout): the
next batch goes out on a new connection, nothing is lost, nothing is logged."""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from typing import Any

import pytest

from turnout.proxy.otlp import MAX_BATCH, SpanExporter, span_json

TIMEOUT_S = 30


class _Collector(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless told otherwise
    server: _Server

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        (rs,) = body["resourceSpans"]
        ((spans,),) = [[ss["spans"]] for ss in rs["scopeSpans"]]
        self.server.spans += len(spans)
        self.server.connections.add(self.client_address)
        self.send_response(200)
        self.send_header("content-length", "2")
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")
        # then close without a word (no "Connection: close"): the exporter still holds it
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    spans = 0
    connections: set[Any]


def encode(n: int) -> str:
    return span_json(
        trace_id=b"%032x" % (n + 1),
        span_id=b"%016x" % (n + 1),
        parent_id=None,
        name="GET web",
        kind=3,
        start_ns=1,
        end_ns=2,
        attributes="[]",
        error=None,
    )


def until(condition: Any) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_connection_the_collector_dropped_is_opened_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = _Server(("127.0.0.1", 0), _Collector)
    server.connections = set()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    exporter: SpanExporter[int] = SpanExporter(
        "127.0.0.1",
        server.server_address[1],
        resource={"service.name": "web"},
        scope="test",
        encode=encode,
        delay_s=60,  # batches go when MAX_BATCH are queued, and at shutdown
        timeout_s=5,
    )
    try:
        with caplog.at_level(logging.WARNING, logger="turnout.proxy.otlp"):
            for n in range(MAX_BATCH):
                exporter.add(n)
            until(lambda: exporter.exported == MAX_BATCH)
            for n in range(MAX_BATCH):  # on the connection the collector closed
                exporter.add(n)
            until(lambda: exporter.exported == 2 * MAX_BATCH)
        assert server.spans == 2 * MAX_BATCH
        assert len(server.connections) == 2
        assert caplog.records == []
    finally:
        exporter.shutdown()
        server.shutdown()
        server.server_close()
