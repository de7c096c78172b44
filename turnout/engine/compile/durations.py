"""Gateway API durations (GEP-2257): ``^([0-9]{1,5}(h|m|s|ms)){1,4}$`` -> int milliseconds."""

from __future__ import annotations

import re
from functools import lru_cache

_PART = re.compile(r"([0-9]{1,5})(ms|h|m|s)")
_UNIT_MS = {"h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}


@lru_cache(maxsize=1024)  # a handful of distinct values ("2s", "500ms") across 10k rules
def duration_ms(value: str) -> int:
    """``1h30m`` -> 5_400_000; the schema has already checked the format."""
    return sum(int(n) * _UNIT_MS[unit] for n, unit in _PART.findall(value))
