"""Instant queries against Prometheus' HTTP API, for the viz commands' `--prometheus URL`.

```
instant_query(url, promql, at=) ──GET URL/api/v1/query?query=&time= (urllib, in a thread)──>
   {"status": "success", "data": {"resultType": "vector", "result": [{metric, value}]}}
   ──> [VectorSample(labels, value, at)]          anything else ──> QueryError (one line)
```

Only vectors are results: every linkerd-viz query shape (`sum(increase(...)) by (...)`,
`histogram_quantile(...)`) is one, and a scalar, matrix or string answer means the query is
not one of ours, so it is an error that says which type came back. Values are floats as
Prometheus writes them (``"NaN"`` and ``"+Inf"`` included; what they mean is the caller's).
Each `QueryError` is one line that names the Prometheus URL, and Prometheus' own
``errorType: error`` when it gave one.

Not here: building PromQL (the viz commands), range queries, scraping proxies directly
(`stats.py`, the fallback without Prometheus).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_QUERY_TIMEOUT_S = 5.0
"""How long one query may take, connect to last byte."""
ERROR_BODY_CHARS = 200
"""How much of a foreign answer an error message quotes."""


class QueryError(Exception):
    """Prometheus could not be asked, or answered no vector; one line naming its URL.
    Stands alone beside `stats.ParseError`: that one is a bad exposition from a proxy, this
    one a failed conversation with a Prometheus."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VectorSample:
    """One series of an instant vector."""

    labels: Mapping[str, str]
    """The series' labels (``__name__`` included when the query kept it)."""
    value: float
    """The value at `at`; NaN and infinities as Prometheus sent them."""
    at: float
    """Evaluation time, unix seconds."""


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:  # 400 bad_data, 422 execution, 503 ...: a body
        return exc.code, exc.read()


def _one_line(text: str) -> str:
    return " ".join(text.split())[:ERROR_BODY_CHARS]


def query_url(base: str, promql: str, at: float | None = None) -> str:
    params = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
    return f"{base.rstrip('/')}/api/v1/query?{urllib.parse.urlencode(params)}"


async def instant_query(
    base: str, promql: str, *, at: float | None = None, timeout: float = DEFAULT_QUERY_TIMEOUT_S
) -> list[VectorSample]:
    """The instant vector `promql` evaluates to at `at` (None = now) on the Prometheus at
    `base` (``http://HOST:PORT``); `QueryError` when there is none."""
    url = query_url(base, promql, at)
    try:
        async with asyncio.timeout(timeout + 0.5):
            status, body = await asyncio.to_thread(_get, url, timeout)
    except TimeoutError:
        raise QueryError(f"prometheus {base}: no answer in {timeout:g} s") from None
    except urllib.error.URLError as exc:
        raise QueryError(f"prometheus {base}: cannot query: {exc.reason}") from None
    except OSError as exc:
        raise QueryError(f"prometheus {base}: cannot query: {exc.strerror or exc}") from None
    return vector_from_answer(base, status, body)


def vector_from_answer(base: str, status: int, body: bytes) -> list[VectorSample]:
    """The samples of one `/api/v1/query` answer (HTTP `status`, `body`), or `QueryError`."""
    try:
        answer = json.loads(body)
    except ValueError:
        text = _one_line(body.decode("utf-8", errors="replace"))
        raise QueryError(f"prometheus {base}: not an API answer (HTTP {status}): {text}") from None
    if not isinstance(answer, dict) or answer.get("status") != "success":
        if isinstance(answer, dict) and "error" in answer:
            why = f"{answer.get('errorType', 'error')}: {_one_line(str(answer['error']))}"
        else:
            why = _one_line(json.dumps(answer))
        raise QueryError(f"prometheus {base}: query failed (HTTP {status}): {why}")
    data = answer.get("data")
    kind = data.get("resultType") if isinstance(data, dict) else None
    if kind != "vector" or not isinstance(data, dict):
        raise QueryError(
            f"prometheus {base}: the query gave a {kind or 'malformed'} result, not a vector"
        )
    samples = []
    for series in data.get("result") or ():
        try:
            ts, value = series["value"]
            labels = {str(k): str(v) for k, v in series["metric"].items()}
            samples.append(VectorSample(labels=labels, value=float(value), at=float(ts)))
        except (KeyError, TypeError, ValueError):
            raise QueryError(
                f"prometheus {base}: a malformed vector sample: {_one_line(json.dumps(series))}"
            ) from None
    return samples
