"""`UpstreamPool`: pooled HTTP/1.1 keep-alive connections to upstream endpoints, per
`(host, port)`, and the two ways to send an exchange on them.

```
send(endpoint, head, body, receiver)            the callback API (the proxy's request path)
   idle[endpoint].pop()  (LIFO: the warmest connection) ─► conn.start(request, receiver)
   └─ none idle ─► a task connects (connect timeout), then starts: `_Connecting` is the
                   handle meanwhile
   response complete + keep-alive ─► _put_idle: idle[endpoint].append(conn) (at most
                   max_idle_per_endpoint, each connection once; one sweep timer closes
                   those idle too long); a closing one is dropped at once (_unpool)
request(...) / upgrade(...)                     the awaitable API: the same exchange through
   `_Awaiting`, a receiver that makes an UpstreamResponse (head future + BodyStream body);
   a 101 hands the connection over as an UpgradedConnection
exchange without a deadline ─► the read sweep (every read_timeout_ms / 4, while any is in
                   flight) fails those silent for read_timeout_ms: UpstreamReadTimeout
exchange with one ─► the deadline sweep (one timer, due at the earliest deadline) fails
                   those past theirs: UpstreamTimeout
```

No callback is ever made from inside `send()`. What one connection does with an exchange
(writing, the deadline, which errors a receiver sees) is `pooled.PooledConnection`'s, and parsing
`upstream.UpstreamConnection`'s; request heads are made with `heads.encode_request_head` / `encode_forward_head`.

Mesh TLS: an exchange sent with `identity=` (the endpoint's expected identity, from
discovery) goes over a connection of its own pool key `(host, port, identity)`, opened with
the proxy's client context (`mesh.client_context`: its leaf presented, the trust bundle the
only CA) and `server_hostname=identity`, so `ssl` refuses a server certificate that does not
chain to the bundle or does not name that identity (`UpstreamTlsError`, no byte sent).
Without `mesh` (the proxy has no identity) the identity is ignored: plaintext, as Linkerd
sends when identity is off.

Deliberately not here: retries, not even of a request a reused connection closed on (the
handler owns retry policy and budgets), load balancing (the handler picks the endpoint), a limit on busy
connections, TLS other than mesh TLS, and HTTP/2 (`h2_client.H2Pool`, the `h2` property).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from turnout.proxy import config
from turnout.proxy.errors import (
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamTlsError,
)
from turnout.proxy.transport.batch import WriteBatch
from turnout.proxy.transport.heads import encode_request_head, request_framing
from turnout.proxy.transport.messages import (
    Address,
    ConnectionHooks,
    Headers,
    MeshTls,
    RawHeaders,
    ResponseReceiver,
    UpstreamHandle,
    UpstreamResponse,
)
from turnout.proxy.transport.pooled import OutgoingRequest, PooledConnection, log_crash
from turnout.proxy.transport.streams import BodyStream
from turnout.proxy.transport.upgraded import UpgradedConnection
from turnout.proxy.transport.upstream import UpstreamConnection

if TYPE_CHECKING:
    from turnout.proxy.transport.h2_client import H2Pool

log = logging.getLogger(__name__)

DEADLINE_GAP_S = 0.001
"""The deadline sweep runs at most this often: deadlines this close together expire in one
pass, each at most this late."""
DEADLINE_GAP_PER_EXCHANGE_S = 0.000_01
"""...and at most once per this much per exchange with a deadline in flight: a sweep walks
them all (about 0.1 us each), so it never takes more than about 1 % of the loop, even with
thousands of exchanges waiting out their deadlines (an upstream that stopped answering);
each is then met later, by up to 20 ms with 2,000 in flight."""

PoolKey = tuple[str, int] | tuple[str, int, str]
"""An idle list's key: the endpoint, plus the expected identity for mesh TLS."""


class _Connecting:
    """The handle of an exchange waiting for a new connection."""

    __slots__ = ("conn", "receiver", "task")

    def __init__(self, receiver: ResponseReceiver) -> None:
        self.receiver = receiver
        self.conn: UpstreamConnection | None = None
        self.task: asyncio.Task[None] | None = None

    def cancel(self, receiver: ResponseReceiver) -> None:
        if self.conn is not None:
            self.conn.cancel(receiver)
        elif self.task is not None:
            self.task.cancel()

    def pause_reading(self) -> None:
        if self.conn is not None:
            self.conn.pause_reading()

    def resume_reading(self) -> None:
        if self.conn is not None:
            self.conn.resume_reading()


