"""`DownstreamConnection`: the exchanges of one client connection, in order, with its timers
and its output; `HttpServerProtocol` (`server`) is this plus the request parser.

```
parsed request ─► _start: one handler at a time; later (pipelined) ones wait in _queue
   handler returns an awaitable ─► _run as a task: exceptions become answers (ClientError:
                                   its status; UpstreamError: 502; else 500, logged), or a
                                   reset once the response has started
   handler returns None ─► callback mode: ExchangeWriter.complete() ends it
_done ─► next queued request │ pending 400/408/431 │ close │ keep-alive timer
write/writelines ─► the listener's WriteBatch (sent at the end of the loop's round)
pause_writing ─► send timeout armed; resume_writing ─► on_writable / reading resumes
```

One timer per connection serves the keep-alive and header timeouts: arming it only moves
the due time, and the timer is moved only when it must fire sooner, so a request costs no
timer of its own. Reading pauses while a body buffer is over its high water, while too many
requests wait, while a callback-mode handler's writes are unread, and for a tunnel's flow
control. A response that leaves the request body unread closes the connection after it
(as h11 does) rather than reading and discarding the rest.

Not here: bytes in and the request parser (`server.HttpServerProtocol`), what a response
looks like on the wire (`writer.ExchangeWriter`), what to answer (the handler's), and an
idle timeout inside upgraded tunnels. The drain on shutdown is `h2_drain`'s, which calls
`drain()` on each connection the listener keeps in `conns`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from turnout.proxy.errors import ClientError, UpstreamError
from turnout.proxy.transport.batch import WriteBatch
from turnout.proxy.transport.heads import ERRORS, error_response
from turnout.proxy.transport.messages import (
    Accept,
    ConnectionHooks,
    ConnectionInfo,
    Handler,
    Limits,
    MeshTls,
    UpstreamTunnel,
    hook_close,
)
from turnout.proxy.transport.streams import BodyStream, WriteFlow
from turnout.proxy.transport.tls import Chain, TlsSlot
from turnout.proxy.transport.writer import ExchangeWriter

log = logging.getLogger(__name__)


class Http2Takeover(Protocol):
    """Takes over a connection whose first bytes are the HTTP/2 preface (docs/plan-http2.md,
    D1): called once, before anything was answered on it, with its transport (still
    reading), its `ConnectionInfo` and every byte read so far. The connection is already
    counted (`Listener.open`, `hook_open`): the returned protocol, installed with
    `transport.set_protocol`, owns its end (`Listener.open -= 1`, then `hook_close`)."""

    def __call__(
        self, transport: asyncio.Transport, conn: ConnectionInfo, listener: Listener, data: bytes, /
    ) -> asyncio.Protocol: ...


class Listener:
    """What all connections of one `serve_http` share."""

    __slots__ = (
        "accept",
        "batch",
        "conns",
        "handler",
        "hooks",
        "http2",
        "limits",
        "mesh",
        "open",
        "tls",
    )

    def __init__(
        self,
        handler: Handler,
        limits: Limits,
        hooks: ConnectionHooks | None,
        accept: Accept | None,
        loop: asyncio.AbstractEventLoop | None = None,
        tls: TlsSlot | None = None,
        mesh: MeshTls | None = None,
        http2: Http2Takeover | None = None,
    ) -> None:
        self.batch = WriteBatch(loop or asyncio.get_running_loop())
        """Every connection's writes of one loop round, sent at its end (`batch.py`)."""
        self.handler = handler
        self.limits = limits
        self.hooks = hooks
        self.accept = accept
        self.open = 0
        """Connections open now (for `Limits.max_connections`)."""
        self.tls = tls
        """TLS termination (`tls.py`): each connection learns its listener's chain."""
        self.mesh = mesh
        """Mesh TLS (`detect.py`): connections read their client's identity and requests
        carry it in `l5d-client-id` (a client's own is dropped)."""
        self.http2 = http2
        """Who serves a connection that opens with the HTTP/2 preface (`Http2Takeover`);
        None: it is answered 505, as any other version but HTTP/1."""
        self.conns: set[DownstreamConnection] | None = getattr(http2, "http1", None)
        """The HTTP/1.1 connections open, for the proxy's drain on stop, when the takeover
        keeps them (`h2_drain.H2Connections`: its `http1`); None: not kept."""


