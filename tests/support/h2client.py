"""A raw HTTP/2 client for tests (h2c prior knowledge), built on the `h2` library alone: no
grpcio, no httpx. It can be polite (`request`) or not (`conn` is the `H2Connection`: send
whatever frames you like, then `flush()`).

```
client = await H2Client.open(addr)
resp = await client.request("GET", "/p", authority="web")   # status, headers, body, trailers
sid = client.start("POST", "/p", authority="web", end=False); client.send(sid, b"...")
await client.wait_closed()                                  # GOAWAY and/or EOF seen
```
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_
from dataclasses import dataclass, field

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)

Address = tuple[str, int]
Pairs = list[tuple[bytes, bytes]]


@dataclass
class Response:
    status: int = 0
    headers: Pairs = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: Pairs = field(default_factory=list)
    reset: int | None = None
    """The RST_STREAM error code, when the server reset the stream."""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)


class H2Client:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, auto_ack: bool
    ) -> None:
        self.reader, self.writer = reader, writer
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.auto_ack = auto_ack
        """Acknowledge response DATA as it arrives (False: a client that never reads)."""
        self.responses: dict[int, Response] = {}
        self.goaway: ConnectionTerminated | None = None
        self.eof = asyncio.Event()
        self.windows = asyncio.Event()
        self.received = 0
        self.error: Exception | None = None
        """Why reading stopped, when it was not the server closing (a protocol error)."""
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        addr: Address,
        *,
        auto_ack: bool = True,
        ssl: ssl_.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> H2Client:
        """Connect (over TLS with `ssl`: offer ALPN h2 in it) and send the preface."""
        reader, writer = await asyncio.open_connection(
            *addr, ssl=ssl, server_hostname=server_hostname
        )
        client = cls(reader, writer, auto_ack=auto_ack)
        client.conn.initiate_connection()
        client.flush()
        client._task = asyncio.get_running_loop().create_task(client._read())
        return client

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    def start(
        self,
        method: str,
        path: str,
        *,
        authority: str = "web",
        headers: Pairs | None = None,
        end: bool = True,
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        fields: Pairs = [
            (b":method", method.encode()),
            (b":scheme", b"http"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            *(headers or []),
        ]
        self.responses[sid] = Response()
        self.conn.send_headers(sid, fields, end_stream=end)
        self.flush()
        return sid

    def send(self, sid: int, data: bytes, *, end: bool = True) -> None:
        """Body bytes, as the windows allow (the rest is dropped: keep bodies small or
        use `send_all`)."""
        self.conn.send_data(sid, data, end_stream=end)
        self.flush()

    async def send_all(self, sid: int, data: bytes, *, end: bool = True) -> None:
        """Body bytes, waiting for window as needed."""
        view = memoryview(data)
        while view:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if room <= 0:
                self.windows.clear()
                await self.windows.wait()
                continue
            piece, view = view[:room], view[room:]
            self.conn.send_data(sid, bytes(piece), end_stream=end and not view)
            self.flush()
        if not data and end:
            self.conn.end_stream(sid)
            self.flush()

    async def request(
        self,
        method: str,
        path: str,
        *,
        authority: str = "web",
        headers: Pairs | None = None,
        body: bytes = b"",
    ) -> Response:
        if self.eof.is_set():
            raise ConnectionError(f"connection closed: {self.error!r}")
        sid = self.start(method, path, authority=authority, headers=headers, end=not body)
        if body:
            await self.send_all(sid, body)
        resp = self.responses[sid]
        await resp.done.wait()
        return resp

    async def wait_closed(self) -> None:
        await self.eof.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def _read(self) -> None:
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                self.received += len(data)
                for event in self.conn.receive_data(data):
                    self._event(event)
                self.flush()
        except (ConnectionError, OSError):
            pass
        except Exception as exc:  # h2 refused what the server sent
            self.error = exc
        finally:
            self.eof.set()
            for resp in self.responses.values():
                resp.done.set()

    def _event(self, event: object) -> None:
        sid = getattr(event, "stream_id", None)
        resp = self.responses.get(sid) if sid else None
        if isinstance(event, ResponseReceived) and resp is not None:
            resp.headers = list(event.headers or [])
            resp.status = int(dict(resp.headers)[b":status"])
        elif isinstance(event, DataReceived):
            if resp is not None:
                resp.body += event.data or b""
            if self.auto_ack and sid:
                self.conn.acknowledge_received_data(event.flow_controlled_length or 0, sid)
        elif isinstance(event, TrailersReceived) and resp is not None:
            resp.trailers = list(event.headers or [])
        elif isinstance(event, StreamEnded) and resp is not None:
            resp.done.set()
        elif isinstance(event, StreamReset) and resp is not None:
            resp.reset = int(event.error_code or 0)
            resp.done.set()
        elif isinstance(event, WindowUpdated):
            self.windows.set()
        elif isinstance(event, ConnectionTerminated):
            self.goaway = event
