"""The served table as `/debug/table` bytes: rendered once per version and format, off the loop.

```
GET /debug/table[?format=json] ── TableRenders.get(version, result, format)
      │ first request of (version, format): one render task ──> a one-thread executor
      │     render(version, result, format) -> bytes            (YAML: libyaml's emitter;
      │ every other request of it awaits the same task)           JSON: the C encoder)
      v
  gzip (level 1) of the bytes, kept until a newer version is asked for (a `Body`)
      ├─ client sends Accept-Encoding: gzip ──> the kept bytes as they are (Content-Encoding)
      └─ otherwise ──> inflated CHUNK_BYTES at a time as it is written
  each piece written within SEND_TIMEOUT_MS
```

Kept compressed because a 10,000-route table is ~19 MB of YAML and ~8 MB of JSON, and the
control plane's RSS goal (300 MB with 10k routes, `bench.control_plane`) has no room for
both: gzip keeps them in ~1/20 of that, and the inflate costs a client that cannot take
gzip ~1 ms of the loop per 256 KiB piece.

The table is frozen, so its text is too: a version is rendered at most once per format,
however many clients ask, and only the newest version's renders are kept (a request still
waiting on an older one keeps its own task alive until it has its answer). The renders run on
their own thread, one at a time, so the event loop keeps answering xDS, and the default
executor (compiles, xDS translations) is never crowded by them. A render that fails (a bug)
is logged once, answered 500, and tried again by the next request.

Deliberately not here: HTTP routing (`admin.py`), the formats themselves (`engine.render`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from turnout.engine.compile import CompileResult
from turnout.engine.memory import release_memory
from turnout.engine.render import dump_json_compact, dump_yaml

log = logging.getLogger(__name__)

Format = Literal["yaml", "json"]

Render = Callable[[int, CompileResult, Format], bytes]
"""`(version, result, format) -> body`; `render_table`, or a test's wrapper around it."""

CHUNK_BYTES = 256 * 1024
"""A large body is written this much at a time, each piece after the last was taken."""

SEND_TIMEOUT_MS = 10_000
"""A client that takes no piece of the body for this long has its connection closed."""

GZIP_LEVEL = 1
"""zlib's fastest level: ~20x smaller for this YAML/JSON, ~0.1 s for 19 MB on one core."""


@dataclass(frozen=True, slots=True)
class Body:
    """One rendered body, kept gzip-compressed."""

    gzip: bytes
    """The body as a gzip member (RFC 1952), served as it is with ``Content-Encoding: gzip``."""
    size: int
    """The body's length uncompressed (Content-Length for a client without gzip)."""

    @classmethod
    def pack(cls, body: bytes) -> Body:
        packer = zlib.compressobj(GZIP_LEVEL, wbits=31)  # 31: gzip header and trailer
        return cls(packer.compress(body) + packer.flush(), len(body))

    def pieces(self, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The body uncompressed, at most `chunk` bytes at a time (inflated lazily)."""
        inflater = zlib.decompressobj(wbits=31)
        data = self.gzip
        while data:
            piece = inflater.decompress(data, chunk)
            data = inflater.unconsumed_tail
            if piece:
                yield piece
        if rest := inflater.flush():
            yield rest


def render_table(version: int, result: CompileResult, fmt: Format) -> bytes:
    """`/debug/table`'s body: YAML as `mesh routes -o yaml` prints it (table, status,
    Gateway status, no diagnostics), or JSON ``{"version", "table", "status",
    "gatewayStatus"}`` that `render.from_data` reads."""
    data: dict[str, object] = {"table": result.table, "status": result.statuses}
    if result.gateway_statuses:
        data["gatewayStatus"] = result.gateway_statuses
    if fmt == "json":
        text = dump_json_compact({"version": version, **data})
    else:
        text = dump_yaml({**data, "diagnostics": ()})
    body = text.encode()
    del text
    release_memory()
    return body


class TableRenders:
    """`/debug/table` bodies of the newest version asked for, one render each."""

    def __init__(self, *, render: Render = render_table) -> None:
        self._render = render
        self._version: int | None = None
        self._tasks: dict[Format, asyncio.Task[Body | None]] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="admin-render")

    async def get(self, version: int, result: CompileResult, fmt: Format) -> Body | None:
        """The body of `version` (whose compile is `result`) in `fmt`; None: the render
        failed (logged)."""
        if version != self._version:
            self._version, self._tasks = version, {}
        task = self._tasks.get(fmt)
        if task is None:
            task = asyncio.create_task(
                self._run(version, result, fmt), name=f"admin-render v{version} {fmt}"
            )
            self._tasks[fmt] = task
        # Shielded: one client going away must not cancel a render others wait for.
        return await asyncio.shield(task)

    def _render_packed(self, version: int, result: CompileResult, fmt: Format) -> Body:
        body = Body.pack(self._render(version, result, fmt))
        release_memory()
        return body

    async def _run(self, version: int, result: CompileResult, fmt: Format) -> Body | None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            body = await loop.run_in_executor(
                self._executor, self._render_packed, version, result, fmt
            )
        except Exception:
            log.error("debug table render failed version=%d format=%s", version, fmt, exc_info=True)
            if self._version == version:
                self._tasks.pop(fmt, None)  # the next request tries again
            return None
        log.info(
            "debug table rendered version=%d format=%s bytes=%d gzip_bytes=%d elapsed_ms=%d",
            version,
            fmt,
            body.size,
            len(body.gzip),
            int((time.monotonic() - started) * 1000),
        )
        return body

    def close(self) -> None:
        """Stop the render thread (a render in progress finishes; none starts)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
