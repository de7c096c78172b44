"""Tries counted by a backend that resets every connection after reading the request: the
backend's own count is what the route's retry policy allows (GEP-1731: `attempts` is the
number of retries after the first try), with no extra silent resend by the pool."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded

ROUTES = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - name: retried
    matches: [{path: {type: PathPrefix, value: /retried}}]
    retry: {codes: [503], attempts: 3, backoff: 10ms}
    backendRefs: [{name: resets, port: 80}]
  - name: plain
    backendRefs: [{name: resets, port: 80}]
"""


@asynccontextmanager
async def resetting_backend() -> AsyncIterator[tuple[int, list[int]]]:
    """A raw TCP backend on 127.0.0.1: answers `/warm` with a keep-alive 200 (so that the
    proxy's pool holds a reused connection), reads any other request head, counts it, then
    closes with SO_LINGER 0 (a RST). Yields its port and the count."""
    seen = [0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if b" /warm" not in head.split(b"\r\n", 1)[0]:
                    seen[0] += 1
                    break
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()


@bounded(15)
async def test_a_backend_that_resets_sees_the_first_try_plus_attempts_retries(lab: Lab) -> None:
    async with resetting_backend() as (port, seen):
        mesh = await lab.mesh({"web": [], "resets": [port]}, ROUTES)
        assert (await mesh.get("web", "/warm"))[0] == 200  # a pooled connection to reuse
        status, _, _ = await mesh.get("web", "/retried/x")
        assert status in (502, 503)
        assert seen[0] == 4  # the first try and `attempts: 3` retries, no more


@bounded(15)
async def test_without_retry_a_backend_that_resets_sees_one_try(lab: Lab) -> None:
    async with resetting_backend() as (port, seen):
        mesh = await lab.mesh({"web": [], "resets": [port]}, ROUTES)
        for n in range(3):
            assert (await mesh.get("web", "/warm"))[0] == 200  # a pooled connection to reuse
            status, _, _ = await mesh.get("web", f"/plain/{n}")
            assert status in (502, 503)
            assert seen[0] == n + 1