class _Awaiting:
    """The receiver behind the awaitable API: the head as a future, the body as a stream."""

    __slots__ = ("conn", "future", "loop", "stream")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[UpstreamResponse] = loop.create_future()
        self.stream: BodyStream | None = None
        self.conn: UpstreamConnection | None = None

    def on_head(
        self,
        conn: UpstreamHandle,
        status: int,
        headers: RawHeaders,
        content_length: int | None,
    ) -> None:
        assert isinstance(conn, UpstreamConnection)
        self.conn = conn
        self.stream = stream = BodyStream(
            self.loop,
            high_water=config.DEFAULT_READ_HIGH_WATER,
            pause=conn.pause_reading,
            resume=conn.resume_reading,
        )
        if not self.future.done():
            self.future.set_result(
                UpstreamResponse(
                    status=status,
                    headers=headers.decode(),
                    version=conn.version,
                    content_length=content_length,
                    stream=stream,
                    release=self.release,
                )
            )

    def on_body(self, chunk: bytes) -> None:
        if self.stream is not None:
            self.stream.feed(chunk)

    def on_end(self) -> None:
        if self.stream is not None:
            self.stream.feed_eof()

    def on_error(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)
        elif self.stream is not None:
            self.stream.fail(error)

    def release(self) -> None:
        stream = self.stream
        if stream is not None:
            stream.discard()
            conn = self.conn
            if not stream.at_eof and conn is not None and not conn.upgraded:
                conn.cancel(self)


