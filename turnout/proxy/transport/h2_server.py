"""`H2ServerConnection`: an HTTP/2 client connection (h2c prior knowledge, handed over by
`server.HttpServerProtocol` at the preface: `take_over`), each stream one `IncomingRequest`
answered through an `h2_stream.H2StreamWriter` by the listener's handler, as HTTP/1 is.

```
data_received ─► h2.receive_data ─► events (a ProtocolError: GOAWAY sent, close)
  RequestReceived ─► over the stream limit: RST_STREAM(REFUSED_STREAM); headers over the
                     limits: 431; else IncomingRequest(version "2") + H2StreamWriter
                     ─► listener.handler(request, writer), exactly as `downstream` does
  DataReceived    ─► the stream's BodyStream; acknowledged as the handler reads it
  StreamEnded     ─► body complete
  StreamReset     ─► the stream's Call cancelled; too many of them: GOAWAY(ENHANCE_YOUR_CALM)
  WindowUpdated   ─► pending DATA goes out, `on_writable`
  PING/SETTINGS/PRIORITY/empty DATA ─► the control-frame budget (over it: ENHANCE_YOUR_CALM)
writes ─► h2's buffer ─► one transport.write per loop round (`want_flush`)
no stream open for keepalive_timeout_ms ─► GOAWAY(NO_ERROR), close
a stream with no frame either way for STREAM_IDLE_TIMEOUT_S ─► RST_STREAM(CANCEL), its call
  cancelled (Envoy's stream_idle_timeout); one sweep timer per connection, while streams are
  open, every quarter of it: a frame costs a stream one attribute store
drain() (the proxy stopping: `h2_drain.H2Connections`) ─► GOAWAY(NO_ERROR, last_stream_id =
  the last stream seen): streams open finish, newer ones are refused (REFUSED_STREAM, safe
  for the client to send again), closed when the last one ends
```

Rapid reset (CVE-2023-44487) is Envoy's premature-reset rule: once a connection has opened
`RAPID_RESET_MIN_STREAMS` streams, more than half of them reset by the client before their
response was whole closes it. The connection's receive window is raised to
`Limits.h2_connection_window` so that one slow stream's unread body (at most its own
window, `Limits.h2_initial_window`) cannot stall the others.

Not here: the frames of one stream (`h2_stream`), HTTP/2 to upstreams (`h2_client`), TLS
and ALPN (the listener's), server push (off), the h2c `Upgrade` (stripped, `server`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    PingReceived,
    PriorityUpdated,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    UnknownFrameReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error, ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from turnout.proxy.errors import ClientError, UpstreamError
from turnout.proxy.transport.downstream import Listener
from turnout.proxy.transport.h2_codec import Connection
from turnout.proxy.transport.h2_request import AckedBody, request_from_headers
from turnout.proxy.transport.h2_stream import H2StreamWriter
from turnout.proxy.transport.heads import error_cause
from turnout.proxy.transport.messages import (
    ConnectionInfo,
    hook_close,
)
from turnout.proxy.transport.streams import BodyStream

log = logging.getLogger(__name__)

RAPID_RESET_MIN_STREAMS = 100
"""Streams a connection opens before its resets are judged (Envoy's premature-reset rule)."""
CONTROL_FRAME_BURST = 1000
"""Control frames (PING, SETTINGS, PRIORITY, empty DATA, unknown) a client may send at once."""
CONTROL_FRAMES_PER_S = 100
"""And the rate that budget refills at; a client over it gets GOAWAY(ENHANCE_YOUR_CALM)."""
STREAM_IDLE_TIMEOUT_S = 300.0
"""A stream with no frame either way for this long is reset (Envoy's stream_idle_timeout
default, 5 min)."""
_IDLE_SWEEPS = 4
"""Sweeps per STREAM_IDLE_TIMEOUT_S: a stream is reset at the 5th sweep with no frame
since, so after 4/4 to 5/4 of the timeout idle (never early)."""
_HPACK_FACTOR = 4
"""The decoder refuses a header list over this many times `max_header_bytes` (an HPACK bomb:
the connection ends); up to that, a stream over the limit is answered 431."""


class _Settings(Settings):
    """Our SETTINGS as sent, but h2's own check of MAX_CONCURRENT_STREAMS (a connection
    error) never fires: the stream over the limit is refused alone (REFUSED_STREAM, RFC 9113
    §5.1.2 allows either), by `H2ServerConnection._request`."""

    @property
    def max_concurrent_streams(self) -> int:
        return 2**31 - 1

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[SettingCodes.MAX_CONCURRENT_STREAMS] = value


def take_over(
    transport: asyncio.Transport, conn: ConnectionInfo, listener: Listener, data: bytes
) -> H2ServerConnection:
    """The `downstream.Http2Takeover` of plaintext listeners: `serve_http(http2=take_over)`."""
    return H2ServerConnection(transport, conn, listener)


class Registry(Protocol):
    """What counts a connection until it closes (`h2_drain.H2Connections`)."""

    def closed(self, conn: H2ServerConnection) -> None: ...


class H2ServerConnection(asyncio.Protocol):
    """One HTTP/2 client connection (see the module docstring)."""

    def __init__(self, transport: asyncio.Transport, info: ConnectionInfo, listener: Listener):
        self.transport = transport
        self.info = info
        self.listener = listener
        self.limits = limits = listener.limits
        self.loop = asyncio.get_running_loop()
        self.peer = info.peer
        h2: H2Connection = Connection(  # h2's, less costs that are no protocol work
            H2Configuration(
                client_side=False,
                header_encoding=None,
                # our own checks, one pass each way, cost a fraction of h2's generator
                # chains: requests in `h2_request.request_from_headers`, responses in
                # `h2_stream` (lower-case names, no connection-specific fields, no CR/LF)
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self.h2 = h2
        h2.local_settings = _Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: limits.h2_max_concurrent_streams,
                SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_bytes,
                SettingCodes.INITIAL_WINDOW_SIZE: limits.h2_initial_window,
                SettingCodes.ENABLE_PUSH: 0,
            },
        )
        h2.decoder.max_header_list_size = limits.max_header_bytes * _HPACK_FACTOR
        h2.initiate_connection()
        if limits.h2_connection_window > 65535:
            h2.increment_flow_control_window(limits.h2_connection_window - 65535)
        self.streams: dict[int, H2StreamWriter] = {}
        self._starting: list[H2StreamWriter] = []
        """Streams opened by the read in hand: their handlers start after its last event."""
        self.paused = False
        self.closed = False
        self._replayed = True  # the first bytes were counted by the HTTP/1 protocol
        self._flush_scheduled = False
        self._opened = 0
        self._resets = 0
        self._tokens = float(CONTROL_FRAME_BURST)
        self._tokens_at = self.loop.time()
        self._own_priority: object = None  # the PriorityUpdated of the HEADERS just read
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_due = 0.0  # loop time the connection is idle until; 0: a stream is open
        self._keepalive_s = limits.keepalive_timeout_ms / 1000
        self._send_timer: asyncio.TimerHandle | None = None
        self._stalled: set[H2StreamWriter] = set()
        self._stall_timer: asyncio.TimerHandle | None = None
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._draining = False
        self.registry: Registry | None = None
        """Who counts this connection for the proxy's drain (`h2_drain.H2Connections`)."""
        self._empty = BodyStream(self.loop, high_water=1, pause=_nothing, resume=_nothing)
        self._empty.feed_eof()
        self._dispatch: dict[type[Event], Callable[[Event], None]] = {
            RequestReceived: self._request,  # type: ignore[dict-item]
            DataReceived: self._data,  # type: ignore[dict-item]
            StreamEnded: self._ended,  # type: ignore[dict-item]
            StreamReset: self._reset,  # type: ignore[dict-item]
            WindowUpdated: self._window,  # type: ignore[dict-item]
            ConnectionTerminated: self._goaway,  # type: ignore[dict-item]
            PingReceived: self._control,
            RemoteSettingsChanged: self._control,
            PriorityUpdated: self._priority,
            UnknownFrameReceived: self._control,
        }
        self._arm_idle()
        self.want_flush()

    # -- asyncio.Protocol ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._replayed:
            self._replayed = False
        else:
            self.info.bytes_read += len(data)
        if self.closed:
            return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as exc:  # h2 has queued the GOAWAY
            log.debug("http/2 protocol error peer=%s error=%s", self.peer, exc)
            self._close_now()
            return
        dispatch = self._dispatch
        for event in events:
            handle = dispatch.get(type(event))
            if handle is not None:
                handle(event)
                if self.closed:
                    self._starting.clear()
                    return
        starting = self._starting
        if starting:
            # after every event of the read: a unary call's DATA and END_STREAM are in
            # by now, so its handler takes the body at once (no task: `Handler`)
            for writer in starting:
                if not writer.closed and not self.closed:
                    self._start(writer)
            starting.clear()
        self.want_flush()

    def eof_received(self) -> bool | None:
        return False  # as HTTP/1: a client's FIN is a disconnect

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for timer in (self._idle_timer, self._send_timer, self._stall_timer, self._sweep_timer):
            if timer is not None:
                timer.cancel()
        err = ClientError(499, "client disconnected")
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.gone(err)
        self.listener.open -= 1
        if self.registry is not None:
            self.registry.closed(self)
        hook_close(self.listener.hooks, self.info, exc)

    def pause_writing(self) -> None:
        self.paused = True
        ms = self.limits.send_timeout_ms
        if ms is not None and self._send_timer is None:
            self._send_timer = self.loop.call_later(ms / 1000, self._on_send_timeout)

    def resume_writing(self) -> None:
        self.paused = False
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        for stream in list(self.streams.values()):
            stream.writable()

    # -- events --------------------------------------------------------------------------

    def _request(self, event: RequestReceived) -> None:
        sid = event.stream_id
        assert sid is not None and event.headers is not None
        self._own_priority = event.priority_updated
        if self._draining:
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        if len(self.streams) >= self.limits.h2_max_concurrent_streams:
            log.debug("stream over the limit refused peer=%s stream=%d", self.peer, sid)
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            self._control(event)  # refused streams cost no handler, but are not free
            return
        self._opened += 1
        ended = event.stream_ended is not None
        stream = self._empty if ended else AckedBody(self, sid)
        request, grpc, refusal = request_from_headers(
            event.headers, stream, self.info, self.limits, mesh=self.listener.mesh is not None
        )
        writer = H2StreamWriter(self, sid, request, stream, grpc=grpc)
        writer.remote_done = ended
        self.streams[sid] = writer
        self.info.requests += 1
        self._cancel_idle()
        if self._sweep_timer is None:
            self._sweep_timer = self.loop.call_later(
                STREAM_IDLE_TIMEOUT_S / _IDLE_SWEEPS, self._on_sweep
            )
        if refusal is not None:
            log.debug("request refused peer=%s stream=%d status=%d", self.peer, sid, refusal)
            self.answer_error(writer, refusal)
            writer.complete()
            return
        self._starting.append(writer)

    def _data(self, event: DataReceived) -> None:
        sid = event.stream_id
        assert sid is not None
        data = event.data or b""
        flow = event.flow_controlled_length or 0
        writer = self.streams.get(sid)
        stream = None
        if writer is not None:
            writer.idle = 0
            stream = writer.stream
        if type(stream) is AckedBody and stream.take(data):
            if flow > len(data):
                self._ack(sid, flow - len(data))  # padding
        else:
            self._ack(sid, flow)  # nobody reads it: hand the window back at once
        if not data and event.stream_ended is None:
            self._control(event)

    def _ended(self, event: StreamEnded) -> None:
        writer = self.streams.get(event.stream_id or 0)
        if writer is not None:
            writer.remote_done = True
            if not writer.stream.at_eof:
                writer.stream.feed_eof()
            if writer.closed:
                self._forget(writer)

    def _reset(self, event: StreamReset) -> None:
        writer = self.streams.pop(event.stream_id or 0, None)
        if writer is None:
            return
        if event.remote_reset:
            if not writer.finished:
                self._resets += 1
            log.debug("stream reset by the client peer=%s stream=%d", self.peer, writer.stream_id)
        writer.gone(ClientError(499, "client reset the stream"))
        opened = self._opened
        if opened >= RAPID_RESET_MIN_STREAMS and self._resets * 2 > opened:
            log.info(
                "http/2 rapid reset, closing peer=%s streams=%d resets=%d",
                self.peer,
                opened,
                self._resets,
            )
            self._calm()
            return
        self._after_stream()

    def _window(self, event: WindowUpdated) -> None:
        sid = event.stream_id
        if sid:
            writer = self.streams.get(sid)
            if writer is not None:
                writer.send_pending()
                writer.writable()
            return
        for writer in list(self.streams.values()):
            if writer.pending:
                writer.send_pending()
            writer.writable()

    def _goaway(self, event: ConnectionTerminated) -> None:
        """The client is leaving: finish what runs, accept nothing new."""
        self._draining = True
        if not self.streams:
            self._close_now()

    def drain(self) -> None:
        """GOAWAY(NO_ERROR) naming the last stream seen: those finish, newer ones are
        refused; closed when none is left. (Not h2's `close_connection`: that ends the
        connection's state machine, and the open streams could answer no more.)"""
        if self.closed or self._draining:
            return
        self._draining = True
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.h2.highest_inbound_stream_id
        frame.error_code = ErrorCodes.NO_ERROR
        self._flush()  # what h2 queued goes first
        data = frame.serialize()
        if not self.transport.is_closing():
            self.transport.write(data)
            self.info.bytes_written += len(data)
        if not self.streams:
            self._close_now()

    def abort(self) -> None:
        """The drain is over: close now (streams left end as client disconnects)."""
        if not self.closed:
            self._close_now()

    def _priority(self, event: Event) -> None:
        if event is not self._own_priority:  # a PRIORITY frame, not a HEADERS' priority
            self._control(event)

    def _control(self, event: Event) -> None:
        now = self.loop.time()
        tokens = self._tokens + (now - self._tokens_at) * CONTROL_FRAMES_PER_S
        self._tokens = min(tokens, CONTROL_FRAME_BURST) - 1
        self._tokens_at = now
        if self._tokens < 0:
            log.info("http/2 control frame flood, closing peer=%s", self.peer)
            self._calm()

    # -- streams -------------------------------------------------------------------------

    def _start(self, writer: H2StreamWriter) -> None:
        try:
            answer = self.listener.handler(writer.request, writer)
        except Exception as exc:
            self._failed(writer, exc)
            writer.complete()
            return
        if answer is not None:
            writer.answer = answer
            writer.task = self.loop.create_task(self._run(writer, answer))

    def _failed(self, writer: H2StreamWriter, exc: Exception) -> None:
        if isinstance(exc, ClientError):
            log.debug("client error peer=%s status=%d error=%s", self.peer, exc.status, exc)
            self.answer_error(writer, exc.status)
        elif isinstance(exc, UpstreamError):
            log.debug("upstream failed mid-response peer=%s error=%s", self.peer, exc)
            self.answer_error(writer, 502)
        else:
            log.error(
                "handler failed method=%s target=%.200s peer=%s",
                writer.request.method,
                writer.request.target,
                self.peer,
                exc_info=exc,
            )
            self.answer_error(writer, 500)

    async def _run(self, writer: H2StreamWriter, answer: Awaitable[None]) -> None:
        try:
            await answer
        except asyncio.CancelledError:
            if not writer.closed:
                raise
        except Exception as exc:
            self._failed(writer, exc)
        else:
            if not writer.started:
                log.error(
                    "handler returned without responding target=%.200s", writer.request.target
                )
                self.answer_error(writer, 500)
        finally:
            writer.task = None
            writer.complete()

    def answer_error(self, stream: H2StreamWriter, status: int) -> None:
        """The transport's own answer (`heads.error_cause`), or a reset once started."""
        if stream.started or stream.closed:
            if not stream.finished:
                stream.reset(ErrorCodes.INTERNAL_ERROR)
            return
        if status == 499:
            stream.reset(ErrorCodes.CANCEL)
            return
        cause = error_cause(status)
        headers = [("content-type", "text/plain; charset=utf-8"), ("l5d-proxy-error", cause)]
        stream.send(status, headers, f"{cause}\n".encode())

    def stream_done(self, stream: H2StreamWriter) -> None:
        if stream.completed and stream.closed:
            if not stream.remote_done:
                # answered before the whole request arrived: the rest is not wanted
                # (RFC 9113 §8.1: RST_STREAM(NO_ERROR) after a complete response)
                stream.remote_done = True
                stream.stream.discard()
                with contextlib.suppress(H2Error):
                    self.h2.reset_stream(stream.stream_id, ErrorCodes.NO_ERROR)
                self.want_flush()
            self._forget(stream)

    def _forget(self, stream: H2StreamWriter) -> None:
        if stream.completed and self.streams.pop(stream.stream_id, None) is not None:
            self._after_stream()

    def _after_stream(self) -> None:
        if self.streams:
            return
        if self._draining:
            self._close_now()
        else:
            self._arm_idle()

    def stalled(self, stream: H2StreamWriter, *, progressed: bool) -> None:
        if progressed or not stream.stalled_at:
            stream.stalled_at = self.loop.time()
        self._stalled.add(stream)
        ms = self.limits.send_timeout_ms
        if ms is not None and self._stall_timer is None and not self.closed:
            self._stall_timer = self.loop.call_later(ms / 1000, self._on_stall_timeout)

    def _on_stall_timeout(self) -> None:
        """Reset the streams whose client has given no window for `send_timeout_ms` (a
        client that never reads must not hold its upstream exchange forever)."""
        self._stall_timer = None
        ms = self.limits.send_timeout_ms
        if self.closed or ms is None:
            return
        now, timeout = self.loop.time(), ms / 1000
        for stream in list(self._stalled):
            if stream.closed or not stream.pending:
                self._stalled.discard(stream)
                stream.stalled_at = 0.0
            elif now - stream.stalled_at >= timeout:
                log.debug(
                    "stream without window reset peer=%s stream=%d", self.peer, stream.stream_id
                )
                self._stalled.discard(stream)
                stream.reset(ErrorCodes.CANCEL)
                self.streams.pop(stream.stream_id, None)
                stream.gone(ClientError(408, "client gave no window to the response"))
                self._after_stream()
        if self._stalled:
            due = min(s.stalled_at for s in self._stalled) + timeout
            self._stall_timer = self.loop.call_at(max(due, now + 0.001), self._on_stall_timeout)

    def _on_sweep(self) -> None:
        """Every quarter of STREAM_IDLE_TIMEOUT_S while streams are open: reset those that
        saw no frame either way since 5 sweeps ago (their calls end as client disconnects
        would)."""
        self._sweep_timer = None
        if self.closed or not self.streams:
            return
        for writer in list(self.streams.values()):
            writer.idle += 1
            if writer.idle > _IDLE_SWEEPS:
                log.debug("idle stream reset peer=%s stream=%d", self.peer, writer.stream_id)
                writer.reset(ErrorCodes.CANCEL)
                self.streams.pop(writer.stream_id, None)
                writer.gone(ClientError(408, "stream idle"))
        self.want_flush()
        if self.streams:
            self._sweep_timer = self.loop.call_later(
                STREAM_IDLE_TIMEOUT_S / _IDLE_SWEEPS, self._on_sweep
            )
        else:
            self._after_stream()

    def ack(self, stream_id: int, size: int) -> None:
        """`size` body bytes of the stream were read: the client may send as many more."""
        if size and not self.closed:
            self._ack(stream_id, size)
            self.want_flush()

    def _ack(self, stream_id: int, size: int) -> None:
        if size:
            with contextlib.suppress(H2Error):
                self.h2.acknowledge_received_data(size, stream_id)

    # -- output and ends -----------------------------------------------------------------

    def want_flush(self) -> None:
        if not self._flush_scheduled and not self.closed:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self.h2.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)
            self.info.bytes_written += len(data)

    def _calm(self) -> None:
        """GOAWAY(ENHANCE_YOUR_CALM) and close: a client abusing the protocol."""
        with contextlib.suppress(H2Error):
            self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM)
        self._close_now()

    def _close_now(self) -> None:
        """Send what h2 queued (a GOAWAY), then close; streams end in `connection_lost`."""
        self._flush()
        self.closed = True
        self.transport.close()

    def _arm_idle(self) -> None:
        """No stream is open: close in `keepalive_timeout_ms` unless one opens. One timer
        per connection, moved only when it must fire sooner (as `downstream` does), so a
        stream costs no timer of its own."""
        due = self.loop.time() + self._keepalive_s
        self._idle_due = due
        if self._idle_timer is None:
            self._idle_timer = self.loop.call_at(due, self._on_idle)

    def _cancel_idle(self) -> None:
        self._idle_due = 0.0

    def _on_idle(self) -> None:
        self._idle_timer = None
        due = self._idle_due
        if not due or self.closed:
            return  # a stream is open: the next idle time arms it again
        if self.loop.time() < due:
            self._idle_timer = self.loop.call_at(due, self._on_idle)
            return
        if not self.streams:
            log.debug("idle http/2 connection closed peer=%s", self.peer)
            with contextlib.suppress(H2Error):
                self.h2.close_connection(ErrorCodes.NO_ERROR)
            self._close_now()

    def _on_send_timeout(self) -> None:
        self._send_timer = None
        if self.paused and not self.closed:
            log.debug("client too slow to read the response, aborting peer=%s", self.peer)
            self.closed = True
            self.transport.abort()


def _nothing() -> None:
    pass
