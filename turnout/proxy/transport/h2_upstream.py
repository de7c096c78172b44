"""One multiplexed HTTP/2 connection to an upstream (`H2ClientConnection`) and its
exchanges (`H2Stream`, each one's `UpstreamHandle`), driven by the `h2` library's events.

```
submit(stream) ─ not connected yet: queued ─► connection_made: preface, SETTINGS (push off),
   the connection window raised to H2_CONNECTION_WINDOW, queued streams started
start: HEADERS, then DATA within the peer's window (bytes), or a pump task for a streamed
   body (never more than PUMP_HIGH_WATER ahead of the window); WindowUpdated sends the rest
data_received ─ h2 events ─► ResponseReceived: on_head · DataReceived: on_body, then
   acknowledged (paused stream: later, on resume) · TrailersReceived: on_trailers ·
   StreamEnded: on_end · StreamReset: REFUSED_STREAM before a head ─► pool.resend, else
   on_error · ConnectionTerminated (GOAWAY): draining, streams above last_stream_id ─►
   pool.resend · connection lost: on_error for every stream left
```

Receivers are never called from inside `submit` (a stream that cannot start fails on the
next loop round). Writes are gathered and flushed once per loop round (`_schedule_flush`),
or at the end of `data_received`.

Not here: which connection a stream goes on, connecting, the idle sweep (`h2_client.H2Pool`,
seen from here as `H2ConnectionPool`), request headers (`heads.h2_request_headers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol, cast

from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error
from h2.settings import SettingCodes

from turnout.proxy.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReadTimeout,
    UpstreamTimeout,
)
from turnout.proxy.transport.h2_codec import Connection
from turnout.proxy.transport.heads import H2_BAD_NAME, H2_BAD_VALUE, H2_CONNECTION_SPECIFIC
from turnout.proxy.transport.messages import (
    HOP_BY_HOP_BYTES,
    Address,
    ConnectionHooks,
    ConnectionInfo,
    RawHeaders,
    RawPairs,
    ResponseReceiver,
    hook_close,
    hook_open,
)

log = logging.getLogger(__name__)

PoolKey = tuple[str, int] | tuple[str, int, str]
"""The endpoint, plus the expected identity for mesh TLS (as `client.PoolKey`)."""


class H2ConnectionPool(Protocol):
    """What a connection needs from the pool that owns it (`h2_client.H2Pool`)."""

    hooks: ConnectionHooks | None
    max_streams: int

    def resend(self, stream: H2Stream, old: H2ClientConnection, why: str) -> None: ...
    def _retire(self, conn: H2ClientConnection) -> None: ...
    def _forget(self, conn: H2ClientConnection) -> None: ...
    def _went_idle(self, conn: H2ClientConnection) -> None: ...


H2_STREAM_WINDOW = 65_535
"""Our per-stream receive window (the protocol's default): a paused stream's buffer bound."""
H2_CONNECTION_WINDOW = 1 << 20
"""Our connection receive window, raised at the start from the default 64 KiB."""
MAX_STREAMS = 100
"""Streams one connection carries at most, whatever the peer allows."""
PUMP_HIGH_WATER = 64 * 1024
"""A streamed request body is read no further ahead of the upstream's window than this."""

_CONFIG = H2Configuration(
    client_side=True,
    header_encoding=None,
    # h2's header checks (a chain of generators per block) cost more than the rest of a
    # stream: what we send is made lower-case and checked already
    # (`heads.h2_request_headers`); what we receive is checked once, in one pass, by
    # `_response_head` and `_trailers` (RFC 9113 §8.2, §8.3)
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)


class Malformed(Exception):
    """A response head or trailers RFC 9113 §8.1.1 calls malformed (a stream error)."""


def _error_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)


