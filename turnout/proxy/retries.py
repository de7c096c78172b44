"""Retries of one request: which outcomes are tried again, when, and within which deadline.

```
a try ends ─ status / error ─► retriable?  status in `codes`, a connect error (no response
   │                                       started), or a per-try timeout (GEP-1731/1742)
   │   no  ─► done (after a retry: retry_success)
   │   yes ─► body replayable?   no ─► done, retry_overflow (the body was streamed once)
   │          attempts left?     no ─► done, retry_limit_exceeded
   │          budget withdraws?  no ─► done, retry_overflow (retry budget spent)
   │          yes ─► retry: the next try after `backoff_s` ─► a new endpoint from the balancer
each try: timeout = min(per-try timeout, what is left of the request deadline)
```

`Call` (`call.py`) asks `admit_retry` once per retriable-looking outcome, and only on routes
with a retry policy; a request that is answered by its first try never enters this module.
What the proxy answers when it gives up is the last try's own outcome (its response, or the
answer for its error, `answers.py`): a refused retry never makes an answer of its own.

Not here: hedging (a second try before the first ended), retrying a response whose body has
started streaming to the client, ``Retry-After`` (the backoff is the route's).
"""

from __future__ import annotations

import logging
import random

from turnout.proxy.actions import RetryPolicy
from turnout.proxy.budget import Budget
from turnout.proxy.clusters import ByCluster
from turnout.proxy.errors import UpstreamConnectError, UpstreamTimeout
from turnout.proxy.telemetry import Exchange

log = logging.getLogger(__name__)

MAX_RETRY_BODY_BYTES = 64 * 1024
"""Only requests whose body is buffered under this size are retried (Linkerd's cap)."""


def is_retriable(
    retry: RetryPolicy,
    per_try_timeout_ms: int | None,
    status: int | None,
    error: object,
    grpc_status: int | None = None,
) -> bool:
    """A response status the policy retries, a gRPC status it names (a trailers-only
    response: the status is known before any body), a connect error (nothing was
    answered), or a try cut by its own per-try timeout (the request deadline's expiry is
    not retried)."""
    return (
        (status is not None and status in retry.codes)
        or (grpc_status is not None and grpc_status in retry.grpc_codes)
        or isinstance(error, UpstreamConnectError)
        or (isinstance(error, UpstreamTimeout) and per_try_timeout_ms is not None)
    )


def admit_retry(
    retry: RetryPolicy,
    ex: Exchange,
    *,
    per_try_timeout_ms: int | None,
    attempt: int,
    replayable: bool,
    budgets: ByCluster[Budget],
    cluster: str | None,
    status: int | None,
    error: BaseException | None,
    grpc_status: int | None = None,
) -> bool:
    """Whether try number `attempt` (0 = the first) is followed by another; counts the
    outcome in `ex` either way (a retry, or why there is none). `cluster` is the backend's,
    whose retry budget pays for the retry (None: inbound, no budget)."""
    if not is_retriable(retry, per_try_timeout_ms, status, error, grpc_status):
        if attempt > 0 and status is not None:
            ex.retry_success()
        return False
    if not replayable:
        ex.retry_skipped()  # not buffered: the body cannot be sent again
        return False
    if attempt >= retry.attempts:
        ex.retry_limit_exceeded()
        return False
    budget = budgets.get(cluster) if cluster is not None else None
    if budget is not None and not budget.try_withdraw():
        ex.retry_skipped()
        return False
    ex.retry(status=status, error=error if isinstance(error, Exception) else None)
    return True


def backoff_s(retry: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """Seconds before retry number `attempt` (1, 2, ...): exponential with full jitter above
    the base, never earlier than the base (GEP-1731), at most the policy's cap."""
    base, cap = retry.backoff_base_ms, retry.backoff_max_ms
    ceiling = min(cap, base * (2 ** (attempt - 1)))
    return float(base + rng.random() * max(0, ceiling - base)) / 1000


def try_timeout(per_try_ms: int | None, deadline: float | None, now: float) -> int | None:
    """Milliseconds the next try may take: its per-try timeout inside what is left of the
    request deadline (a clock time; None: no request timeout). None: no limit at all."""
    left = None if deadline is None else int((deadline - now) * 1000)
    if per_try_ms is None:
        return left
    return per_try_ms if left is None else min(per_try_ms, left)
