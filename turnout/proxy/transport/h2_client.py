"""`H2Pool`: multiplexed HTTP/2 connections to upstream endpoints (h2c prior knowledge, or
mesh TLS), behind the same callback seam as `client.UpstreamPool.send`.

```
send(endpoint, headers, body, receiver) ─► an H2Stream (the exchange's UpstreamHandle)
   conns[key]: the first connection with a free stream (peer's MAX_CONCURRENT_STREAMS, at
   most max_streams) ─► HEADERS (+ DATA within the flow-control window, END_STREAM)
   └─ every one full, draining or none ─► a new connection (connect timeout); streams wait
      on it meanwhile (queued), and start when it is made
frames in ─► ResponseReceived: receiver.on_head · DataReceived: on_body (acknowledged at once,
   or when the receiver resumes: a paused stream holds its own window, never the socket)
   · TrailersReceived: on_trailers · StreamEnded: on_end · StreamReset / connection lost:
   on_error (REFUSED_STREAM, or above a GOAWAY's last_stream_id: not processed, sent once
   more on another connection when the body is bytes)
GOAWAY ─► draining: no new stream; closed when its last stream ends · idle connections
   (no stream) are closed by one sweep timer after idle_timeout_ms · a stream without a
   deadline whose upstream is silent for read_timeout_ms: UpstreamReadTimeout (one read
   sweep per pool, every read_timeout_ms / 4, while any such stream is open)
```

What one connection does with its streams (frames, flow control, events) is
`h2_upstream.H2ClientConnection`'s. A request body that is an iterator (streamed, D7 of docs/plan-http2.md) is relayed by one
task per stream, chunk by chunk, never more than `PUMP_HIGH_WATER` bytes ahead of the
upstream's window. Response data is handed on as it comes; when the receiver says stop
(`pause_reading`), that stream's bytes are not acknowledged, so the upstream stops on that
stream's window (`H2_STREAM_WINDOW`) while every other stream goes on; the connection
window (`H2_CONNECTION_WINDOW`) is raised at the start so a few paused streams cannot starve
the rest. No callback is made from inside `send()`.

Not here: choosing HTTP/2 (`call.Call`), request head building (`heads.h2_request_headers`),
retries other than of a stream the upstream did not process, server push (refused in our
SETTINGS), the downstream server (`h2_server`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator

from turnout.proxy import config
from turnout.proxy.errors import (
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamTlsError,
)
from turnout.proxy.transport.h2_upstream import (
    MAX_STREAMS,
    H2ClientConnection,
    H2Stream,
    PoolKey,
)
from turnout.proxy.transport.messages import (
    Address,
    ConnectionHooks,
    MeshTls,
    RawPairs,
    ResponseReceiver,
)

log = logging.getLogger(__name__)


class UpstreamRefused(UpstreamConnectError):
    """The upstream did not process the stream (REFUSED_STREAM, or above a GOAWAY's
    last_stream_id) and it could not be sent again: safe to retry, as a connect error."""


class H2Pool:
    """HTTP/2 connections per upstream key, each multiplexing up to `max_streams` streams;
    connections without a stream for `idle_timeout_ms` are closed. `hooks` sees every
    connection opened and closed; `close()` closes all of them."""

    def __init__(
        self,
        *,
        connect_timeout_ms: int = config.DEFAULT_CONNECT_TIMEOUT_MS,
        idle_timeout_ms: int = config.DEFAULT_POOL_IDLE_TIMEOUT_MS,
        read_timeout_ms: int | None = config.DEFAULT_UPSTREAM_READ_TIMEOUT_MS,
        max_streams: int = MAX_STREAMS,
        hooks: ConnectionHooks | None = None,
        mesh: MeshTls | None = None,
    ) -> None:
        self.connect_timeout_ms = connect_timeout_ms
        self.idle_timeout_ms = idle_timeout_ms
        self.read_timeout_ms = read_timeout_ms
        """Longest silence of the upstream on a stream without a deadline (None: none), as
        `UpstreamPool.read_timeout_ms`; a stream paused by its receiver is not silent."""
        self.max_streams = max_streams
        self.hooks = hooks
        self.mesh = mesh
        self._conns: dict[PoolKey, list[H2ClientConnection]] = {}
        self._all: set[H2ClientConnection] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._watched: set[H2Stream] = set()
        """Streams without a deadline, for the read sweep (done ones leave at its next pass)."""
        self._read_sweeper: asyncio.TimerHandle | None = None

    def connection_count(self, endpoint: Address, identity: str | None = None) -> int:
        """Connections open or opening to `endpoint` and taking streams."""
        key = endpoint if identity is None else (*endpoint, identity)
        return len(self._conns.get(key, ()))

    @property
    def open_count(self) -> int:
        return len(self._all)

    def send(
        self,
        endpoint: Address,
        *,
        method: str,
        headers: RawPairs,
        body: bytes | AsyncIterator[bytes],
        timeout_ms: int | None,
        receiver: ResponseReceiver,
        identity: str | None = None,
    ) -> H2Stream:
        """Send one request (`heads.h2_request_headers` made `headers`); the response goes to
        `receiver` (plus `on_trailers(pairs)` when it has one), never before this returns.
        `timeout_ms` bounds the whole exchange (None: no deadline). `method` is in the
        headers already; it is taken for the seam's shape (`UpstreamPool.send`)."""
        loop = asyncio.get_running_loop()
        key: PoolKey = endpoint
        if identity is not None and self.mesh is not None:
            key = (endpoint[0], endpoint[1], identity)
        deadline = None if timeout_ms is None else loop.time() + timeout_ms / 1000
        stream = H2Stream(key, endpoint, headers, body, receiver, deadline)
        if deadline is not None:
            stream.timer = loop.call_at(deadline, stream.expire)
        elif self.read_timeout_ms is not None:
            self._watched.add(stream)
            if self._read_sweeper is None:
                self._schedule_read_sweep(loop, self.read_timeout_ms)
        self._dispatch(stream)
        return stream

    def _dispatch(self, stream: H2Stream) -> None:
        conns = self._conns.get(stream.key)
        if conns is None:
            conns = self._conns[stream.key] = []
        for conn in conns:
            if conn.free > 0:
                conn.submit(stream)
                return
        conn = H2ClientConnection(self, stream.key, stream.endpoint)
        conns.append(conn)
        self._all.add(conn)
        conn.submit(stream)
        task = conn.loop.create_task(self._connect(conn))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    def resend(self, stream: H2Stream, old: H2ClientConnection, why: str) -> None:
        """A stream the upstream did not process: once more on another connection when its
        body can be sent again (bytes), else `UpstreamRefused`."""
        if stream.resent or not isinstance(stream.body, bytes) or stream.done:
            stream.fail(UpstreamRefused(stream.endpoint, why))
            return
        stream.resent = True
        stream.sid = 0
        stream.conn = None
        stream.out, stream.out_end, stream.ended_local = b"", False, False
        if old.free <= 0:
            self._retire(old)
        self._dispatch(stream)

    async def _connect(self, conn: H2ClientConnection) -> None:
        endpoint = conn.endpoint
        host, port = endpoint
        identity = conn.key[2] if len(conn.key) == 3 else None
        loop = conn.loop
        try:
            ctx = self._tls_context(endpoint, identity)
            async with asyncio.timeout(self.connect_timeout_ms / 1000):
                if ctx is None:
                    await loop.create_connection(lambda: conn, host, port)
                else:
                    await loop.create_connection(
                        lambda: conn, host, port, ssl=ctx, server_hostname=identity
                    )
        except asyncio.CancelledError:
            self._connect_failed(conn, UpstreamConnectError(endpoint, "pool closed"))
            raise
        except UpstreamError as exc:
            self._connect_failed(conn, exc)
        except ssl.SSLError as exc:
            err: UpstreamError = UpstreamTlsError(
                endpoint, f"tls to {identity} failed: {exc.reason or exc}"
            )
            err.__cause__ = exc
            self._connect_failed(conn, err)
        except TimeoutError as exc:
            err = UpstreamConnectTimeout(
                endpoint, f"connect timed out after {self.connect_timeout_ms} ms"
            )
            err.__cause__ = exc
            self._connect_failed(conn, err)
        except OSError as exc:
            err = UpstreamConnectError(endpoint, f"connect failed: {exc}")
            err.__cause__ = exc
            self._connect_failed(conn, err)

    def _connect_failed(self, conn: H2ClientConnection, error: UpstreamError) -> None:
        conn.closed = True
        self._forget(conn)
        queued, conn.queued = conn.queued, []
        for stream in queued:
            stream.fail(error)
        if not conn.closed_waiter.done():
            conn.closed_waiter.set_result(None)

    def _tls_context(self, endpoint: Address, identity: str | None) -> ssl.SSLContext | None:
        if identity is None or self.mesh is None:
            return None
        # ALPN h2 (`IdentityState.h2_client_context`): the inbound proxy serves it per
        # request; a MeshTls without one offers http/1.1 and the preface is relayed as bytes
        ctx: ssl.SSLContext | None = getattr(self.mesh, "h2_client_context", None)
        if ctx is None:
            ctx = self.mesh.client_context
        if ctx is None:
            raise UpstreamTlsError(endpoint, f"tls to {identity}: no identity certificate yet")
        return ctx

    def _retire(self, conn: H2ClientConnection) -> None:
        """No new stream goes to `conn` (GOAWAY)."""
        conns = self._conns.get(conn.key)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._conns[conn.key]

    def _forget(self, conn: H2ClientConnection) -> None:
        self._all.discard(conn)
        self._retire(conn)

    def _went_idle(self, conn: H2ClientConnection) -> None:
        if self._sweeper is None:
            self._schedule_sweep(conn.loop)

    def _schedule_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweeper = loop.call_later(self.idle_timeout_ms / 2000, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close connections without a stream for `idle_timeout_ms` or more."""
        self._sweeper = None
        cutoff = loop.time() - self.idle_timeout_ms / 1000
        waiting = False
        for conn in list(self._all):
            if conn.streams or conn.queued or conn.transport is None:
                continue
            if conn.idle_since <= cutoff:
                self._retire(conn)
                conn.close()
            else:
                waiting = True
        if waiting:
            self._schedule_sweep(loop)

    def _schedule_read_sweep(self, loop: asyncio.AbstractEventLoop, timeout_ms: int) -> None:
        # as the HTTP/1.1 pool: 4 quiet sweeps in a row, a silence cut at 1-1.25x the timeout
        self._read_sweeper = loop.call_later(timeout_ms / 4000, self._read_sweep, loop)

    def _read_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the streams without a deadline whose upstream sent nothing for
        `read_timeout_ms` (no `progress` over 4 sweeps); again while any is open."""
        self._read_sweeper = None
        timeout_ms = self.read_timeout_ms
        watched = self._watched
        if timeout_ms is None:
            watched.clear()
            return
        for stream in list(watched):
            if stream.done:
                watched.discard(stream)
            elif stream.paused or stream.progress != stream.swept:
                stream.swept, stream.quiet = stream.progress, 0
            elif stream.quiet >= 3:
                watched.discard(stream)
                stream.read_expired(timeout_ms)
            else:
                stream.quiet += 1
        if watched:
            self._schedule_read_sweep(loop, timeout_ms)

    async def close(self) -> None:
        """Close every connection and wait until they are closed."""
        for timer in (self._sweeper, self._read_sweeper):
            if timer is not None:
                timer.cancel()
        self._sweeper = self._read_sweeper = None
        self._watched.clear()
        for task in list(self._connecting):
            task.cancel()
        conns = list(self._all)
        for conn in conns:
            if conn.transport is not None:
                conn.transport.abort()
        for conn in conns:
            if conn.transport is not None:
                await conn.closed_waiter
