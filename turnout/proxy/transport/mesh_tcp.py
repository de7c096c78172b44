"""Forwarded TCP over mesh TLS, both ends (`detect.py` calls these).

```
outbound  TCP to an endpoint with an identity (`ForwardTo.tls`): connect, mTLS handshake
          (the proxy's client context, server_hostname = the identity: the server's
          certificate must chain to the bundle and name it), then relay ─ before any client
          byte is read, so a server-first greeting comes through; a handshake that fails
          resets the client (counted: tcp_close_total errno="EPROTO", tls="true",server_id)
inbound   mesh TLS terminated (`MeshSplit` is the TLS protocol until it decides):
             opaque port ─► TCP at once
             else the decrypted first bytes (up to the detect timeout):
                 an HTTP/1 request line ─► handed to HTTP (`HttpServerProtocol`)
                 the HTTP/2 preface after ALPN h2 ─► HTTP too (its HTTP/2 takeover)
                 anything else, silence ─► TCP (the preface without ALPN h2 too, as
                 before: gRPC between pods relayed as bytes)
          TCP: the port's connection authorization by the client's identity
          (`PortGate.connection_allowed`; denied: reset, inbound_tcp_authz_deny_total), then
          a connection to the app and a relay (tcp_* with tls="true",client_id)
```

Half-close over TLS is not carried: an end of stream on one side closes the TLS end once
what was written is flushed (`relay.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from turnout.proxy.config import DEFAULT_CONNECT_TIMEOUT_MS
from turnout.proxy.transport.first_bytes import FIRST_BYTES, first_bytes
from turnout.proxy.transport.messages import (
    ConnectionHooks,
    ConnectionInfo,
    MeshTls,
    PortGate,
    TlsStatus,
    client_tls,
    hook_close,
    hook_open,
)
from turnout.proxy.transport.relay import Relay, reset

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ForwardTo:
    """Where one forwarded connection goes (`detect.Upstream.acquire`)."""

    address: tuple[str, int]
    tls: ssl.SSLContext | None = None
    """Mesh TLS with this client context (None: plaintext)."""
    server_id: str = ""
    """With `tls`: the identity the server's certificate must name (SNI too)."""
    status: TlsStatus | None = None
    """The metrics' TLS labels of the connection (None: left as they are)."""


class TlsHandshakeFailed(OSError):
    """Mesh TLS to a forwarded connection's endpoint failed (``errno`` EPROTO)."""


async def forward_tls(
    loop: asyncio.AbstractEventLoop,
    conn: socket.socket,
    info: ConnectionInfo,
    target: ForwardTo,
    hooks: ConnectionHooks | None,
    connected: Callable[[bool], None],
) -> None:
    """Relay `conn` to `target` over mesh TLS (`connected(failed)` once the connect and
    handshake are over). A failed connect or handshake resets `conn`; a failed handshake
    is counted as a connection closed with EPROTO."""
    assert target.tls is not None
    relay = Relay(loop)
    upstream = socket.socket(_family(target.address[0]), socket.SOCK_STREAM)
    upstream.setblocking(False)
    handshake = False
    try:
        async with asyncio.timeout(DEFAULT_CONNECT_TIMEOUT_MS / 1000):
            await loop.sock_connect(upstream, target.address)
            handshake = True
            await loop.create_connection(
                lambda: relay.upstream,
                sock=upstream,
                ssl=target.tls,
                server_hostname=target.server_id,
                ssl_handshake_timeout=DEFAULT_CONNECT_TIMEOUT_MS / 1000,
            )
    except (OSError, TimeoutError) as exc:
        upstream.close()  # create_connection closed its transport; the socket object too
        connected(True)
        if handshake:  # a certificate not naming `server_id`, a ClientHello reset, a timeout
            _handshake_failed(conn, info, target, hooks, exc)
        else:
            log.debug("tcp forward to %s:%d failed: %s", *target.address, exc)
            _reset_socket(conn)
        return
    except asyncio.CancelledError:
        upstream.close()
        conn.close()
        raise
    connected(False)
    info.tls = True
    hook_open(hooks, info)
    error: Exception | None = None
    try:
        await loop.connect_accepted_socket(lambda: relay.client, conn)
        error = await relay.done
    except OSError as exc:  # the client went away meanwhile
        error = exc
        conn.close()
    finally:
        _close(relay)
        info.bytes_read, info.bytes_written = relay.client.count, relay.upstream.count
        hook_close(hooks, info, error)


