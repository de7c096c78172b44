"""`serve_detecting`: one inbound port for mesh TLS and plaintext (PERMISSIVE), told apart
by peeking at each connection's first bytes.

```
listening socket ─ loop.sock_accept ─► socket ─ readable (add_reader) ─ recv(6, MSG_PEEK)
   ├─ 16 03 0x .. .. 01 (a TLS record holding a ClientHello), its SNI peeked too:
   │   ├─ no SNI, or this proxy's identity ─► connect_accepted_socket(HttpServerProtocol,
   │   │      ssl=mesh.server_context)   the handshake, then HTTP/1.1; the connection
   │   │      reads its client's identity (`MeshTls.peer_identity`)
   │   └─ another name (the app's own TLS) ─► forwarded untouched to the app, as an opaque
   │          port's bytes (tls="opaque",sni=NAME; STRICT: refused)
   ├─ anything else, or nothing within detect_timeout_ms ─► connect_accepted_socket(
   │      HttpServerProtocol) plaintext, as an unmeshed client sends
   └─ end of stream before a byte ─► closed
```

Why not `create_server` plus `start_tls`: uvloop 0.23 hands the ClientHello to the old
protocol when `loop.start_tls` is called on the server side after `connection_made`
(SECURITY-REFERENCE §5.2-5.3), and nothing already read can be replayed into the TLS
layer. Peeking leaves the bytes in the kernel, and the context is chosen per accepted
socket, so a renewed certificate or a new trust bundle is used by the next handshake.
Works the same on asyncio's loop and on uvloop (tests/proxy/transport/test_detect.py).

The rule is Linkerd's first bytes (§1.6) with its SNI step: mesh clients send the server's
identity as SNI (`transport/client.py`), so a ClientHello naming anything else is the app's
own TLS, passed through. The timeout is Linkerd's default, 10 s: a server-first protocol
waits that long, then plaintext.

``--transparent`` (`place`): before detection, each accepted socket's original destination
is read (`original_dst.py`) and `place` says what the connection is: HTTP with that
destination (and, inbound, the app port's gate and address), bytes forwarded untouched to
an address (outbound: a destination the table does not know), bytes forwarded to an
endpoint an `Upstream` chooses (outbound, a known destination: at once when opaque, else
when `first_bytes` are neither an HTTP/1 request line nor, with `http2`, the HTTP/2
preface (served as HTTP/2 per request: routes, gRPC): TLS, anything else, or silence for
the detect timeout), or refused (None: reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from turnout.proxy.config import DEFAULT_CONNECT_TIMEOUT_MS
from turnout.proxy.transport.downstream import Http2Takeover, Listener
from turnout.proxy.transport.first_bytes import (
    FIRST_BYTES,
    MAX_RECORD,
    Detected,
    client_hello_sni,
    first_bytes,
    is_client_hello,
)
from turnout.proxy.transport.mesh_tcp import ForwardTo, MeshSplit, forward_tls
from turnout.proxy.transport.messages import (
    Accept,
    ConnectionHooks,
    ConnectionInfo,
    Handler,
    Limits,
    MeshTls,
    PortGate,
    TlsStatus,
    hook_close,
    hook_open,
)
from turnout.proxy.transport.original_dst import original_dst
from turnout.proxy.transport.server import HttpServerProtocol

log = logging.getLogger(__name__)

DETECT_TIMEOUT_MS = 10_000
_PARTIAL_WAIT_S = 0.005

Kind = Literal["tls", "plain", "foreign"]
"""``foreign``: a ClientHello whose SNI is not this proxy's identity (the app's own TLS)."""
OPAQUE_PLAINTEXT: TlsStatus = ("no_identity", "no_tls_reason", "no_tls_from_remote")
"""An opaque port's connection as the metrics label it: forwarded, not terminated."""


