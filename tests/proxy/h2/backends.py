"""Real HTTP/2 (h2c) backends on 127.0.0.1 for the proxy's upstream tests.

`H2Backend` is a small server on the `h2` library (not ours), one asyncio protocol per
connection; per path:
- ``/echo``: 200 with the request body, ``x-authority``/``x-te``/``x-path`` telling what
  arrived, and a trailer ``x-trailer: done``;
- ``/big/{n}``: `n` patterned bytes in 16 KiB DATA frames, sent as the client's window
  allows (more than the proxy's windows: it must acknowledge as it relays);
- ``/bidi``: the response head at once, then every request DATA chunk sent back as it comes
  (a bidi stream: nothing waits for END_STREAM);
- ``/sized``: as ``/echo`` with a ``content-length`` (a small response the proxy buffers);
- ``/hang``: never answered;
- ``/refused``: the first request RST_STREAM(REFUSED_STREAM), then as ``/echo``;
- ``/malformed``: a response head with an upper-case field name (sent as is: this
  server's own outbound checks are off), which RFC 9113 §8.2.1 calls malformed;
- ``/goaway``: the first request answered with GOAWAY(last_stream_id = before it) and a
  close, then as ``/echo``.
`hits` counts streams per path (refused ones too), `connections` the connections accepted.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    WindowUpdated,
)
from h2.settings import SettingCodes


def pattern(n: int) -> bytes:
    return (bytes(range(251)) * (n // 251 + 1))[:n]


class _Conn(asyncio.Protocol):
    def __init__(self, backend: H2Backend) -> None:
        self.backend = backend
        self.h2 = H2Connection(
            H2Configuration(
                client_side=False,
                header_encoding=None,
                validate_outbound_headers=False,  # `/malformed` sends what h2 would refuse
                normalize_outbound_headers=False,
            )
        )
        self.transport: asyncio.Transport | None = None
        self.heads: dict[int, dict[bytes, bytes]] = {}
        self.bodies: dict[int, bytearray] = {}
        self.pending: dict[int, bytes] = {}
        self.offsets: dict[int, int] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop: alike only
        self.backend.connections += 1
        self.backend.open.append(transport)
        self.h2.initiate_connection()
        if self.backend.max_streams is not None:  # after the preface: h2 sends pending ones so
            self.h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: self.backend.max_streams})
        self.flush()

    def flush(self) -> None:
        assert self.transport is not None
        data = self.h2.data_to_send()
        if data:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        for ev in self.h2.receive_data(data):
            if isinstance(ev, RequestReceived):
                self.on_request(ev.stream_id, dict(ev.headers or []))
            elif isinstance(ev, DataReceived):
                self.h2.acknowledge_received_data(ev.flow_controlled_length or 0, ev.stream_id)
                if ev.stream_id in self.bodies:
                    if self.heads[ev.stream_id][b":path"] == b"/bidi":
                        self.h2.send_data(ev.stream_id, ev.data or b"")
                    else:
                        self.bodies[ev.stream_id] += ev.data or b""
            elif isinstance(ev, StreamEnded) and ev.stream_id in self.bodies:
                self.on_end(ev.stream_id)
            elif isinstance(ev, WindowUpdated | RemoteSettingsChanged):  # windows grew
                for sid in list(self.pending):
                    self.send_pending(sid)
        self.flush()

    def on_request(self, sid: int, head: dict[bytes, bytes]) -> None:
        path = head[b":path"].decode()
        backend = self.backend
        backend.hits[path] += 1
        if path in ("/refused", "/goaway") and backend.hits[path] == 1:
            if path == "/refused":
                self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            else:
                self.h2.close_connection(last_stream_id=sid - 2 if sid > 1 else 0)
                self.flush()
                assert self.transport is not None
                self.transport.close()
            return
        self.heads[sid] = head
        self.bodies[sid] = bytearray()
        if path == "/bidi":
            self.h2.send_headers(sid, [(b":status", b"200"), (b"x-backend", b"h2")])

    def on_end(self, sid: int) -> None:
        head, body = self.heads.pop(sid), bytes(self.bodies.pop(sid))
        path = head[b":path"].decode()
        self.backend.received[path] = body
        if path == "/bidi":
            self.h2.end_stream(sid)
            return
        if path == "/hang":
            return
        if path == "/malformed":
            self.h2.send_headers(sid, [(b":status", b"200"), (b"X-Upper", b"v")], end_stream=True)
            return
        if path.startswith("/big/"):
            self.h2.send_headers(sid, [(b":status", b"200"), (b"x-backend", b"h2")])
            self.pending[sid] = pattern(int(path.rsplit("/", 1)[1]))
            self.send_pending(sid)
            return
        self.h2.send_headers(
            sid,
            [
                (b":status", b"200"),
                (b"x-backend", b"h2"),
                (b"x-authority", head.get(b":authority", b"")),
                (b"x-te", head.get(b"te", b"-")),
                (b"x-path", head[b":path"]),
                (b"x-host-header", head.get(b"host", b"-")),
                *([(b"content-length", b"%d" % len(body))] if path == "/sized" else []),
            ],
        )
        if body:
            self.h2.send_data(sid, body)
        self.h2.send_headers(sid, [(b"x-trailer", b"done")], end_stream=True)

    def send_pending(self, sid: int) -> None:
        data, at = self.pending[sid], self.offsets.get(sid, 0)
        while at < len(data):
            window = self.h2.local_flow_control_window(sid)
            if window <= 0:
                break
            n = min(window, 16384, len(data) - at)
            self.h2.send_data(sid, data[at : at + n], end_stream=at + n == len(data))
            self.backend.sent += n
            at += n
        if at < len(data):
            self.offsets[sid] = at
        else:
            del self.pending[sid]
            self.offsets.pop(sid, None)


@dataclass
class H2Backend:
    port: int = 0
    hits: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    sent: int = 0
    """``/big`` body bytes sent so far (as the client's windows allowed)."""
    open: list[asyncio.Transport] = field(default_factory=list)
    max_streams: int | None = None
    """SETTINGS_MAX_CONCURRENT_STREAMS to advertise (None: h2's default, 100)."""
    server: asyncio.Server | None = None
    received: dict[str, bytes] = field(default_factory=dict)
    """The last request body each path got, once its stream ended."""

    async def start(self) -> H2Backend:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Conn(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for transport in self.open:
                transport.abort()
            await self.server.wait_closed()