class DownstreamConnection(asyncio.Protocol):
    """One client connection's exchanges, timers and output (see the module docstring)."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.limits = listener.limits
        self.loop = asyncio.get_running_loop()
        self.batch = listener.batch
        send_timeout = self.limits.send_timeout_ms
        self.flow = WriteFlow(self.loop, None if send_timeout is None else send_timeout / 1000)
        self.transport: asyncio.Transport | None = None
        self.info: ConnectionInfo | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self.closed = False
        self.chain: Chain | None = None
        """With TLS: the listener (certificate, hostnames) the handshake chose."""
        self._counted = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._due = 0.0  # loop time of the armed timeout, 0: none
        self._due_callback: Callable[[], None] = _nothing
        self._send_timer: asyncio.TimerHandle | None = None
        self._await_writable = False
        self._queue: deque[ExchangeWriter] = deque()
        self._active: ExchangeWriter | None = None
        self._parsing: ExchangeWriter | None = None  # head complete, body still arriving
        self._in_head = False  # a request head is being received
        self._stopped = False  # no more requests are parsed on this connection
        self._pending_error: int | None = None
        self._paused_streams = 0
        self._reading = True
        self._tunnel_ok = True
        self._keepalive_s = self.limits.keepalive_timeout_ms / 1000
        # after an upgrade request
        self._upgraded = False
        self._tunnel: UpstreamTunnel | None = None
        self._tunnel_buffer: list[bytes] = []
        self._closed_waiter: asyncio.Future[None] = self.loop.create_future()
        # every request without a body shares one empty, finished body
        self._empty_stream = BodyStream(self.loop, high_water=1, pause=_nothing, resume=_nothing)
        self._empty_stream.feed_eof()

    # -- asyncio.Protocol (connection_made and data_received: server.HttpServerProtocol) ---

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        err = ClientError(499, "client disconnected")
        self.flow.close(err)
        active = self._active
        for exch in (active, self._parsing, *self._queue):
            if exch is not None:
                exch.stream.fail(err)
        self._queue.clear()
        if active is not None and not active.tunneling:
            if active.task is not None:
                active.task.cancel()
            elif active.on_cancel is not None and not active.completed:
                on_cancel, active.on_cancel = active.on_cancel, None
                on_cancel()
        if self._tunnel is not None:
            self._tunnel.close()
        if not self._closed_waiter.done():
            self._closed_waiter.set_result(None)
        if self._counted:
            self.listener.open -= 1
            self._counted = False
        if self.listener.conns is not None:
            self.listener.conns.discard(self)
        assert self.info is not None
        hook_close(self.listener.hooks, self.info, exc)
        self._due_callback = _nothing
        self._drop_parser()

    def drain(self) -> None:
        """The proxy is stopping (`h2_drain.H2Connections.drain`): an idle connection closes
        now; one with requests in flight closes after the last one's response, which says
        `Connection: close` unless it has started (Envoy's drain does the same)."""
        if self.closed:
            return
        exch = self._queue[-1] if self._queue else self._active
        if exch is None:
            log.debug("idle connection closed for the drain peer=%s", self.peer)
            self.close()
        else:
            exch.must_close = True

    def _drop_parser(self) -> None:
        """After the close: the parser's callbacks are bound methods of this protocol (a
        cycle); dropping it lets reference counting free the connection, with no garbage
        for the collector (`server.HttpServerProtocol`)."""

    def pause_writing(self) -> None:
        self.flow.pause()
        self._arm_send_timeout()
        if self._tunnel is not None:
            self._tunnel.pause_reading()

    def resume_writing(self) -> None:
        self.flow.resume()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        if self._tunnel is not None:
            self._tunnel.resume_reading()
        active = self._active
        if active is not None and active.on_writable is not None and not active.completed:
            active.on_writable()
        elif self._await_writable and not self.closed:
            self._await_writable = False
            self._update_reading()
            if self._active is None:
                self._next()

    # -- requests ------------------------------------------------------------------------

    def _start(self, exch: ExchangeWriter) -> None:
        self._active = exch
        self._due = 0.0  # `_cancel_timer`: no idle or header timeout while it runs
        try:
            answer = self.listener.handler(exch.request, exch)
        except Exception as exc:
            self._handler_failed(exch, exc)
            self._done(exch)
            return
        if answer is not None:
            exch.task = self.loop.create_task(self._run(exch, answer))
        # else: callback mode, exch.complete() ends it

    def _handler_failed(self, exch: ExchangeWriter, exc: Exception) -> None:
        if isinstance(exc, ClientError):
            log.debug("client error peer=%s status=%d error=%s", self.peer, exc.status, exc)
            self._answer_error(exch, exc.status)
            return
        log.error(
            "handler failed method=%s target=%.200s peer=%s",
            exch.request.method,
            exch.request.target,
            self.peer,
            exc_info=exc,
        )
        self._answer_error(exch, 500)

    async def _run(self, exch: ExchangeWriter, answer: Awaitable[None]) -> None:
        try:
            await answer
        except ClientError as exc:
            log.debug("client error peer=%s status=%d error=%s", self.peer, exc.status, exc)
            self._answer_error(exch, exc.status)
        except UpstreamError as exc:
            # The upstream broke a response already being relayed: an outside failure, not
            # a bug of ours, so no traceback; the half-sent response is aborted.
            log.debug("upstream failed mid-response peer=%s error=%s", self.peer, exc)
            self._answer_error(exch, 502)
        except Exception:
            log.exception(
                "handler failed method=%s target=%.200s peer=%s",
                exch.request.method,
                exch.request.target,
                self.peer,
            )
            self._answer_error(exch, 500)
        else:
            if not exch.started:
                log.error("handler returned without responding target=%.200s", exch.request.target)
                self._answer_error(exch, 500)
            elif not exch.finished:
                await exch.end()
        finally:
            self._done(exch)

    def _answer_error(self, exch: ExchangeWriter, status: int) -> None:
        if exch.started or self.closed:
            if not exch.finished:
                self.abort()  # a half-sent response cannot be completed or taken back
            return
        exch.started = exch.finished = exch.must_close = True
        if status != 499:
            self.write(ERRORS.get(status) or error_response(status))

    def _done(self, exch: ExchangeWriter) -> None:
        self._active = None
        if self.closed:
            return
        stream = exch.stream
        if exch.must_close or not stream.at_eof or self._upgraded:
            self.close()
            return
        if stream is not self._empty_stream:
            stream.discard()
        if self.flow.paused:
            # a callback-mode handler wrote without waiting: the client reads that first
            self._await_writable = True
            self._update_reading()
            return
        if self._queue or self._pending_error is not None or self._stopped or self._in_head:
            self._next()
        else:  # the common case: wait for the next request (`_arm`, inlined)
            due = self.loop.time() + self._keepalive_s
            self._due = due
            self._due_callback = self._on_idle_timeout
            if self._timer is None or self._timer_at > due:
                self._move_timer(due)

    def _next(self) -> None:
        """After an exchange: the next pipelined request, a pending error, or wait."""
        if self._queue:
            nxt = self._queue.popleft()
            self._update_reading()
            self._start(nxt)
        elif self._pending_error is not None:
            self._send_error_and_close(self._pending_error)
        elif self._stopped:
            self.close()  # the client half-closed: nothing more will come
        elif self._in_head:
            self._arm(self.limits.header_timeout_ms, self._on_header_timeout)
        else:
            self._arm(self.limits.keepalive_timeout_ms, self._on_idle_timeout)

    def _on_bad_input(self, status: int, exc: BaseException | None) -> None:
        self._stopped = True
        exch = self._parsing
        if exch is not None:
            # broken body (bad chunk framing): the handler reading it sees a ClientError
            self._parsing = None
            exch.stream.fail(ClientError(400, f"malformed request body: {exc}"))
            exch.must_close = True
            if self._active is None and not self._queue:
                self.close()
            return
        log.debug("bad request peer=%s status=%d error=%s", self.peer, status, exc)
        if self._active is None:
            self._send_error_and_close(status)
        else:
            self._pending_error = status  # answered after the requests before it

    async def splice(self, upstream: UpstreamTunnel) -> None:
        """Splice this connection and `upstream` until either closes (`tunnel()`)."""
        self._tunnel = upstream
        buffered, self._tunnel_buffer = self._tunnel_buffer, []
        for data in buffered:
            upstream.send(data)
        upstream.attach(_ClientEnd(self))
        self.set_reading(tunnel=True)
        closed = asyncio.ensure_future(upstream.wait_closed())
        try:
            await asyncio.wait((self._closed_waiter, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()

    # -- timers --------------------------------------------------------------------------

    def _arm(self, ms: int, callback: Callable[[], None]) -> None:
        """Call `callback` in `ms` unless re-armed or cancelled first. Cheap to call on every
        request: one timer per connection is kept and moved only when it must fire sooner
        (a timer that fires early just sleeps again until what is due)."""
        due = self.loop.time() + ms / 1000
        self._due = due
        self._due_callback = callback
        if self._timer is None or self._timer_at > due:
            self._move_timer(due)

    def _move_timer(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(due, self._on_timer)
        self._timer_at = due

    def _cancel_timer(self) -> None:
        self._due = 0.0

    def _on_timer(self) -> None:
        self._timer = None
        due = self._due
        if not due or self.closed:
            return
        if self.loop.time() < due:
            self._timer = self.loop.call_at(due, self._on_timer)
            self._timer_at = due
            return
        self._due = 0.0
        self._due_callback()

    def _arm_send_timeout(self) -> None:
        """The client has `send_timeout_ms` to read what is buffered for it, whoever wrote
        it (a callback-mode handler never waits in `drain()`, and held writes reach the
        transport only at the end of the loop round): then the connection is reset."""
        ms = self.limits.send_timeout_ms
        if ms is not None and self._send_timer is None and not self.closed:
            self._send_timer = self.loop.call_later(ms / 1000, self._on_send_timeout)

    def _on_send_timeout(self) -> None:
        self._send_timer = None
        if self.flow.paused:
            log.debug("client too slow to read the response, aborting peer=%s", self.peer)
            self.abort()

    def _on_idle_timeout(self) -> None:
        if self._active is None and not self._in_head:
            log.debug("idle connection closed peer=%s", self.peer)
            self.close()

    def _on_header_timeout(self) -> None:
        if self.closed:
            return
        if self._in_head:
            self._on_bad_input(408, None)
        elif self._active is None and self._parsing is None:
            # bytes came but no request line yet (stray CRLFs, a method cut short)
            log.debug("no request head in time, closing peer=%s", self.peer)
            self.close()

    # -- I/O -----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        # (once per response: no asserts; transport and info are connection_made's)
        self.batch.write(self.transport, data)  # type: ignore[arg-type]
        self.info.bytes_written += len(data)  # type: ignore[union-attr]

    def writelines(self, *parts: bytes) -> None:
        assert self.transport is not None and self.info is not None
        self.batch.flush()
        self.transport.writelines(parts)
        self.info.bytes_written += sum(map(len, parts))

    def close(self) -> None:
        """Close after the buffered writes are flushed."""
        if self.transport is not None and not self.transport.is_closing():
            self.batch.flush()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _send_error_and_close(self, status: int) -> None:
        self._stopped = True
        if not self.closed:
            self.write(ERRORS.get(status) or error_response(status))
            self.close()

    def _pause_stream(self) -> None:
        self._paused_streams += 1
        self._update_reading()

    def _resume_stream(self) -> None:
        self._paused_streams -= 1
        self._update_reading()

    def set_reading(self, *, tunnel: bool) -> None:
        """Pause (False) or resume (True) reading for the tunnel's flow control."""
        self._tunnel_ok = tunnel
        self._update_reading()

    def _update_reading(self) -> None:
        want = (
            self._paused_streams == 0
            and self._tunnel_ok
            and not self._await_writable
            and len(self._queue) < self.limits.max_pipelined
        )
        if want == self._reading or self.transport is None or self.closed:
            return
        self._reading = want
        if want:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()


class _ClientEnd:
    """The client side of a tunnel, as the upstream side sees it."""

    __slots__ = ("_conn",)

    def __init__(self, conn: DownstreamConnection) -> None:
        self._conn = conn

    def send(self, data: bytes) -> None:
        if not self._conn.closed:
            self._conn.write(data)

    def pause_reading(self) -> None:
        self._conn.set_reading(tunnel=False)

    def resume_reading(self) -> None:
        self._conn.set_reading(tunnel=True)

    def close(self) -> None:
        self._conn.close()


def _nothing() -> None:
    pass