@dataclass(frozen=True, slots=True)
class Placement:
    """What a transparent listener does with one accepted connection (`Place`)."""

    original_dst: tuple[str, int] | None
    """Where the client connected (None: to this listener itself, not redirected)."""
    gate: PortGate | None = None
    """Inbound: the app port's policy (None: none)."""
    app: tuple[str, int] | None = None
    """Inbound: the app the connection's requests (or opaque bytes) go to."""
    forward: tuple[str, int] | None = None
    """Forward the bytes untouched to this address: no detection, no HTTP."""
    upstream: Upstream | None = None
    """Outbound, a known destination: where its bytes go when they are forwarded (an
    endpoint its balancer chooses): at once, or after `detect` found no HTTP/1."""
    detect: bool = False
    """Outbound: peek at the first bytes (`first_bytes`); HTTP/1 is served as HTTP."""


class Upstream(Protocol):
    """A known destination's endpoints, for its TCP-forwarded connections (one per
    connection: `transparent.BalancedUpstream`)."""

    destination: tuple[str, str]
    """The Service's namespace and name, for the metrics ("" for an endpoint)."""

    def acquire(self) -> ForwardTo | None:
        """The endpoint to connect to (over mesh TLS when it has an identity); None: none,
        or refused (the client is reset)."""

    def release(self, connect_ms: float, *, failed: bool) -> None:
        """The connect to the acquired endpoint took `connect_ms` (`failed`: it failed)."""


Place = Callable[[tuple[str, int] | None], Placement | None]
"""The original destination (None: not redirected) -> its placement; None: refused."""


