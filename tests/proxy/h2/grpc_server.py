"""A real grpcio server (threads, no generated code: raw-bytes methods) for the proxy's
gRPC tests, plus the gRPC message framing an HTTP/1.1 test client needs.

Methods of ``test.Echo`` (request and response are raw bytes):
- ``Unary``: the request back; the metadata key ``x-backend`` names the server, the
  trailer ``x-seen-client`` is the request's ``x-client`` metadata;
- ``NotFound``: NOT_FOUND before any message (a trailers-only response);
- ``Flaky``: UNAVAILABLE (trailers-only) for the first N calls of a request body ``N:key``,
  then the request back;
- ``ServerStream``: (trailer ``x-served-by``) ``m0``.. N times (request ``N``), then INTERNAL after them
  when the request ends in ``!`` (a status in the trailers, after DATA);
- ``ClientStream``: the concatenated request messages;
- ``Bidi``: every request message back as it comes.
`calls` counts calls per method.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc


def frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message (not compressed)."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def unframe(data: bytes) -> list[bytes]:
    out = []
    while data:
        n = int.from_bytes(data[1:5], "big")
        out.append(data[5 : 5 + n])
        data = data[5 + n :]
    return out


@dataclass
class GrpcServer:
    name: str = "grpc"
    port: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    _flaky: Counter[bytes] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    server: Any = None

    def start(self) -> GrpcServer:
        def count(method: str) -> None:
            with self._lock:
                self.calls[method] += 1

        def unary(req: bytes, ctx: grpc.ServicerContext) -> bytes:
            count("Unary")
            ctx.send_initial_metadata((("x-backend", self.name),))
            seen = dict(ctx.invocation_metadata()).get("x-client", "-")
            ctx.set_trailing_metadata((("x-seen-client", str(seen)),))
            return req

        def not_found(req: bytes, ctx: grpc.ServicerContext) -> bytes:
            count("NotFound")
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
            raise AssertionError

        def flaky(req: bytes, ctx: grpc.ServicerContext) -> bytes:
            count("Flaky")
            n, _, key = req.partition(b":")
            with self._lock:
                self._flaky[key] += 1
                seen = self._flaky[key]
            if seen <= int(n):
                ctx.abort(grpc.StatusCode.UNAVAILABLE, "try again")
            return req

        def server_stream(req: bytes, ctx: grpc.ServicerContext) -> Iterator[bytes]:
            count("ServerStream")
            ctx.set_trailing_metadata((("x-served-by", self.name),))
            for i in range(int(req.rstrip(b"!"))):
                yield b"m%d" % i
            if req.endswith(b"!"):
                ctx.abort(grpc.StatusCode.INTERNAL, "broke after the messages")

        def client_stream(reqs: Iterator[bytes], ctx: grpc.ServicerContext) -> bytes:
            count("ClientStream")
            return b"".join(reqs)

        def bidi(reqs: Iterator[bytes], ctx: grpc.ServicerContext) -> Iterator[bytes]:
            count("Bidi")
            yield from reqs

        handler = grpc.method_handlers_generic_handler(
            "test.Echo",
            {
                "Unary": grpc.unary_unary_rpc_method_handler(unary),
                "NotFound": grpc.unary_unary_rpc_method_handler(not_found),
                "Flaky": grpc.unary_unary_rpc_method_handler(flaky),
                "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
                "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
                "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
            },
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=None)