class H2Stream:
    """One exchange on an HTTP/2 connection; the receiver's `UpstreamHandle`."""

    __slots__ = (
        "body",
        "conn",
        "deadline",
        "done",
        "drained",
        "ended_local",
        "endpoint",
        "headed",
        "headers",
        "key",
        "on_trailers",
        "out",
        "out_end",
        "paused",
        "progress",
        "pump",
        "quiet",
        "receiver",
        "resent",
        "sid",
        "swept",
        "timer",
        "unacked",
    )

    def __init__(
        self,
        key: PoolKey,
        endpoint: Address,
        headers: RawPairs,
        body: bytes | AsyncIterator[bytes],
        receiver: ResponseReceiver,
        deadline: float | None,
    ) -> None:
        self.key = key
        self.endpoint = endpoint
        self.headers = headers
        self.body = body
        self.receiver = receiver
        self.on_trailers: Callable[[RawPairs], None] | None = getattr(receiver, "on_trailers", None)
        self.deadline = deadline
        self.conn: H2ClientConnection | None = None
        self.sid = 0
        """The stream id once started (0: waiting for its connection)."""
        self.out = b""
        """Request body bytes not sent yet (the upstream's window is full)."""
        self.out_end = False
        self.ended_local = False
        self.drained: asyncio.Future[None] | None = None
        self.pump: asyncio.Task[None] | None = None
        self.paused = False
        self.unacked = 0
        """Response bytes received while paused, acknowledged on resume."""
        self.headed = False
        self.done = False
        self.resent = False
        self.timer: asyncio.TimerHandle | None = None
        self.progress = 0
        """Bumped by every frame of the response and every request chunk sent: what the
        pool's read sweep (`H2Pool._read_sweep`) watches on a stream without a deadline."""
        self.swept = 0
        self.quiet = 0

    # -- UpstreamHandle ---------------------------------------------------------------------

    def cancel(self, receiver: ResponseReceiver, /) -> None:
        if self.done:
            return
        self._finish()
        conn = self.conn
        if conn is not None:
            conn.drop(self, ErrorCodes.CANCEL)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False
        conn = self.conn
        if self.unacked and conn is not None and not self.done:
            conn.acknowledge(self)

    # -- endings -----------------------------------------------------------------------------

    def _finish(self) -> None:
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.pump is not None:
            self.pump.cancel()
            self.pump = None
        if self.drained is not None and not self.drained.done():
            self.drained.cancel()

    def fail(self, error: BaseException) -> None:
        if self.done:
            return
        self._finish()
        self.receiver.on_error(error)

    def expire(self) -> None:
        self.timer = None
        if self.done:
            return
        conn = self.conn
        self.fail(UpstreamTimeout(self.endpoint, "request deadline expired"))
        if conn is not None:
            conn.drop(self, ErrorCodes.CANCEL)

    def read_expired(self, timeout_ms: int) -> None:
        """The pool's read sweep: the upstream has been silent on this stream for
        `timeout_ms` (no deadline of its own): `UpstreamReadTimeout`, RST_STREAM(CANCEL)."""
        if self.done:
            return
        conn = self.conn
        what = "more of the response body" if self.headed else "response head"
        self.fail(UpstreamReadTimeout(self.endpoint, f"no {what} within {timeout_ms} ms"))
        if conn is not None:
            conn.drop(self, ErrorCodes.CANCEL)