class DetectingServer:
    """What `serve_detecting` returns: `sockets`, `close()`, `wait_closed()`, as an
    `asyncio.Server` has them. Closing stops accepting (and detecting); open connections
    end on their own."""

    def __init__(
        self,
        sock: socket.socket,
        listener: Listener,
        mesh: MeshTls | None,
        detect_timeout_ms: int,
        gate: PortGate | None = None,
        app: tuple[str, int] | None = None,
        place: Place | None = None,
    ) -> None:
        self._sock = sock
        self._place = place
        self._listener = listener
        self._mesh = mesh
        self._gate = gate
        self._app = app
        self._timeout_s = detect_timeout_ms / 1000
        self._loop = asyncio.get_running_loop()
        self._pending: set[asyncio.Task[None]] = set()
        self._acceptor = self._loop.create_task(self._accept_loop(), name="inbound accept")

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._sock.fileno() < 0 else (self._sock,)

    def close(self) -> None:
        self._acceptor.cancel()
        for task in list(self._pending):
            task.cancel()
        if self._sock.fileno() >= 0:
            self._sock.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._acceptor
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def _factory(self) -> HttpServerProtocol:
        return HttpServerProtocol(self._listener)

    async def _accept_loop(self) -> None:
        loop = self._loop
        while True:
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError as exc:  # EMFILE and the like: wait, then accept again
                log.warning("inbound accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(self._serve(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _serve(self, conn: socket.socket) -> None:
        gate, app, dst = self._gate, self._app, None
        if self._place is not None:
            dst = original_dst(conn)
            placed = self._place(dst)
            if placed is None:
                log.debug("connection refused original_dst=%s peer=%s", dst, _peer(conn))
                _reset(conn)
                return
            if placed.forward is not None:
                info = _info(conn)
                info.original_dst = dst
                await self._forward(conn, info, placed.forward)
                return
            if placed.upstream is not None:
                http1 = await self._http1(conn) if placed.detect else False
                if http1 is None:
                    conn.close()  # closed before a byte
                    return
                if not http1:
                    await self._forward_upstream(conn, dst, placed.upstream)
                    return
            gate, app = placed.gate, placed.app
        mode = "PERMISSIVE" if gate is None else gate.mode
        opaque = gate is not None and gate.opaque and app is not None
        if opaque and (self._mesh is None or mode == "DISABLE"):
            assert gate is not None and app is not None
            await self._opaque(conn, gate, app)
            return
        try:
            if self._mesh is None or mode == "DISABLE":
                kind: Kind | None = "plain"
            else:
                kind = await self._sniff(conn)
        except asyncio.CancelledError:
            conn.close()
            raise
        except OSError as exc:  # reset while peeking
            log.debug("inbound connection failed before detection: %s", exc)
            conn.close()
            return
        if kind is None:
            conn.close()
            return
        if kind == "foreign":
            if app is not None:
                await self._foreign_tls(conn, gate, app)
                return
            kind = "tls"  # no app to pass it to: terminated, as before SNI was read
        if kind != "tls" and mode == "STRICT" and gate is not None:
            gate.plaintext_refused(_info(conn))
            log.debug("plaintext connection refused (STRICT) peer=%s", _peer(conn))
            _reset(conn)
            return
        if kind != "tls" and opaque:
            assert gate is not None and app is not None
            await self._opaque(conn, gate, app)
            return
        ctx = None
        if kind == "tls":
            assert self._mesh is not None
            ctx = self._mesh.server_context
            if ctx is None:
                log.debug("tls connection closed: no identity certificate yet")
                conn.close()
                return
        timeout = None if ctx is None else self._listener.limits.header_timeout_ms / 1000
        factory: Callable[[], asyncio.Protocol] = self._factory
        if dst is not None:
            listener = self._listener

            def factory() -> HttpServerProtocol:
                return HttpServerProtocol(listener, dst)

        if ctx is not None and app is not None:
            factory = self._split(factory, gate, app, dst, opaque)
        try:
            await self._loop.connect_accepted_socket(
                factory, conn, ssl=ctx, ssl_handshake_timeout=timeout
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            log.debug("inbound %s connection failed: %s", kind, exc)
            conn.close()

    def _split(
        self,
        http: Callable[[], asyncio.Protocol],
        gate: PortGate | None,
        app: tuple[str, int],
        dst: tuple[str, int] | None,
        opaque: bool,
    ) -> Callable[[], asyncio.Protocol]:
        """Mesh TLS with an app behind: HTTP/1 inside is served, anything else (or an
        opaque port's bytes) forwarded to the app as TCP (`mesh_tcp.MeshSplit`)."""
        mesh = self._mesh
        assert mesh is not None

        def split() -> asyncio.Protocol:
            return MeshSplit(
                mesh=mesh,
                gate=gate,
                app=app,
                opaque=opaque,
                timeout_s=self._timeout_s,
                http=http,
                hooks=self._listener.hooks,
                original_dst=dst,
                tasks=self._pending,
            )

        return split

    async def _foreign_tls(
        self, conn: socket.socket, gate: PortGate | None, app: tuple[str, int]
    ) -> None:
        """The app's own TLS (another SNI): forwarded to the app untouched, as an opaque
        port's bytes are, labelled ``tls="opaque",sni=NAME`` (STRICT refuses it: no mesh
        identity)."""
        try:
            sni = client_hello_sni(conn.recv(MAX_RECORD, socket.MSG_PEEK)) or ""
        except OSError:
            sni = ""
        status: TlsStatus = ("opaque", "sni", sni)
        if gate is None:
            info = _info(conn)
            info.tls_status = status
            await self._forward(conn, info, app)
        elif gate.mode == "STRICT":
            gate.plaintext_refused(_info(conn))
            log.debug("tls of another server name refused (STRICT) peer=%s", _peer(conn))
            _reset(conn)
        else:
            await self._opaque(conn, gate, app, status)

    async def _opaque(
        self,
        conn: socket.socket,
        gate: PortGate,
        app: tuple[str, int],
        status: TlsStatus = OPAQUE_PLAINTEXT,
    ) -> None:
        """An opaque port: authorize the connection, then copy bytes both ways, at once (a
        server-first protocol's greeting is not held back by detection)."""
        info = _info(conn)
        info.tls_status = status
        if not gate.connection_allowed(info):
            log.debug("opaque connection refused by policy peer=%s", info.peer)
            _reset(conn)
            return
        await self._forward(conn, info, app)

    async def _http1(self, conn: socket.socket) -> bool | None:
        """Outbound detection: the first bytes are an HTTP/1 request line, or the HTTP/2
        preface when the listener serves HTTP/2 (`Listener.http2`): served as HTTP. Anything
        else (TLS, another protocol, silence for the detect timeout) is not; None: the
        client closed before a byte."""
        try:
            found = await self._first_bytes(conn)
        except asyncio.CancelledError:
            conn.close()
            raise
        except OSError as exc:  # reset while peeking
            log.debug("outbound connection failed before detection: %s", exc)
            found = "other"
        log.debug("outbound protocol detected protocol=%s peer=%s", found, _peer(conn))
        if found is None:
            return None
        return found == "http1" or (found == "h2" and self._listener.http2 is not None)

    async def _first_bytes(self, conn: socket.socket) -> Detected | None:
        deadline = self._loop.time() + self._timeout_s
        while True:
            remaining = deadline - self._loop.time()
            if remaining <= 0 or not await self._readable(conn, remaining):
                return "other"  # a silent client (server-first): forwarded
            try:
                head = conn.recv(FIRST_BYTES, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            if not head:
                return None  # closed before a byte
            found = first_bytes(head)
            if found is not None:
                return found
            await asyncio.sleep(_PARTIAL_WAIT_S)  # a request line in pieces: the rest

    async def _forward_upstream(
        self, conn: socket.socket, dst: tuple[str, int] | None, upstream: Upstream
    ) -> None:
        """Forward to an endpoint `upstream` chooses (over mesh TLS when it has an
        identity: `mesh_tcp.forward_tls`), labelled with its destination."""
        target = upstream.acquire()
        if target is None:
            log.debug("tcp forward refused: no endpoint original_dst=%s", dst)
            _reset(conn)
            return
        info = _info(conn)
        info.original_dst = dst
        info.destination = upstream.destination
        if target.status is not None:
            info.tls_status = target.status
        if target.tls is None:
            await self._forward(conn, info, target.address, upstream)
            return
        started = self._loop.time()

        def connected(failed: bool) -> None:
            upstream.release((self._loop.time() - started) * 1000, failed=failed)

        await forward_tls(self._loop, conn, info, target, self._listener.hooks, connected)

    async def _forward(
        self,
        conn: socket.socket,
        info: ConnectionInfo,
        target: tuple[str, int],
        chosen: Upstream | None = None,
    ) -> None:
        """Connect to `target`, then copy bytes both ways until both ends are done (a
        failed connect resets the client, as Linkerd does); `chosen`: told how the connect
        went (the balancer's load and backoff)."""
        hooks = self._listener.hooks
        loop = self._loop
        upstream = socket.socket(_family(target[0]), socket.SOCK_STREAM)
        upstream.setblocking(False)
        started = loop.time()
        try:
            async with asyncio.timeout(DEFAULT_CONNECT_TIMEOUT_MS / 1000):
                await loop.sock_connect(upstream, target)
        except (OSError, TimeoutError) as exc:
            log.debug("tcp forward to %s:%d failed: %s", *target, exc)
            upstream.close()
            _reset(conn)
            if chosen is not None:
                chosen.release((loop.time() - started) * 1000, failed=True)
            return
        if chosen is not None:
            chosen.release((loop.time() - started) * 1000, failed=False)
        hook_open(hooks, info)
        try:
            read, written = await asyncio.gather(
                _pump(loop, conn, upstream), _pump(loop, upstream, conn)
            )
            info.bytes_read, info.bytes_written = read, written
        finally:
            upstream.close()
            conn.close()
            hook_close(hooks, info, None)

    async def _sniff(self, conn: socket.socket) -> Kind | None:
        """TLS, plaintext, or None: the client closed before sending a byte."""
        deadline = self._loop.time() + self._timeout_s
        while True:
            remaining = deadline - self._loop.time()
            if remaining <= 0 or not await self._readable(conn, remaining):
                return "plain"  # silent client (server-first protocol): plaintext
            try:
                head = conn.recv(6, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            if not head:
                return None
            if head[0] != 0x16:
                return "plain"
            if len(head) >= 6:
                return (
                    await self._tls_kind(conn, head, deadline) if is_client_hello(head) else "plain"
                )
            await asyncio.sleep(_PARTIAL_WAIT_S)  # a record header in pieces: the rest

    async def _tls_kind(self, conn: socket.socket, head: bytes, deadline: float) -> Kind:
        """Mesh TLS (``tls``), unless the ClientHello names a server other than this proxy's
        identity: the app's own TLS (``foreign``), passed through as Linkerd does."""
        want = min(MAX_RECORD, 5 + int.from_bytes(head[3:5]))
        record = conn.recv(want, socket.MSG_PEEK)  # readable: `head` is there
        while 0 < len(record) < want and self._loop.time() < deadline:
            await asyncio.sleep(_PARTIAL_WAIT_S)  # the rest of the first record
            with contextlib.suppress(BlockingIOError):
                record = conn.recv(want, socket.MSG_PEEK)
        sni = client_hello_sni(record)
        mine = self._mesh.identity if self._mesh is not None else None
        return "foreign" if sni is not None and mine and sni != mine else "tls"

    async def _readable(self, conn: socket.socket, timeout_s: float) -> bool:
        fut: asyncio.Future[None] = self._loop.create_future()
        fd = conn.fileno()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        self._loop.add_reader(fd, ready)
        try:
            async with asyncio.timeout(timeout_s):
                await fut
            return True
        except TimeoutError:
            return False
        finally:
            self._loop.remove_reader(fd)


async def serve_detecting(
    handler: Handler,
    *,
    host: str,
    port: int,
    mesh: MeshTls | None,
    limits: Limits | None = None,
    hooks: ConnectionHooks | None = None,
    accept: Accept | None = None,
    backlog: int = 1024,
    reuse_port: bool = False,
    detect_timeout_ms: int = DETECT_TIMEOUT_MS,
    gate: PortGate | None = None,
    app: tuple[str, int] | None = None,
    place: Place | None = None,
    http2: Http2Takeover | None = None,
) -> DetectingServer:
    """Listen on `host:port` (0: any free port) and serve HTTP/1.1 over mesh TLS or
    plaintext, each connection as its first bytes say (see the module docstring); `http2`
    serves plaintext connections opening with the HTTP/2 preface (`serve_http`'s)."""
    limits = limits or Limits()
    listener = Listener(handler, limits, hooks, accept, mesh=mesh, http2=http2)
    sock = socket.create_server(
        (host, port), backlog=backlog, reuse_port=reuse_port, family=_family(host)
    )
    sock.setblocking(False)
    server = DetectingServer(sock, listener, mesh, detect_timeout_ms, gate, app, place)
    log.info("listening host=%s port=%d tls=detect", host, sock.getsockname()[1])
    return server


async def _pump(loop: asyncio.AbstractEventLoop, src: socket.socket, dst: socket.socket) -> int:
    """Copy `src` to `dst` until `src` ends, then half-close `dst`; the bytes copied."""
    total = 0
    try:
        while data := await loop.sock_recv(src, 65536):
            await loop.sock_sendall(dst, data)
            total += len(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)
    return total


def _peer(conn: socket.socket) -> tuple[str, int]:
    try:
        peer = conn.getpeername()
        return (peer[0], peer[1])
    except OSError:
        return ("", 0)


def _info(conn: socket.socket) -> ConnectionInfo:
    local = conn.getsockname()
    return ConnectionInfo("inbound", _peer(conn), (local[0], local[1]))


def _reset(conn: socket.socket) -> None:
    """Close with a RST (SO_LINGER 0), as Linkerd refuses a connection."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
