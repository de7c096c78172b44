"""Gateway API durations (GEP-2257) -> int milliseconds, and what "0s" means for timeouts."""

from __future__ import annotations

import pytest

from turnout.engine.compile.durations import duration_ms
from turnout.engine.compile.rules import compile_timeouts
from turnout.engine.model.httproute import HTTPRouteTimeouts


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        pytest.param("0s", 0, id="zero"),
        pytest.param("500ms", 500, id="millis"),
        pytest.param("1s", 1_000, id="seconds"),
        pytest.param("2m", 120_000, id="minutes"),
        pytest.param("1h", 3_600_000, id="hours"),
        pytest.param("1h30m", 5_400_000, id="hours-minutes"),
        pytest.param("1m30s", 90_000, id="minutes-seconds"),
        pytest.param("1s500ms", 1_500, id="seconds-millis"),
        pytest.param("1h1m1s1ms", 3_661_001, id="four-groups"),
        pytest.param("99999ms", 99_999, id="five-digits"),
        pytest.param("10m0s", 600_000, id="zero-group"),
    ],
)
def test_duration_is_the_sum_of_its_unit_groups(value: str, ms: int) -> None:
    """GEP-2257: `^([0-9]{1,5}(h|m|s|ms)){1,4}$`, e.g. `1h30m`, `500ms`, `0s`; "m" followed by
    "s" is milliseconds only when it is the "ms" unit."""
    assert duration_ms(value) == ms


@pytest.mark.parametrize(
    ("timeouts", "request_ms", "backend_ms"),
    [
        pytest.param(None, None, None, id="unset-no-deadline"),
        pytest.param(HTTPRouteTimeouts(request="2s"), 2_000, None, id="request-only"),
        pytest.param(
            HTTPRouteTimeouts(request="2s", backend_request="500ms"), 2_000, 500, id="both"
        ),
        pytest.param(HTTPRouteTimeouts(request="0s"), None, None, id="zero-disables-request"),
        pytest.param(
            HTTPRouteTimeouts(request="0s", backend_request="1s"),
            None,
            1_000,
            id="zero-request-with-backend",
        ),
        pytest.param(
            HTTPRouteTimeouts(backend_request="0s"), None, None, id="zero-disables-backend"
        ),
    ],
)
def test_zero_duration_disables_the_timeout(
    timeouts: HTTPRouteTimeouts | None, request_ms: int | None, backend_ms: int | None
) -> None:
    """§8.1: "`"0s"` disables the timeout (SHOULD)"; unset -> our default (no deadline);
    None in the IR means "no deadline"."""
    got = compile_timeouts(timeouts)
    assert (got.request_ms, got.backend_request_ms) == (request_ms, backend_ms)
