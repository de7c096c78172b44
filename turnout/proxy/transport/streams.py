"""Buffers between an `asyncio.Protocol` and the coroutines that consume its messages.

```
protocol.data_received ─► parser.on_body ─► BodyStream.feed ─┐ (size > high water:
                                                             │  pause_reading())
          handler / forwarder ◄── BodyStream.read_chunk ◄────┘ (size <= low water:
                                                                resume_reading())
coroutine ─► transport.write ─► (write buffer over the high water: pause_writing)
                                 └─► WriteFlow.drain() waits until resume_writing
```

`BodyStream` is the one body queue of the transport: request bodies (`server`, read by the
handler through `RequestBody`) and response bodies of the awaitable API (`client.request`,
read through `UpstreamResponse`) both go through it; the callback API (`UpstreamPool.send`)
hands chunks to its receiver with no queue. It never copies data; chunks are handed out
as the parser produced them. `WriteFlow` is the `drain()` that streams give you, for
protocols (`downstream`, `upstream`).

Not here: any I/O (the protocols pause and resume their transports through the callbacks
given) and HTTP framing (the parsers have already removed it).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class BodyStream:
    """A queue of body chunks with read-side flow control and an inactivity timeout.

    `pause`/`resume` are called when the buffered size crosses `high_water` upwards and then
    drops to `high_water // 4`. `timeout_error` builds the exception raised when a read waits
    longer than `timeout_s` (None: wait forever; the owner has its own deadline then).
    """

    __slots__ = (
        "_chunks",
        "_exc",
        "_high",
        "_loop",
        "_low",
        "_pause",
        "_paused",
        "_resume",
        "_timeout_error",
        "_timeout_s",
        "_waiter",
        "at_eof",
        "buffered",
        "discarding",
        "on_first_read",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        high_water: int,
        pause: Callable[[], None],
        resume: Callable[[], None],
        timeout_s: float | None = None,
        timeout_error: Callable[[], BaseException] | None = None,
    ) -> None:
        self._loop = loop
        self._chunks: deque[bytes] = deque()
        self.buffered = 0
        """Bytes received and not read yet."""
        self.at_eof = False
        """The whole body has arrived (it may still be buffered)."""
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._high = high_water
        self._low = high_water // 4
        self._pause = pause
        self._resume = resume
        self._paused = False
        self._timeout_s = timeout_s
        self._timeout_error = timeout_error
        self.discarding = False
        """Set when nobody will read the rest: fed data is dropped, reading never pauses."""
        self.on_first_read: Callable[[], None] | None = None
        """Called once, before the first read waits (the server sends `100 Continue` here)."""

    # -- producer side (the protocol) ------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self.discarding or self._exc is not None:
            return
        self._chunks.append(data)
        self.buffered += len(data)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self.buffered > self._high and not self._paused:
            self._paused = True
            self._pause()

    def feed_eof(self) -> None:
        self.at_eof = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        """End the stream with an error; buffered data is dropped and reading resumes.

        A body that had fully arrived stays readable: a later disconnect does not spoil it.
        """
        if self.at_eof:
            return
        self._exc = exc
        self._chunks.clear()
        self.buffered = 0
        self._unpause()
        self._wake()

    def discard(self) -> None:
        """Drop what is buffered and whatever comes later (the consumer went away)."""
        self.discarding = True
        self._chunks.clear()
        self.buffered = 0
        self._unpause()

    @property
    def exhausted(self) -> bool:
        """The whole body has arrived and has been read."""
        return self.at_eof and not self.buffered

    # -- consumer side ---------------------------------------------------------------------

    def unread(self, data: bytes) -> None:
        """Put `data` back in front (after a read that went over a caller's limit)."""
        if data:
            self._chunks.appendleft(data)
            self.buffered += len(data)

    async def read_chunk(self) -> bytes:
        """The next chunk; b"" at the end of the body."""
        chunks = self._chunks
        while not chunks:
            if self._exc is not None:
                raise self._exc
            if self.at_eof:
                return b""
            await self._wait()
        data = chunks.popleft()
        self.buffered -= len(data)
        if self._paused and self.buffered <= self._low:
            self._unpause()
        return data

    def take_all(self, limit: int) -> bytes | None:
        """The whole body now, when it has all arrived (and without error) and is at most
        `limit` bytes: no wait, so no task is needed to read it; else None, nothing taken."""
        if not self.at_eof or self._exc is not None or self.discarding or self.buffered > limit:
            return None
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        self._unpause()
        return data

    async def read_all(self, limit: int | None = None) -> bytes | None:
        """The rest of the body joined; None (and nothing consumed) once it exceeds `limit`."""
        parts: list[bytes] = []
        total = 0
        while True:
            data = await self.read_chunk()
            if not data:
                break
            total += len(data)
            parts.append(data)
            if limit is not None and total > limit:
                self.unread(b"".join(parts))
                return None
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    async def _wait(self) -> None:
        first = self.on_first_read
        if first is not None:
            self.on_first_read = None
            first()
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiter = waiter
        if self._timeout_s is None:
            await waiter
            return
        timer = self._loop.call_later(self._timeout_s, _expire, waiter)
        try:
            await waiter
        except TimeoutError:
            err = self._timeout_error() if self._timeout_error is not None else TimeoutError()
            raise err from None
        finally:
            timer.cancel()
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _unpause(self) -> None:
        if self._paused:
            self._paused = False
            self._resume()


class WriteFlow:
    """Write-side flow control for a protocol: `pause_writing`/`resume_writing` bookkeeping
    and an awaitable `drain()` bounded by `timeout_s`, like `StreamWriter.drain()`."""

    __slots__ = ("_closed_exc", "_loop", "_timeout_s", "_waiters", "paused")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float | None) -> None:
        self._loop = loop
        self.paused = False
        self._waiters: list[asyncio.Future[None]] = []
        self._closed_exc: BaseException | None = None
        self._timeout_s = timeout_s

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._release(None)

    def close(self, exc: BaseException) -> None:
        """The connection is gone: current and future `drain()` calls raise `exc`."""
        self._closed_exc = exc
        self._release(exc)

    async def drain(self) -> None:
        """Wait until the write buffer is below its high-water mark (at once if it is).

        Raises the `close()` exception when the connection is gone, `TimeoutError` when the
        peer does not read for `timeout_s`.
        """
        if self._closed_exc is not None:
            raise self._closed_exc
        if not self.paused:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        timer = (
            None
            if self._timeout_s is None
            else self._loop.call_later(self._timeout_s, _expire, waiter)
        )
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _release(self, exc: BaseException | None) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if waiter.done():
                continue
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)