class H2ClientConnection(asyncio.Protocol):
    """One HTTP/2 connection to an endpoint, carrying up to `max_streams` streams."""

    def __init__(self, pool: H2ConnectionPool, key: PoolKey, endpoint: Address) -> None:
        self.pool = pool
        self.key = key
        self.endpoint = endpoint
        self.loop = asyncio.get_running_loop()
        self.h2 = Connection(_CONFIG)  # h2's, less costs that are no protocol work (`h2_codec`)
        self.streams: dict[int, H2Stream] = {}
        self.queued: list[H2Stream] = []
        self.transport: asyncio.Transport | None = None
        self.info: ConnectionInfo | None = None
        self.draining = False
        """GOAWAY received (or sent): no new stream."""
        self.closed = False
        self.idle_since = self.loop.time()
        self._flush_soon = False
        self._acks: dict[int, int] = {}
        """Response bytes per stream read in this `data_received`, acknowledged after its
        last event: once per stream, and only at the connection's level for a stream that
        ended meanwhile (a unary response: DATA and trailers in one read)."""
        self.closed_waiter: asyncio.Future[None] = self.loop.create_future()

    @property
    def free(self) -> int:
        """Streams it can take now (queued ones counted)."""
        if self.draining or self.closed:
            return 0
        limit = min(self.h2.remote_settings.max_concurrent_streams, self.pool.max_streams)
        return limit - len(self.streams) - len(self.queued)

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("sockname")
        local = (sock[0], sock[1]) if sock else ("", 0)
        self.info = ConnectionInfo("outbound", self.endpoint, local)
        hook_open(self.pool.hooks, self.info)
        h2 = self.h2
        h2.initiate_connection()
        # after the preface: h2 sends its acknowledged settings there, not pending ones
        h2.update_settings(
            {SettingCodes.ENABLE_PUSH: 0, SettingCodes.INITIAL_WINDOW_SIZE: H2_STREAM_WINDOW}
        )
        h2.increment_flow_control_window(H2_CONNECTION_WINDOW - 65_535)
        queued, self.queued = self.queued, []
        for stream in queued:
            self.start(stream)
        self._flush()

    def data_received(self, data: bytes) -> None:
        if self.info is not None:
            self.info.bytes_read += len(data)
        try:
            events = self.h2.receive_data(data)
        except H2Error as exc:
            log.debug("upstream h2 protocol error endpoint=%s:%d error=%s", *self.endpoint, exc)
            self._flush()
            self._close_all(UpstreamProtocolError(self.endpoint, f"http/2 protocol error: {exc}"))
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            handler = _HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)
        acks = self._acks
        if acks:
            for sid, n in acks.items():
                self._ack(n, sid)
            acks.clear()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._close_all(None, exc)
        self.pool._forget(self)
        if self.info is not None:
            hook_close(self.pool.hooks, self.info, exc)
        if not self.closed_waiter.done():
            self.closed_waiter.set_result(None)

    def _close_all(self, error: UpstreamError | None, exc: BaseException | None = None) -> None:
        self.draining = True
        streams = [*self.streams.values(), *self.queued]
        self.streams.clear()
        self.queued.clear()
        for stream in streams:
            if stream.done:
                continue
            err = error
            if err is None:
                err = (
                    UpstreamProtocolError(self.endpoint, "connection closed mid-body")
                    if stream.headed
                    else UpstreamConnectError(self.endpoint, "connection closed before response")
                )
                err.__cause__ = exc
            stream.fail(err)

    # -- streams -----------------------------------------------------------------------------

    def submit(self, stream: H2Stream) -> None:
        stream.conn = self
        if self.transport is None:
            self.queued.append(stream)
        else:
            self.start(stream)
            self._schedule_flush()

    def start(self, stream: H2Stream) -> None:
        h2 = self.h2
        body = stream.body
        try:
            sid = h2.get_next_available_stream_id()
            empty = isinstance(body, bytes) and not body
            h2.send_headers(sid, stream.headers, end_stream=empty)
        except H2Error as exc:
            err = UpstreamProtocolError(self.endpoint, f"request not sendable over http/2: {exc}")
            self.loop.call_soon(stream.fail, err)
            return
        stream.sid = sid
        stream.ended_local = empty
        self.streams[sid] = stream
        if self.info is not None:
            self.info.requests += 1
        if isinstance(body, bytes):
            if body:
                stream.out, stream.out_end = body, True
                self.send_out(stream)
        else:
            stream.pump = self.loop.create_task(self._pump(stream, body))

    async def _pump(self, stream: H2Stream, body: AsyncIterator[bytes]) -> None:
        """Relay a streamed request body, never far ahead of the upstream's window."""
        try:
            async for chunk in body:
                if stream.done:
                    return
                stream.out += chunk
                stream.progress += 1  # the upstream is not due to answer yet
                self.send_out(stream)
                while len(stream.out) > PUMP_HIGH_WATER and not stream.done:
                    stream.drained = self.loop.create_future()
                    await stream.drained
            stream.out_end = True
            stream.pump = None
            if not stream.done:
                self.send_out(stream)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client's body broke (a ClientError): as is
            stream.pump = None
            if not stream.done:
                stream.fail(exc)
                self.drop(stream, ErrorCodes.CANCEL)

    def send_out(self, stream: H2Stream) -> None:
        """Send what the window allows of the stream's pending body (END_STREAM with the
        last of it once the body is complete)."""
        if stream.ended_local or stream.done:
            return
        h2, sid = self.h2, stream.sid
        try:
            out = stream.out
            while out:
                window = h2.local_flow_control_window(sid)
                if window <= 0:
                    break
                n = min(window, h2.max_outbound_frame_size, len(out))
                last = n == len(out) and stream.out_end
                h2.send_data(sid, out[:n], end_stream=last)
                out = out[n:]
                stream.ended_local = last
            stream.out = out
            if not out:
                if stream.out_end and not stream.ended_local:
                    h2.end_stream(sid)
                    stream.ended_local = True
                drained = stream.drained
                if drained is not None and not drained.done():
                    drained.set_result(None)
        except H2Error as exc:  # the stream closed meanwhile (reset, or the response ended)
            log.debug("request body not sent endpoint=%s:%d error=%s", *self.endpoint, exc)
            stream.out = b""
            stream.ended_local = True
        self._schedule_flush()

    def acknowledge(self, stream: H2Stream) -> None:
        n, stream.unacked = stream.unacked, 0
        self._ack(n, stream.sid)
        self._schedule_flush()

    def _ack(self, n: int, sid: int) -> None:
        with contextlib.suppress(H2Error):  # the stream closed: its window no longer matters
            self.h2.acknowledge_received_data(n, sid)

    def drop(self, stream: H2Stream, code: ErrorCodes) -> None:
        """Give a stream up (cancelled, timed out, its body broke): RST_STREAM."""
        if stream.sid == 0:
            if stream in self.queued:
                self.queued.remove(stream)
            return
        if self.streams.pop(stream.sid, None) is not None and not self.closed:
            with contextlib.suppress(H2Error):
                self.h2.reset_stream(stream.sid, code)
            self._schedule_flush()
        self._maybe_idle()

    # -- events --------------------------------------------------------------------------------

    def _on_response(self, event: ResponseReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None or stream.done:
            return
        try:
            status, raw, length = _response_head(event.headers or [])
        except Malformed as exc:
            self._malformed(stream, f"malformed response head: {exc}")
            return
        stream.headed = True
        stream.progress += 1
        stream.receiver.on_head(stream, status, raw, length)

    def _on_data(self, event: DataReceived) -> None:
        sid = event.stream_id
        size = event.flow_controlled_length or 0
        stream = self.streams.get(sid)
        if stream is not None and not stream.done:
            stream.progress += 1
            if event.data:
                stream.receiver.on_body(event.data)
            if stream.paused:
                stream.unacked += size
                return
        if size:  # acknowledged after the read's last event (`data_received`)
            acks = self._acks
            acks[sid] = acks.get(sid, 0) + size

    def _on_trailers(self, event: TrailersReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None or stream.done:
            return
        try:
            trailers = _trailers(event.headers or [])
        except Malformed as exc:
            self._malformed(stream, f"malformed trailers: {exc}")
            return
        if stream.on_trailers is not None:
            stream.on_trailers(trailers)

    def _malformed(self, stream: H2Stream, why: str) -> None:
        """RST_STREAM(PROTOCOL_ERROR) (RFC 9113 §8.1.1: a stream error, the connection
        lives on) and the exchange fails as a protocol error."""
        log.debug("upstream %s endpoint=%s:%d", why, *self.endpoint)
        self.streams.pop(stream.sid, None)
        with contextlib.suppress(H2Error):
            self.h2.reset_stream(stream.sid, ErrorCodes.PROTOCOL_ERROR)
        self._schedule_flush()
        stream.fail(UpstreamProtocolError(self.endpoint, why))
        self._maybe_idle()

    def _on_ended(self, event: StreamEnded) -> None:
        stream = self.streams.pop(event.stream_id, None)
        if stream is None or stream.done:
            return
        unsent = not stream.ended_local
        stream._finish()
        if unsent:  # answered before the whole request was sent: stop sending it
            with contextlib.suppress(H2Error):
                self.h2.reset_stream(event.stream_id, ErrorCodes.NO_ERROR)
        stream.receiver.on_end()
        self._maybe_idle()

    def _on_reset(self, event: StreamReset) -> None:
        stream = self.streams.pop(event.stream_id, None)
        self._maybe_idle()
        if stream is None or stream.done:
            return
        name = _error_name(event.error_code or 0)
        if not stream.headed and event.error_code == ErrorCodes.REFUSED_STREAM:
            self.pool.resend(stream, self, f"stream refused ({name})")
        elif stream.headed:
            stream.fail(UpstreamProtocolError(self.endpoint, f"stream reset mid-body ({name})"))
        else:
            stream.fail(
                UpstreamConnectError(self.endpoint, f"stream reset before response ({name})")
            )

    def _on_window(self, event: WindowUpdated) -> None:
        sid = event.stream_id
        if sid:
            stream = self.streams.get(sid)
            if stream is not None and stream.out:
                self.send_out(stream)
            return
        for stream in list(self.streams.values()):
            if stream.out:
                self.send_out(stream)

    def _on_goaway(self, event: ConnectionTerminated) -> None:
        self.draining = True
        self.pool._retire(self)
        last = event.last_stream_id or 0
        for sid in [s for s in self.streams if s > last]:
            stream = self.streams.pop(sid)
            if not stream.done:
                self.pool.resend(stream, self, "not processed before goaway")
        self._maybe_idle()

    # -- writing and closing ---------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if not self._flush_soon:
            self._flush_soon = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_soon = False
        data = self.h2.data_to_send()
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)
            if self.info is not None:
                self.info.bytes_written += len(data)

    def _maybe_idle(self) -> None:
        if self.streams or self.queued:
            return
        self.idle_since = self.loop.time()
        if self.draining:
            self.close()
        else:
            self.pool._went_idle(self)

    def close(self) -> None:
        """GOAWAY (when open) and close."""
        self.draining = True
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        with contextlib.suppress(H2Error):
            self.h2.close_connection()
        self._flush()
        transport.close()


_HANDLERS: dict[type, Callable[[H2ClientConnection, object], None]] = {
    ResponseReceived: H2ClientConnection._on_response,  # type: ignore[dict-item]
    DataReceived: H2ClientConnection._on_data,  # type: ignore[dict-item]
    TrailersReceived: H2ClientConnection._on_trailers,  # type: ignore[dict-item]
    StreamEnded: H2ClientConnection._on_ended,  # type: ignore[dict-item]
    StreamReset: H2ClientConnection._on_reset,  # type: ignore[dict-item]
    WindowUpdated: H2ClientConnection._on_window,  # type: ignore[dict-item]
    ConnectionTerminated: H2ClientConnection._on_goaway,  # type: ignore[dict-item]
}
"""Event type -> what a connection does with it (others: nothing, h2 answers PINGs and
SETTINGS itself)."""


def _response_head(pairs: list[tuple[bytes, bytes]]) -> tuple[int, RawHeaders, int | None]:
    """An h2 response head as the HTTP/1 pool reports one: status, `RawHeaders` (hop-by-hop
    and framing apart), the content-length when sent; checked in this one pass (h2's own
    checks are off): `Malformed` for a missing, repeated or bad `:status`, another
    pseudo-header or one after a regular field, a name that is not a lower-case token, a
    value with NUL, CR, LF or edge whitespace, a connection-specific field."""
    status = 0
    lines: list[bytes] = []
    hop: RawPairs = []
    length: int | None = None
    bad_name, bad_value = H2_BAD_NAME.search, H2_BAD_VALUE.search
    for name, value in pairs:
        if name[:1] == b":":
            if name != b":status" or status or lines or hop:
                raise Malformed(f"pseudo-header {name!r}")
            if len(value) != 3 or not value.isdigit():
                raise Malformed(f":status {value!r}")
            status = int(value)
            continue
        if not name or bad_name(name) or bad_value(value):
            raise Malformed(f"field {name!r}")
        if name in HOP_BY_HOP_BYTES:
            if name in H2_CONNECTION_SPECIFIC or (name == b"te" and value != b"trailers"):
                raise Malformed(f"connection-specific field {name!r}")
            hop.append((name, value))
            if name == b"content-length" and value.isdigit():
                length = int(value)
            continue
        lines += (name, b": ", value, b"\r\n")
    if not status:
        raise Malformed("no :status")
    return status, RawHeaders(lines, hop), length


def _trailers(pairs: list[tuple[bytes, bytes]]) -> RawPairs:
    """Response trailers, checked in one pass: no pseudo-header (RFC 9113 §8.1), names
    lower-case tokens, values free of NUL, CR, LF and edge whitespace, no
    connection-specific field; else `Malformed`."""
    bad_name, bad_value = H2_BAD_NAME.search, H2_BAD_VALUE.search
    for name, value in pairs:
        if not name or bad_name(name) or bad_value(value) or name in H2_CONNECTION_SPECIFIC:
            raise Malformed(f"field {name!r}")
    return pairs if type(pairs) is list else list(pairs)
