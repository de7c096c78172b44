"""Giving freed heap back to the operating system after a big batch (a compile, a render).

CPython returns its own small-object arenas when they empty, but what went through the C
allocator (strings, lists, protobuf buffers of a big table) stays in the process until the
allocator trims its heap, which glibc does only at the top of the heap unless asked. After a
batch that built and dropped hundreds of megabytes, `release_memory()` asks (`malloc_trim(0)`
on glibc); elsewhere it does nothing. Blocking for milliseconds: call it in a thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_memory() -> None:
    """Return the C heap's free pages to the OS where the C library can (glibc)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