def _handshake_failed(
    conn: socket.socket,
    info: ConnectionInfo,
    target: ForwardTo,
    hooks: ConnectionHooks | None,
    exc: OSError,
) -> None:
    """Reset the client and count the connection as closed with EPROTO (opened first, so
    its labels, the server's identity among them, are in tcp_open_total too)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message
    elif isinstance(exc, ssl.SSLError):
        reason = exc.reason
    else:
        reason = repr(exc)
    log.info(
        "tcp forward refused: tls to %s at %s:%d failed: %s",
        target.server_id,
        *target.address,
        reason or exc,
    )
    _reset_socket(conn)
    hook_open(hooks, info)
    hook_close(hooks, info, TlsHandshakeFailed(errno.EPROTO, f"tls to {target.server_id} failed"))


class MeshSplit(asyncio.Protocol):
    """An inbound mesh TLS connection until it is known to be HTTP/1 (handed over to
    `http()`) or TCP (relayed to `app`); see the module docstring."""

    def __init__(
        self,
        *,
        mesh: MeshTls,
        gate: PortGate | None,
        app: tuple[str, int],
        opaque: bool,
        timeout_s: float,
        http: Callable[[], asyncio.Protocol],
        hooks: ConnectionHooks | None,
        original_dst: tuple[str, int] | None,
        tasks: set[asyncio.Task[None]],
    ) -> None:
        self._mesh, self._gate, self._app, self._opaque = mesh, gate, app, opaque
        self._timeout_s, self._http, self._hooks, self._dst = timeout_s, http, hooks, original_dst
        self._buf = b""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._decided = False
        self._tasks = tasks
        self._h2 = False  # the client chose ALPN h2

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        ssl_object = transport.get_extra_info("ssl_object")
        self._h2 = ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2"
        if self._opaque:
            self._tcp()
        else:
            self._timer = asyncio.get_running_loop().call_later(self._timeout_s, self._tcp)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._decided:
            return
        found = first_bytes(self._buf[:FIRST_BYTES])
        if found == "http1" or (found == "h2" and self._h2):
            self._to_http()
        elif found is not None:
            self._tcp()

    def eof_received(self) -> bool:
        if not self._decided:
            self._decided = True
            self._cancel_timer()
            if self._transport is not None:
                self._transport.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._decided = True
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _to_http(self) -> None:
        self._decided = True
        self._cancel_timer()
        transport = self._transport
        assert transport is not None
        proto = self._http()
        transport.set_protocol(proto)
        proto.connection_made(transport)
        if self._buf and not transport.is_closing():
            proto.data_received(self._buf)
        self._buf = b""

    def _tcp(self) -> None:
        """Authorize by the client's identity, then relay to the app."""
        self._decided = True
        self._cancel_timer()
        transport = self._transport
        assert transport is not None
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        info = ConnectionInfo("inbound", (peer[0], peer[1]), (local[0], local[1]))
        info.original_dst = self._dst
        info.tls = True
        info.client_id = self._mesh.peer_identity(transport.get_extra_info("ssl_object"))
        info.tls_status = client_tls(info.client_id)
        if self._gate is not None and not self._gate.connection_allowed(info):
            log.debug("mesh tls tcp connection refused by policy client_id=%s", info.client_id)
            reset(transport)
            return
        relay = Relay(asyncio.get_running_loop())
        transport.set_protocol(relay.client)
        relay.client.connection_made(transport)
        if self._buf:
            relay.client.data_received(self._buf)
            self._buf = b""
        transport.pause_reading()  # until the app is connected
        task = asyncio.get_running_loop().create_task(self._connect(relay, info))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, relay: Relay, info: ConnectionInfo) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(DEFAULT_CONNECT_TIMEOUT_MS / 1000):
                await loop.create_connection(lambda: relay.upstream, *self._app)
        except (OSError, TimeoutError, asyncio.CancelledError) as exc:
            log.debug("tcp forward to app %s:%d failed: %r", *self._app, exc)
            relay.abandon()
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        client = relay.client.transport
        if client is not None and not relay.client.lost:
            client.resume_reading()
        hook_open(self._hooks, info)
        error: Exception | None = None
        try:
            error = await relay.done
        finally:
            _close(relay)
            info.bytes_read, info.bytes_written = relay.client.count, relay.upstream.count
            hook_close(self._hooks, info, error)


def _close(relay: Relay) -> None:
    for end in (relay.client, relay.upstream):
        if end.transport is not None and not end.lost:
            end.transport.close()


def _reset_socket(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
