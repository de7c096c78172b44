"""What a `Call` does differently for gRPC and HTTP/2 upstreams (docs/http2.md).

```
request with a body ─ is_grpc(content-type application/grpc*) or HTTP/2 downstream
   ─► Replay(body): relayed as it comes (D7), a copy kept up to the retry cap until the
      first response byte; a retry only when the whole body is in the copy
      and fed to each mirror's `MirrorCopy` (bounded: a slow mirror is dropped, never waited)
   grpc-timeout: 250m ─► timeout_ms(...) = 250: caps the route's request timeout
response head with grpc-status (trailers-only) ─► status_of(lines) ─► retry on its name
   (RetryPolicy.grpc_codes) / Exchange.finish(grpc_status=)
trailers ─► status_of_pairs(trailers) ─► Exchange.finish(grpc_status=)
the proxy's own answer on a gRPC call ─► for_grpc(answer): HTTP 200, grpc-status (trailers-only)
```

Everything here runs only for requests that are gRPC or go to an HTTP/2 upstream; an
HTTP/1.1 request pays one `frozenset` test (its cluster is not HTTP/2) and, with a body,
one scan of its headers for the content-type.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator

from turnout.proxy.answers import Answer
from turnout.proxy.transport.messages import RawPairs

log = logging.getLogger(__name__)

GRPC_CODES = {
    "ok": 0,
    "cancelled": 1,
    "unknown": 2,
    "invalid-argument": 3,
    "deadline-exceeded": 4,
    "not-found": 5,
    "already-exists": 6,
    "permission-denied": 7,
    "resource-exhausted": 8,
    "failed-precondition": 9,
    "aborted": 10,
    "out-of-range": 11,
    "unimplemented": 12,
    "internal": 13,
    "unavailable": 14,
    "data-loss": 15,
    "unauthenticated": 16,
}
"""Envoy's `retry_on` gRPC names (`x-envoy-retry-grpc-on`) -> status codes."""

_FROM_HTTP = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 4}
"""gRPC's HTTP-to-status mapping (doc/http-grpc-status-mapping.md), with a timeout of ours
(504) as DEADLINE_EXCEEDED, as Envoy and Linkerd answer it; other statuses: UNKNOWN (2)."""

MIRROR_BUFFER_BYTES = 1 << 20
"""A mirror's copy of a relayed body holds at most this many bytes its upstream has not
taken yet; beyond, the copy is dropped (its stream fails): the main request never waits."""

_UNITS = {b"H": 3_600_000.0, b"M": 60_000.0, b"S": 1000.0, b"m": 1.0, b"u": 1e-3, b"n": 1e-6}


def is_grpc(headers: RawPairs) -> bool:
    """The request is gRPC: its content-type is application/grpc (or +proto, ...)."""
    for name, value in headers:
        if len(name) == 12 and name.lower() == b"content-type":
            return value[:16].lower() == b"application/grpc"
    return False


