"""One upstream connection's life in the pool (`PooledConnection`): the exchange in flight,
writing its request, and every way it ends. `upstream.UpstreamConnection` extends it with
the reading half (the response parser), as `server` extends `downstream` on the listener.

```
start(OutgoingRequest, receiver)  (from the pool: an idle connection, or a new one)
   bytes body: transport.write(head + body)    iterator body: a sender task, chunked,
               (no body: the pool's WriteBatch)               waiting on pause_writing
   the reader ─► _complete (message complete, in a parser callback) ─► _settle once the read
                 is parsed: keep-alive and nothing after it ─► pool._put_idle(self), then
                 receiver.on_end(); else closed, never pooled
   the pool's deadline sweep (_expire) / its read sweep (read_expired) / _fail
      ─► receiver.on_error
```

One request is in flight at a time (no pipelining), and the pool never sends a request
twice: it starts only connections that are not closing, so a request always reaches the
socket, and a close before any response byte is an error (`_StaleConnection` on a reused
connection, a connect error): the upstream may have seen the request, so only the route's
retry policy (`retries`) may try it again, counted as a try. Errors
reach receivers only as `UpstreamError` subclasses (turnout.proxy.errors), made once with
the OS or parser exception as `__cause__`, or as the exception of a failing iterator body.

Not here: parsing (`upstream`), the idle lists, connecting, the read sweep's timer and the
awaitable API (`client.UpstreamPool`, seen from here as `ConnectionPool`), head encoding
(`heads`), retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Protocol, cast

from turnout.proxy.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReadTimeout,
    UpstreamTimeout,
)
from turnout.proxy.transport.batch import WriteBatch
from turnout.proxy.transport.messages import (
    Address,
    ConnectionHooks,
    ConnectionInfo,
    ResponseReceiver,
    TunnelEnd,
    hook_close,
    hook_open,
)
from turnout.proxy.transport.streams import WriteFlow

log = logging.getLogger(__name__)


class _StaleConnection(UpstreamConnectError):
    """A reused connection closed before any response byte: the keep-alive race."""


class ConnectionPool(Protocol):
    """What a connection needs from the pool that owns it (`client.UpstreamPool`)."""

    loop: asyncio.AbstractEventLoop | None
    hooks: ConnectionHooks | None
    max_header_bytes: int
    max_header_count: int

    @property
    def batch(self) -> WriteBatch:
        """Where bodiless request heads wait for the end of the loop's round."""

    def _put_idle(self, conn: PooledConnection) -> None:
        """The response is complete and the connection may be reused (a connection already
        idle stays in the pool once)."""

    def _unpool(self, conn: PooledConnection) -> None:
        """The connection must not be reused (it is closing)."""

    def _forget(self, conn: PooledConnection) -> None:
        """The connection is closed."""

    def _watch_deadline(self, conn: PooledConnection, due: float) -> None:
        """An exchange with a deadline (`conn.due`) started: the pool's one deadline sweep
        calls `conn._expire()` once the loop time passes it and `conn.due` still says so."""


