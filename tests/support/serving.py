"""`mesh serve` as a child process: read its stdout until it says ``serving ...``.

```
proc = await asyncio.create_subprocess_exec(..., "serve", ..., stdout=PIPE)
lines = await lines_until_serving(proc, timeout_s=30)   # "xds listening on H:P", "admin
                                                        #  listening on H:P", ..., "serving ..."
```

An exit before that line is an AssertionError naming what `why()` returns (the child's
stderr or log; default: the lines read so far); no ``serving`` in `timeout_s` a TimeoutError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def lines_until_serving(
    proc: asyncio.subprocess.Process,
    *,
    timeout_s: float | None,
    why: Callable[[], Awaitable[str]] | None = None,
) -> list[str]:
    """Every stdout line of `proc` (stripped) up to and including the ``serving`` one."""
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(timeout_s):
        while not (lines and lines[-1].startswith("serving")):
            line = (await proc.stdout.readline()).decode()
            if not line:
                detail = await why() if why is not None else str(lines)
                raise AssertionError(f"mesh serve exited: {detail}")
            lines.append(line.strip())
    return lines