class UpstreamPool:
    """Keep-alive HTTP/1.1 connections per upstream `(host, port)`, reused last-in first-out.

    Idle connections are closed after `idle_timeout_ms`; at most `max_idle_per_endpoint` are
    kept per endpoint. A response head over `max_header_bytes` or `max_header_count` (trailers
    over `max_header_bytes`) fails its exchange with `UpstreamProtocolError` and closes the
    connection. An exchange sent without a deadline (`timeout_ms` None) fails with
    `UpstreamReadTimeout` when the upstream is silent for `read_timeout_ms` (None: never);
    one sweep timer per pool checks the connections, not a timer per request, and one more
    expires the exchanges past their deadline (`_watch_deadline`). `hooks` sees every connection opened and closed (`direction` is
    "outbound"). `close()` closes all of them.
    """

    def __init__(
        self,
        *,
        connect_timeout_ms: int = config.DEFAULT_CONNECT_TIMEOUT_MS,
        idle_timeout_ms: int = config.DEFAULT_POOL_IDLE_TIMEOUT_MS,
        max_idle_per_endpoint: int = config.DEFAULT_POOL_MAX_IDLE_PER_ENDPOINT,
        max_header_bytes: int = config.DEFAULT_UPSTREAM_MAX_HEADER_BYTES,
        max_header_count: int = config.DEFAULT_UPSTREAM_MAX_HEADER_COUNT,
        read_timeout_ms: int | None = config.DEFAULT_UPSTREAM_READ_TIMEOUT_MS,
        hooks: ConnectionHooks | None = None,
    ) -> None:
        self.connect_timeout_ms = connect_timeout_ms
        self.idle_timeout_ms = idle_timeout_ms
        self.max_idle_per_endpoint = max_idle_per_endpoint
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count
        self.read_timeout_ms = read_timeout_ms
        self.hooks = hooks
        self.loop: asyncio.AbstractEventLoop | None = None
        self._batch: WriteBatch | None = None
        self._idle: dict[PoolKey, list[PooledConnection]] = {}
        self._all: set[PooledConnection] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._read_sweeper: asyncio.TimerHandle | None = None
        self._timed: set[PooledConnection] = set()
        """Connections whose exchange had a deadline when it started (`_deadline_sweep`
        drops those that no longer have one)."""
        self._deadline_sweeper: asyncio.TimerHandle | None = None
        self._deadline_at = 0.0
        """Loop time `_deadline_sweeper` is due."""
        self.mesh: MeshTls | None = None
        """The proxy's identity (`--identity`): what `identity=` exchanges use for mTLS."""
        self._h2: H2Pool | None = None

    @property
    def h2(self) -> H2Pool:
        """The HTTP/2 pool beside this one (`h2_client.H2Pool`), made at its first use: a
        proxy that never meets an HTTP/2 upstream never loads `h2`."""
        pool = self._h2
        if pool is None:
            from turnout.proxy.transport.h2_client import H2Pool

            pool = self._h2 = H2Pool(
                connect_timeout_ms=self.connect_timeout_ms,
                idle_timeout_ms=self.idle_timeout_ms,
                read_timeout_ms=self.read_timeout_ms,
                hooks=self.hooks,
            )
        pool.mesh = self.mesh
        return pool

    @property
    def batch(self) -> WriteBatch:
        """Request heads of one loop round, sent at its end (`batch.py`)."""
        batch = self._batch
        if batch is None:
            batch = self._batch = WriteBatch(self.loop or asyncio.get_running_loop())
        return batch

    def idle_count(self, endpoint: Address, identity: str | None = None) -> int:
        """Idle connections pooled for `endpoint` (over mesh TLS to `identity`) right now."""
        key = endpoint if identity is None else (*endpoint, identity)
        return len(self._idle.get(key, ()))

    @property
    def open_count(self) -> int:
        """Connections open (idle or busy) across all endpoints."""
        return len(self._all)

    # -- the callback API ------------------------------------------------------------------

    def send(
        self,
        endpoint: Address,
        method: str,
        head: bytes,
        body: bytes | AsyncIterator[bytes],
        timeout_ms: int | None,
        receiver: ResponseReceiver,
        upgrade: bool = False,
        identity: str | None = None,
    ) -> UpstreamHandle:
        """Send one request whose head `encode_request_head` made; the response goes to
        `receiver`, never before this returns. `timeout_ms` bounds the whole exchange, body
        included (None: no deadline). Only an `upgrade` request (its head asks for one) may
        be answered 101; a 101 to any other is an `UpstreamProtocolError`, the connection
        closed. The returned handle gives the exchange up (`cancel(receiver)`) or pauses
        reading its response. `identity`: the endpoint's expected identity, for mesh TLS
        (see the module docstring). Not keyword-only: the request path passes them in order
        (matching seven keywords costs more than half the call)."""
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
        if timeout_ms is None:
            request = OutgoingRequest(head, body, method, None, None, upgrade)
        else:
            request = OutgoingRequest(
                head, body, method, loop.time() + timeout_ms / 1000, timeout_ms / 1000, upgrade
            )
        key: PoolKey = endpoint
        if identity is not None:
            if self.mesh is None:
                identity = None  # no identity of our own: plaintext
            else:
                key = (endpoint[0], endpoint[1], identity)
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            conn.pooled = False
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.start(request, receiver)
                if timeout_ms is None and self._read_sweeper is None:  # `_watch_reads`
                    self._watch_reads(loop)
                return conn
        return self._connect_and_start(endpoint, request, receiver, identity)

    def _connect_and_start(
        self,
        endpoint: Address,
        request: OutgoingRequest,
        receiver: ResponseReceiver,
        identity: str | None,
    ) -> _Connecting:
        pending = _Connecting(receiver)
        loop = self.loop or asyncio.get_running_loop()
        task = loop.create_task(self._start_on_new(endpoint, request, pending, identity))
        pending.task = task
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        task.add_done_callback(log_crash)
        return pending

    async def _start_on_new(
        self,
        endpoint: Address,
        request: OutgoingRequest,
        pending: _Connecting,
        identity: str | None,
    ) -> None:
        receiver = pending.receiver
        try:
            conn = await self._connect(endpoint, identity)
            if request.deadline is not None and request.deadline <= conn.loop.time():
                conn.close()
                raise UpstreamTimeout(endpoint, "deadline expired before the request was sent")
        except UpstreamError as exc:
            receiver.on_error(exc)
            return
        pending.conn = conn
        conn.start(request, receiver)
        if request.deadline is None:
            self._watch_reads(conn.loop)

    # -- the awaitable API -----------------------------------------------------------------

    async def request(
        self,
        endpoint: Address,
        *,
        method: str,
        target: str,
        headers: Headers,
        body: bytes | AsyncIterator[bytes],
        timeout_ms: int | None,
        identity: str | None = None,
    ) -> UpstreamResponse:
        """Send one request and return the response once its head has arrived.

        `timeout_ms` bounds the whole exchange, body included (None: no deadline). Raises
        `UpstreamConnectError`, `UpstreamTimeout` or `UpstreamProtocolError`; an exception
        from an iterator `body` is raised as is.
        """
        response, _ = await self._exchange(
            endpoint, method, target, headers, body, timeout_ms, identity=identity
        )
        return response

    async def upgrade(
        self,
        endpoint: Address,
        *,
        method: str,
        target: str,
        headers: Headers,
        upgrade: str,
        timeout_ms: int | None,
        identity: str | None = None,
    ) -> tuple[UpstreamResponse, UpgradedConnection | None]:
        """Send an upgrade request (`Connection: upgrade`, `Upgrade: <upgrade>`). On a 101
        the connection is handed over as an `UpgradedConnection` (never pooled again) and
        `timeout_ms` stops applying; any other answer is an ordinary response and None."""
        return await self._exchange(
            endpoint, method, target, headers, b"", timeout_ms, upgrade, identity=identity
        )

    async def _exchange(
        self,
        endpoint: Address,
        method: str,
        target: str,
        headers: Headers,
        body: bytes | AsyncIterator[bytes],
        timeout_ms: int | None,
        upgrade: str | None = None,
        *,
        identity: str | None = None,
    ) -> tuple[UpstreamResponse, UpgradedConnection | None]:
        try:
            head = encode_request_head(
                method,
                target,
                headers,
                endpoint=endpoint,
                framing=request_framing(method, body if isinstance(body, bytes) else None, upgrade),
            )
        except ValueError as exc:
            raise UpstreamProtocolError(endpoint, str(exc)) from exc
        receiver = _Awaiting(asyncio.get_running_loop())
        handle = self.send(
            endpoint,
            method=method,
            head=head,
            body=body,
            timeout_ms=timeout_ms,
            receiver=receiver,
            upgrade=upgrade is not None,
            identity=identity,
        )
        try:
            response = await receiver.future
        except BaseException:
            handle.cancel(receiver)
            raise
        conn = receiver.conn
        if conn is not None and conn.upgraded:  # only an upgrade request gets that far
            return response, UpgradedConnection(conn, response)
        return response, None

    # -- connections -------------------------------------------------------------------------

    async def _connect(self, endpoint: Address, identity: str | None = None) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        host, port = endpoint
        ctx = self._tls_context(endpoint, identity)
        try:
            async with asyncio.timeout(self.connect_timeout_ms / 1000):
                if ctx is None:
                    _, conn = await loop.create_connection(
                        lambda: UpstreamConnection(self, endpoint), host, port
                    )
                else:
                    _, conn = await loop.create_connection(
                        lambda: UpstreamConnection(self, endpoint),
                        host,
                        port,
                        ssl=ctx,
                        server_hostname=identity,
                    )
        except ssl.SSLError as exc:  # before OSError: it is one
            raise UpstreamTlsError(
                endpoint, f"tls to {identity} failed: {_tls_reason(exc)}"
            ) from exc
        except TimeoutError as exc:
            raise UpstreamConnectTimeout(
                endpoint, f"connect timed out after {self.connect_timeout_ms} ms"
            ) from exc
        except OSError as exc:
            raise UpstreamConnectError(endpoint, f"connect failed: {exc}") from exc
        if ctx is not None:
            assert identity is not None
            conn.key = (host, port, identity)
            if conn.info is not None:
                conn.info.tls = True
        self._all.add(conn)
        return conn

    def _tls_context(self, endpoint: Address, identity: str | None) -> ssl.SSLContext | None:
        """The client context for mesh TLS to `identity` (None: plaintext)."""
        if identity is None or self.mesh is None:
            return None
        ctx = self.mesh.client_context
        if ctx is None:
            raise UpstreamTlsError(endpoint, f"tls to {identity}: no identity certificate yet")
        return ctx

    def _put_idle(self, conn: PooledConnection) -> None:
        if conn.pooled:
            return  # released twice: a connection in the list twice would serve two requests
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = []
        if len(idle) >= self.max_idle_per_endpoint:
            conn.close()
            return
        conn.idle_since = conn.loop.time()
        conn.pooled = True
        idle.append(conn)
        if self._sweeper is None:
            self._schedule_sweep(conn.loop)

    def _schedule_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """One timer for the whole pool instead of one per pooled connection: a connection
        going idle on every request must not cost a timer each time."""
        self._sweeper = loop.call_later(self.idle_timeout_ms / 2000, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close connections idle for `idle_timeout_ms` or more (oldest first in each list,
        as idle connections are appended and reused last-in first-out)."""
        self._sweeper = None
        cutoff = loop.time() - self.idle_timeout_ms / 1000
        for idle in list(self._idle.values()):
            while idle and idle[0].idle_since <= cutoff:
                conn = idle.pop(0)
                conn.pooled = False
                conn.idle_expired()
        if any(self._idle.values()):
            self._schedule_sweep(loop)

    def _watch_reads(self, loop: asyncio.AbstractEventLoop) -> None:
        """An exchange without a deadline started: make sure the read sweep runs."""
        if self._read_sweeper is None and self.read_timeout_ms is not None:
            self._schedule_read_sweep(loop, self.read_timeout_ms)

    def _schedule_read_sweep(self, loop: asyncio.AbstractEventLoop, timeout_ms: int) -> None:
        # every quarter of the timeout, and 4 quiet sweeps in a row expire an exchange: a
        # silence is cut between 1 and 1.25 times the timeout
        self._read_sweeper = loop.call_later(timeout_ms / 4000, self._read_sweep, loop)

    def _read_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the exchanges without a deadline whose upstream has been silent for
        `read_timeout_ms` (no `progress` over 4 sweeps); again while any is in flight."""
        self._read_sweeper = None
        timeout_ms = self.read_timeout_ms
        if timeout_ms is None:
            return
        watched = False
        for conn in list(self._all):
            if not (conn.busy and conn.watched):
                continue
            if conn.progress != conn.swept:
                conn.swept = conn.progress
                conn.quiet_sweeps = 0
            elif conn.quiet_sweeps >= 3:
                conn.read_expired(timeout_ms)
                continue
            else:
                conn.quiet_sweeps += 1
            watched = True
        if watched:
            self._schedule_read_sweep(loop, timeout_ms)

    def _watch_deadline(self, conn: PooledConnection, due: float) -> None:
        """One timer for the whole pool's deadlines instead of one per request (a timer
        made and cancelled per request costs as much as a tenth of the request): it is due
        at the earliest deadline, so a new exchange moves it only when it is due sooner."""
        self._timed.add(conn)
        if self._deadline_sweeper is None or due < self._deadline_at:
            self._schedule_deadline_sweep(conn.loop, due)

    def _schedule_deadline_sweep(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._deadline_sweeper is not None:
            self._deadline_sweeper.cancel()
        self._deadline_at = at
        self._deadline_sweeper = loop.call_at(at, self._deadline_sweep, loop)

    def _deadline_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Expire the exchanges whose deadline has passed; then wake up at the earliest
        deadline left (`DEADLINE_GAP_S`, or `DEADLINE_GAP_PER_EXCHANGE_S` per exchange with
        a deadline, from now at the soonest: a deadline is met late by at most that, never
        early)."""
        self._deadline_sweeper = None
        now = loop.time()
        earliest: float | None = None
        timed = self._timed
        for conn in list(timed):
            due = conn.due
            if due is None:
                timed.discard(conn)
            elif due <= now:
                timed.discard(conn)
                conn._expire()
            elif earliest is None or due < earliest:
                earliest = due
        if earliest is not None:
            gap = max(DEADLINE_GAP_S, len(timed) * DEADLINE_GAP_PER_EXCHANGE_S)
            self._schedule_deadline_sweep(loop, max(earliest, now + gap))

    def _unpool(self, conn: PooledConnection) -> None:
        if conn.pooled:
            conn.pooled = False
            self._idle[conn.key].remove(conn)

    def _forget(self, conn: PooledConnection) -> None:
        self._all.discard(conn)
        self._unpool(conn)

    async def close(self) -> None:
        """Close every connection (idle or busy) and wait until they are closed."""
        for timer in (self._sweeper, self._read_sweeper, self._deadline_sweeper):
            if timer is not None:
                timer.cancel()
        self._sweeper = self._read_sweeper = self._deadline_sweeper = None
        self._timed.clear()
        for task in list(self._connecting):
            task.cancel()
        conns = list(self._all)
        for conn in conns:
            conn.abort()
        for conn in conns:
            await conn.closed_waiter
        if self._h2 is not None:
            await self._h2.close()


def _tls_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return exc.verify_message.lower()
    return (exc.reason or str(exc)).lower().replace("_", " ")