def timeout_ms(headers: RawPairs) -> int | None:
    """The `grpc-timeout` header (at most 8 digits and a unit) in milliseconds, rounded up
    (at least 1); None when absent or malformed."""
    for name, value in headers:
        if len(name) == 12 and name.lower() == b"grpc-timeout":
            digits, unit = value[:-1].strip(), value[-1:]
            if not digits.isdigit() or len(digits) > 8 or unit not in _UNITS:
                return None
            ms = int(digits) * _UNITS[unit]
            return max(1, int(-(-ms // 1)))
    return None


def status_of_pairs(pairs: RawPairs) -> int | None:
    """`grpc-status` of a header list (trailers); None when absent or not a number."""
    for name, value in pairs:
        if name == b"grpc-status":
            return int(value) if value.isdigit() else None
    return None


def status_of_lines(lines: list[bytes]) -> int | None:
    """`grpc-status` of a response head's `RawHeaders.lines` (a trailers-only response)."""
    for i in range(0, len(lines), 4):
        if lines[i].lower() == b"grpc-status":
            value = lines[i + 2]
            return int(value) if value.isdigit() else None
    return None


_TWINS: dict[int, Answer] = {}


def for_grpc(answer: Answer) -> Answer:
    """The proxy's `answer` as a gRPC call gets it: HTTP 200, trailers-only, its status
    mapped to a gRPC code, the cause in grpc-message and l5d-proxy-error (made once per
    answer)."""
    if answer.grpc_status is not None:
        return answer
    twin = _TWINS.get(id(answer))
    if twin is None:
        code = _FROM_HTTP.get(answer.status, 2)
        twin = _TWINS[id(answer)] = Answer(200, answer.cause, grpc_status=code)
    return twin


class MirrorCopy:
    """A mirror's copy of a relayed body (Envoy's request mirror sends the body too): fed
    by `Replay` as the body is relayed, read by the mirror's upstream stream. Bounded: over
    `MIRROR_BUFFER_BYTES` not yet taken, the copy is dropped and its reader fails."""

    __slots__ = ("chunks", "ended", "failed", "waiter", "waiting")

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.waiting = 0
        self.ended = False
        self.failed = False
        self.waiter: asyncio.Future[None] | None = None

    def feed(self, chunk: bytes) -> None:
        if self.failed or self.ended:
            return
        self.waiting += len(chunk)
        if self.waiting > MIRROR_BUFFER_BYTES:
            log.debug("mirror copy dropped: its upstream is slower than the request")
            self.fail()
            return
        self.chunks.append(chunk)
        self._wake()

    def end(self) -> None:
        self.ended = True
        self._wake()

    def fail(self) -> None:
        """The relayed body failed, or the copy fell too far behind: the mirror gives up."""
        self.failed = True
        self.chunks.clear()
        self._wake()

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> MirrorCopy:
        return self

    async def __anext__(self) -> bytes:
        while not self.chunks:
            if self.failed:
                raise ConnectionResetError("the mirrored body was not whole")
            if self.ended:
                raise StopAsyncIteration
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        if self.failed:
            raise ConnectionResetError("the mirrored body was not whole")
        chunk = self.chunks.popleft()
        self.waiting -= len(chunk)
        return chunk


class Replay:
    """A streamed request body, relayed once chunk by chunk, with a copy kept (up to `cap`
    bytes) until `stop()` (the first response byte): `body()` is the whole body again for
    a retry, or None when it did not fit or had not all arrived. Each chunk also goes to
    the mirrors' copies (`tap()`)."""

    __slots__ = ("complete", "kept", "size", "source", "taps")

    def __init__(self, source: AsyncIterator[bytes], cap: int) -> None:
        self.source = source
        self.kept: list[bytes] | None = []
        self.size = cap
        """Bytes the copy may still take."""
        self.complete = False
        self.taps: list[MirrorCopy] | None = None

    def tap(self) -> MirrorCopy | None:
        """A mirror's copy of the body from its start: what was relayed already (the kept
        copy), then each chunk as it is relayed; None when the kept copy is gone."""
        if self.kept is None:
            return None
        copy = MirrorCopy()
        for chunk in self.kept:
            copy.feed(chunk)
        if self.complete:
            copy.end()
            return copy
        if self.taps is None:
            self.taps = []
        self.taps.append(copy)
        return copy

    def __aiter__(self) -> Replay:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self.source.__anext__()
        except StopAsyncIteration:
            self.complete = True
            if self.taps is not None:
                for copy in self.taps:
                    copy.end()
            raise
        except BaseException:
            if self.taps is not None:
                for copy in self.taps:
                    copy.fail()
            raise
        kept = self.kept
        if kept is not None:
            self.size -= len(chunk)
            if self.size < 0:
                self.kept = None
            else:
                kept.append(chunk)
        if self.taps is not None:
            for copy in self.taps:
                copy.feed(chunk)
        return chunk

    def abandon(self) -> None:
        """The call is over before the body was relayed whole: the mirrors give up."""
        if self.taps is not None and not self.complete:
            for copy in self.taps:
                copy.fail()

    def stop(self) -> None:
        self.kept = None

    def body(self) -> bytes | None:
        kept = self.kept
        if not self.complete or kept is None:
            return None
        return b"".join(kept)