class PooledConnection(asyncio.Protocol):
    """One upstream TCP connection as the pool and an exchange see it: `start` a request,
    `cancel`, pause and resume reading, `close`/`abort`; the reader (`UpstreamConnection`)
    calls `_complete`, `_fail` and reads the state here."""

    def __init__(self, pool: ConnectionPool, endpoint: Address) -> None:
        self.pool = pool
        self.endpoint = endpoint
        self.key: tuple[str, int] | tuple[str, int, str] = endpoint
        """The pool's idle list this connection returns to: the endpoint, plus the expected
        identity for a mesh TLS connection (`client.UpstreamPool`)."""
        self.loop = pool.loop or asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.batch = pool.batch
        self.info: ConnectionInfo | None = None
        self.flow = WriteFlow(self.loop, None)
        self.closed = False
        self.reused = False
        self.busy = False
        self.pooled = False
        """In the pool's idle list (`client.UpstreamPool` keeps it true)."""
        self.watched = False
        """The exchange in flight has no deadline: the pool's read sweep times its silences."""
        self.progress = 0
        self.reading_paused = False
        """A receiver paused reading (`pause_reading`): resumed before the connection is
        reused."""
        """Reads, and writes of a request or a piece of its body, so far: a count the read
        sweep compares (cheaper than reading the clock on every read)."""
        self.swept = -1
        """`progress` at the read sweep before."""
        self.quiet_sweeps = 0
        """Read sweeps in a row that saw no progress."""
        self.idle_since = 0.0
        """Loop time it went back to the pool; the pool's sweep closes it after the idle
        timeout."""
        # the exchange in flight
        self._receiver: ResponseReceiver | None = None
        self._request: OutgoingRequest | None = None
        self._interim = False
        self._received = False
        self._headed = False
        self._head_only = False
        self._keep_alive = False
        self._until_eof = False
        self._sent = False
        self._settling = False
        """The response completed in the read being parsed: `_settle` follows."""
        self._ended: ResponseReceiver | None = None
        self.due: float | None = None
        """Loop time the exchange in flight must be over by (None: no deadline, or over):
        the pool's deadline sweep reads it (`_watch_deadline`), no timer per request."""
        self._sender: asyncio.Task[None] | None = None
        # after a 101
        self.upgraded = False
        self.tunnel_peer: TunnelEnd | None = None
        self.tunnel_buffer: list[bytes] = []
        self.closed_waiter: asyncio.Future[None] = self.loop.create_future()

    # -- asyncio.Protocol (data_received: the reader's) ---------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = transport = cast(asyncio.Transport, transport)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.info = ConnectionInfo("outbound", self.endpoint, (local[0], local[1]))
        hook_open(self.pool.hooks, self.info)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        self.flow.close(
            UpstreamProtocolError(self.endpoint, "connection closed while sending the request")
        )
        if self.busy:
            self._lost_mid_exchange(exc)
        if self.tunnel_peer is not None:
            self.tunnel_peer.close()
        if not self.closed_waiter.done():
            self.closed_waiter.set_result(None)
        assert self.info is not None
        hook_close(self.pool.hooks, self.info, exc)
        self._drop_parser()

    def _drop_parser(self) -> None:
        """After the close: the reader's parser calls back bound methods of this
        connection (a cycle); dropping it leaves no garbage for the collector."""

    def pause_writing(self) -> None:
        if self.tunnel_peer is not None:
            self.tunnel_peer.pause_reading()
        self.flow.pause()

    def resume_writing(self) -> None:
        if self.tunnel_peer is not None:
            self.tunnel_peer.resume_reading()
        self.flow.resume()

    # -- the exchange --------------------------------------------------------------------

    def start(self, request: OutgoingRequest, receiver: ResponseReceiver) -> None:
        """Send `request`; the response goes to `receiver`."""
        # (no asserts on the request path: transport and info are connection_made's)
        transport: asyncio.Transport = self.transport  # type: ignore[assignment]
        info: ConnectionInfo = self.info  # type: ignore[assignment]
        self._receiver = receiver
        self._request = request
        self._received = self._headed = self._interim = False
        self._head_only = request.method == "HEAD"
        self.busy = True
        self.progress += 1
        info.requests += 1
        due = self.due = request.deadline
        if due is None:
            self.watched = True
        else:
            self.watched = False
            self.pool._watch_deadline(self, due)
        head, body = request.head, request.body
        if isinstance(body, bytes):
            if not body:
                self.batch.write(transport, head)
                info.bytes_written += len(head)
            elif len(body) < 65536:
                data = head + body
                transport.write(data)
                info.bytes_written += len(data)
            else:
                transport.writelines((head, body))
                info.bytes_written += len(head) + len(body)
            self._sent = True
        else:
            self._sent = False
            transport.write(head)
            info.bytes_written += len(head)
            self._sender = self.loop.create_task(
                self._send_body(body), name=f"upstream-body {self.endpoint[0]}:{self.endpoint[1]}"
            )
            self._sender.add_done_callback(log_crash)

    def cancel(self, receiver: ResponseReceiver) -> None:
        """`receiver` gives up its exchange: close the connection unless the response is
        already complete (then it is in the pool, maybe serving someone else)."""
        if self._receiver is receiver:
            self._receiver = None
            self.abort()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    async def _send_body(self, body: AsyncIterator[bytes]) -> None:
        transport = self.transport
        assert transport is not None and self.info is not None
        try:
            async for chunk in body:
                if self.closed:
                    return
                if not chunk:
                    continue
                transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                self.info.bytes_written += len(chunk) + 4 + len(b"%x" % len(chunk))
                await self.flow.drain()
                self.progress += 1  # the upstream is not due to answer yet
            if self.closed:
                return
            transport.write(b"0\r\n\r\n")
            self.info.bytes_written += 5
            self._sent = True
            self.progress += 1
        except UpstreamError:
            return  # the connection broke; the exchange has its own error already
        except Exception as exc:
            # The source (usually the client's request body) failed: the upstream got a
            # truncated body, so this connection is done; the caller sees the source's error.
            log.debug("request body source failed endpoint=%s:%d error=%r", *self.endpoint, exc)
            self._fail(exc, None)
            self.abort()

    def _complete(self) -> None:
        """The response is complete on the wire (a parser callback): the exchange is over,
        and `_settle` follows once the rest of the read is parsed."""
        self._ended = self._receiver
        self._receiver = None
        self._request = None
        self.busy = False
        self._settling = True
        self.due = None

    def _settle(self) -> None:
        """After the read that completed a response: reuse the connection if we can (not if
        anything followed the response: it is closing then), then tell the receiver. The
        receiver hears last, so that a request it sends at once can take this connection."""
        self._settling = False
        receiver, self._ended = self._ended, None
        transport = self.transport
        if not self._sent:
            # An early response (before the whole request body went out): Go and Envoy both
            # close such a connection rather than keep sending a body nobody reads.
            self.abort()
        elif self.upgraded:
            pass
        elif self._keep_alive and transport is not None and not transport.is_closing():
            self.reused = True
            if self.reading_paused:
                # a slow client's receiver paused reading on the last chunk: the next
                # exchange must read its response
                self.reading_paused = False
                transport.resume_reading()
            self.pool._put_idle(self)
        else:
            self.close()
        if receiver is not None:
            receiver.on_end()

    def _expire(self) -> None:
        """The deadline passed (the pool's deadline sweep)."""
        self.due = None
        request = self._request
        timeout = "" if request is None else f" within {request.timeout_s:g} s"
        self._fail(UpstreamTimeout(self.endpoint, f"no complete response{timeout}"), None)
        self.abort()

    def read_expired(self, timeout_ms: int) -> None:
        """The pool's read sweep: the upstream has been silent for `timeout_ms`."""
        what = "response head" if not self._headed else "more of the response body"
        log.debug("upstream silent endpoint=%s:%d waiting=%s", *self.endpoint, what)
        self._fail(UpstreamReadTimeout(self.endpoint, f"no {what} within {timeout_ms} ms"), None)
        self.abort()

    def _fail(self, err: BaseException, cause: BaseException | None) -> None:
        if cause is not None:
            err.__cause__ = cause
        receiver = self._receiver
        self._receiver = None
        if receiver is not None:
            receiver.on_error(err)

    def _lost_mid_exchange(self, exc: Exception | None) -> None:
        self.busy = False
        self.due = None
        if self._sender is not None:
            self._sender.cancel()
        receiver = self._receiver
        if receiver is None:
            return
        if not self._headed:
            if self._received:
                err: UpstreamError = UpstreamProtocolError(
                    self.endpoint, "connection closed in the response head"
                )
            elif self.reused:
                err = _StaleConnection(self.endpoint, "reused connection closed before response")
            else:
                err = UpstreamConnectError(self.endpoint, "connection closed before response")
            self._fail(err, exc)
            return
        if self.upgraded:
            self._receiver = None
            return
        if self._until_eof and exc is None:
            self._receiver = None
            receiver.on_end()  # a close-delimited body ends here (RFC 9112 §6.3 rule 8)
        else:
            self._fail(UpstreamProtocolError(self.endpoint, "connection closed mid-body"), exc)

    # -- connection control --------------------------------------------------------------

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def idle_expired(self) -> None:
        log.debug("idle upstream connection closed endpoint=%s:%d", *self.endpoint)
        self.close()


class OutgoingRequest:
    """What `start()` sends: the request, its deadline, and whether it asks for an upgrade."""

    __slots__ = ("body", "deadline", "head", "method", "timeout_s", "upgrade")

    def __init__(
        self,
        head: bytes,
        body: bytes | AsyncIterator[bytes],
        method: str,
        deadline: float | None,
        timeout_s: float | None,
        upgrade: bool = False,
    ) -> None:
        self.head = head
        self.body = body
        self.method = method
        self.upgrade = upgrade
        """The head asks for an upgrade: the one kind of request a 101 may answer."""
        self.deadline = deadline
        """Loop time by which the whole response must have arrived (None: no limit)."""
        self.timeout_s = timeout_s


def log_crash(task: asyncio.Task[None]) -> None:
    """Done callback of a task nobody awaits (a body sender, a connect): log its crash."""
    if not task.cancelled() and task.exception() is not None:
        log.error("task crashed task=%s", task.get_name(), exc_info=task.exception())
