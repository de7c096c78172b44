"""Route success rate, RPS and latency from proxies' `/metrics` (what `mesh routes --live`
and the demos show).

Like `linkerd viz routes`, but reading the proxies directly instead of Prometheus: every
target is scraped twice, a window apart, and each route's numbers come from the counter and
histogram deltas (Prometheus `increase()`: a counter that went down was reset, so its whole
new value counts).

```
scrape_all(urls) ─> Scrape(url, at, text) ──┐   (twice, `window` seconds apart)
                                             v
parse_text ─> Sample(name, labels, value) ─> route_stats(before, after) ─> {RouteKey: RouteStats}
   route_response_total{direction="outbound",dst,rt_route,classification}   success, failure
   route_response_latency_ms_bucket{...,le}                                 histogram deltas
RouteStats ─> success_rate / rps / quantile (histogram_quantile)
```

Semantics (LINKERD-REFERENCE.md §b): success rate = success / (success + failure); RPS =
(success + failure) / window; latency quantiles are Prometheus `histogram_quantile` over the
bucket deltas (linear interpolation inside the bucket, the lowest bucket starting at 0, a
rank in ``+Inf`` answering the highest finite bound). Only ``direction="outbound"`` series
count (the client side of each call, as `viz routes --to` reads them); a route is keyed by
its parent, derived from ``dst`` (the request's authority, a Service name in any of its DNS
forms) and the series' ``namespace``, and by ``rt_route`` (the IR rule name the proxy
matched). Pure functions but `scrape` and `live_stats`, which only fetch text (stdlib
`urllib` in a thread, with a timeout). Formatting the numbers is the CLI's (`cli/live.py`).
`ParseError` is its only exception (an exposition that does not parse; `prom.py` has its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

K = TypeVar("K")
RESPONSES = "route_response_total"
ACTUAL_RESPONSES = "route_actual_response_total"
"""Every attempt, retries included (Linkerd's ACTUAL columns)."""
LATENCY_BUCKETS = "route_response_latency_ms_bucket"
CLUSTER_SUFFIX = ("svc", "cluster", "local")
DEFAULT_HTTP_PORT = 80


@dataclass(frozen=True, slots=True)
class Sample:
    """One line of the text exposition: ``name{labels} value``."""

    name: str
    labels: Mapping[str, str]
    value: float


class ParseError(ValueError):
    """A line of the exposition that is not ``name{labels} value [timestamp]``."""


def _parse_labels(text: str, pos: int, line: str) -> tuple[dict[str, str], int]:
    """Labels from ``text[pos]`` (just after ``{``) to the closing ``}``; returns the end."""
    labels: dict[str, str] = {}
    n = len(text)
    while True:
        while pos < n and text[pos] in " ,":
            pos += 1
        if pos < n and text[pos] == "}":
            return labels, pos + 1
        eq = text.find("=", pos)
        if eq == -1 or eq + 1 >= n or text[eq + 1] != '"':
            raise ParseError(f"bad labels in {line!r}")
        key = text[pos:eq].strip()
        pos = eq + 2
        value: list[str] = []
        while True:
            if pos >= n:
                raise ParseError(f"unterminated label value in {line!r}")
            c = text[pos]
            if c == "\\" and pos + 1 < n:
                nxt = text[pos + 1]
                value.append("\n" if nxt == "n" else nxt)
                pos += 2
            elif c == '"':
                pos += 1
                break
            else:
                value.append(c)
                pos += 1
        labels[key] = "".join(value)


def parse_text(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition (0.0.4); comments and blank lines skipped."""
    out: list[Sample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        brace = line.find("{")
        space = line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            name = line[:brace]
            labels, end = _parse_labels(line, brace + 1, line)
            rest = line[end:].split()
        else:
            name, *rest = line.split()
            labels = {}
        if not rest:
            raise ParseError(f"no value in {line!r}")
        try:
            value = float(rest[0])
        except ValueError:
            raise ParseError(f"bad value in {line!r}") from None
        out.append(Sample(name=name, labels=labels, value=value))
    return out


def parent_of_dst(dst: str, *, namespace: str) -> str | None:
    """``web.emojivoto.svc.cluster.local:80`` (or ``web``, ``web.emojivoto``, ...) ->
    ``service/emojivoto/web:80``; a bare name is in the client's `namespace`. None when
    `dst` names no Service."""
    host, sep, port_text = dst.strip().lower().rpartition(":")
    if not sep or not port_text.isdigit():
        host, port = dst.strip().lower(), DEFAULT_HTTP_PORT
    else:
        port = int(port_text)
    labels = host.rstrip(".").split(".")
    if not all(labels):
        return None
    if len(labels) == 1:
        name, ns = labels[0], namespace
    elif len(labels) == 2 or (
        len(labels) >= 3 and tuple(labels[2:]) == CLUSTER_SUFFIX[: len(labels) - 2]
    ):
        name, ns = labels[0], labels[1]
    else:
        return None
    if not ns:
        return None
    return f"service/{ns}/{name}:{port}"


@dataclass(frozen=True, slots=True, order=True)
class RouteKey:
    parent: str | None
    """``service/NS/NAME:PORT``; None when the series' ``dst`` names no Service."""
    rule: str
    """``rt_route``: the IR rule name ("" = no rule matched)."""


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Prometheus `histogram_quantile` over cumulative ``(upper_bound, count)`` buckets
    sorted by bound, the last one ``+Inf``. NaN without observations."""
    if not buckets or not math.isinf(buckets[-1][0]):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    total = buckets[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    b = next((i for i, (_, c) in enumerate(buckets[:-1]) if c >= rank), len(buckets) - 1)
    if b == len(buckets) - 1:
        return buckets[-2][0] if len(buckets) > 1 else math.nan
    end, count = buckets[b]
    if b == 0 and end <= 0:
        return end
    start = 0.0
    if b > 0:
        start = buckets[b - 1][0]
        count -= buckets[b - 1][1]
        rank -= buckets[b - 1][1]
    if count <= 0:
        return end
    return start + (end - start) * (rank / count)


@dataclass(slots=True)
class RouteStats:
    """One route's deltas over the window (summed over every scraped proxy)."""

    success: float = 0.0
    failure: float = 0.0
    rps: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)
    """Cumulative count delta by upper bound (``+Inf`` included)."""
    actual_success: float = 0.0
    """Attempts (retries included, ``route_actual_response_total``) that succeeded."""
    actual_failure: float = 0.0
    actual_rps: float = 0.0

    @property
    def actual_total(self) -> float:
        return self.actual_success + self.actual_failure

    @property
    def actual_success_rate(self) -> float | None:
        return self.actual_success / self.actual_total if self.actual_total > 0 else None

    @property
    def total(self) -> float:
        return self.success + self.failure

    @property
    def success_rate(self) -> float | None:
        """In [0, 1]; None without responses."""
        return self.success / self.total if self.total > 0 else None

    def quantile(self, q: float) -> float | None:
        """Latency quantile in ms; None without observations."""
        v = histogram_quantile(q, sorted(self.buckets.items()))
        return None if math.isnan(v) else v


@dataclass(frozen=True, slots=True)
class Scrape:
    """One target's exposition, fetched at `at` (monotonic seconds); `error` when it failed."""

    url: str
    at: float
    text: str = ""
    error: str = ""


def _series_id(s: Sample) -> tuple[str, tuple[tuple[str, str], ...]]:
    return s.name, tuple(sorted(s.labels.items()))


def _route_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], Sample]:
    return {
        _series_id(s): s
        for s in parse_text(text)
        if s.name in (RESPONSES, ACTUAL_RESPONSES, LATENCY_BUCKETS)
        and s.labels.get("direction") == "outbound"
    }


def _key(s: Sample) -> RouteKey:
    labels = s.labels
    parent = parent_of_dst(labels.get("dst", ""), namespace=labels.get("namespace", ""))
    return RouteKey(parent=parent, rule=labels.get("rt_route", ""))


def route_deltas(before: str, after: str, *, seconds: float) -> dict[RouteKey, RouteStats]:
    """Per-route stats of one target between two scrapes `seconds` apart."""
    return _deltas(_route_samples(before), _route_samples(after), seconds=seconds, key=_key)


def _deltas(
    old: Mapping[tuple[str, tuple[tuple[str, str], ...]], Sample],
    new: Mapping[tuple[str, tuple[tuple[str, str], ...]], Sample],
    *,
    seconds: float,
    key: Callable[[Sample], K],
) -> dict[K, RouteStats]:
    out: dict[K, RouteStats] = {}
    for sid, s in new.items():
        prev = old.get(sid)
        delta = s.value if prev is None or s.value < prev.value else s.value - prev.value
        st = out.setdefault(key(s), RouteStats())
        if s.name == ACTUAL_RESPONSES:
            if s.labels.get("classification") == "success":
                st.actual_success += delta
            else:
                st.actual_failure += delta
        elif s.name.endswith("response_total"):
            if s.labels.get("classification") == "success":
                st.success += delta
            else:
                st.failure += delta
        else:
            le = float(s.labels.get("le", "+Inf"))
            st.buckets[le] = st.buckets.get(le, 0.0) + delta
    for st in out.values():
        st.rps = st.total / seconds if seconds > 0 else 0.0
        st.actual_rps = st.actual_total / seconds if seconds > 0 else 0.0
    return out


def route_stats_of_vectors(
    samples: Iterable[tuple[str, Mapping[str, str], float]], *, seconds: float
) -> dict[RouteKey, RouteStats]:
    """The same stats from increases Prometheus already computed: ``(metric, labels,
    increase over `seconds`)`` of the route families (``sum(increase(...[W])) by (namespace,
    dst, rt_route, classification | le)``)."""
    new = {}
    for name, labels, value in samples:
        sample = Sample(name=name, labels=labels, value=value)
        new[_series_id(sample)] = sample
    return _deltas({}, new, seconds=seconds, key=_key)


def inbound_deltas(before: str, after: str, *, seconds: float) -> RouteStats:
    """What one proxy's inbound side answered between two scrapes: the legacy
    ``response_total`` / ``response_latency_ms`` families, ``direction="inbound"``."""

    def pick(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], Sample]:
        return {
            _series_id(s): s
            for s in parse_text(text)
            if s.name in ("response_total", "response_latency_ms_bucket")
            and s.labels.get("direction") == "inbound"
        }

    got = _deltas(pick(before), pick(after), seconds=seconds, key=lambda s: "")
    return got.get("", RouteStats())


def inbound_stats(before: Sequence[Scrape], after: Sequence[Scrape]) -> dict[str, RouteStats]:
    """`inbound_deltas` by URL, for the targets scraped successfully both times."""
    first = {s.url: s for s in before}
    out: dict[str, RouteStats] = {}
    for s in after:
        b = first.get(s.url)
        if b is None or b.error or s.error:
            continue
        with contextlib.suppress(ParseError):
            out[s.url] = inbound_deltas(b.text, s.text, seconds=s.at - b.at)
    return out


def merge(parts: Iterable[Mapping[K, RouteStats]]) -> dict[K, RouteStats]:
    """Sum per-target stats (counts, rates and buckets)."""
    out: dict[K, RouteStats] = {}
    for part in parts:
        for key, st in part.items():
            acc = out.setdefault(key, RouteStats())
            acc.success += st.success
            acc.failure += st.failure
            acc.rps += st.rps
            acc.actual_success += st.actual_success
            acc.actual_failure += st.actual_failure
            acc.actual_rps += st.actual_rps
            for le, c in st.buckets.items():
                acc.buckets[le] = acc.buckets.get(le, 0.0) + c
    return out


def route_stats(
    before: Sequence[Scrape], after: Sequence[Scrape]
) -> tuple[dict[RouteKey, RouteStats], list[str]]:
    """Stats over every target scraped successfully both times, and one error message per
    target that was not (or whose exposition did not parse)."""
    parts, errors = per_target(
        before, after, lambda b, s: route_deltas(b.text, s.text, seconds=s.at - b.at)
    )
    return merge(parts), errors


R = TypeVar("R")


def per_target(
    before: Sequence[Scrape], after: Sequence[Scrape], fn: Callable[[Scrape, Scrape], R]
) -> tuple[list[R], list[str]]:
    """`fn(before, after)` of every target scraped successfully both times, and one error
    per target that was not (or whose exposition did not parse: `ParseError`)."""
    first = {s.url: s for s in before}
    out: list[R] = []
    errors: list[str] = []
    for s in after:
        b = first.get(s.url)
        failed = s.error or (b.error if b is not None else "not scraped before")
        if failed or b is None:
            errors.append(f"{s.url}: {failed}")
            continue
        try:
            out.append(fn(b, s))
        except ParseError as exc:
            errors.append(f"{s.url}: {exc}")
    return out, errors


def lookup(stats: Mapping[RouteKey, RouteStats], *, parent: str, rule: str) -> RouteStats | None:
    """The stats of `rule` under `parent` (series whose ``dst`` named no Service count for
    every parent of the rule)."""
    exact = stats.get(RouteKey(parent=parent, rule=rule))
    loose = stats.get(RouteKey(parent=None, rule=rule))
    if exact is None or loose is None:
        return exact or loose
    return merge([{RouteKey(parent, rule): exact}, {RouteKey(parent, rule): loose}])[
        RouteKey(parent, rule)
    ]


# --------------------------------------------------------------------------- scraping


def metrics_url(text: str) -> str:
    """``HOST:PORT`` or ``http://HOST:PORT`` -> ``http://HOST:PORT/metrics``; a URL with a
    path is kept as it is."""
    url = text if "://" in text else f"http://{text}"
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    if not slash or not path:
        return f"{scheme}://{host}/metrics"
    return url


def _fetch(url: str, timeout: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body: bytes = resp.read()
    return body.decode("utf-8", errors="replace")


async def scrape(url: str, *, timeout: float = 2.0) -> Scrape:
    """One GET of `url`; a failure is a `Scrape` with `error`, never an exception."""
    try:
        async with asyncio.timeout(timeout + 0.5):
            text = await asyncio.to_thread(_fetch, url, timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        return Scrape(url=url, at=time.monotonic(), error=str(exc) or type(exc).__name__)
    return Scrape(url=url, at=time.monotonic(), text=text)


async def scrape_all(urls: Sequence[str], *, timeout: float = 2.0) -> list[Scrape]:
    return list(await asyncio.gather(*(scrape(u, timeout=timeout) for u in urls)))


async def live_stats(
    urls: Sequence[str], *, window: float, timeout: float = 2.0
) -> tuple[dict[RouteKey, RouteStats], list[str]]:
    """Scrape every URL, wait `window` seconds, scrape again: stats and scrape errors."""
    before, after = await live_scrapes(urls, window=window, timeout=timeout)
    return route_stats(before, after)


async def live_scrapes(
    urls: Sequence[str], *, window: float, timeout: float = 2.0
) -> tuple[list[Scrape], list[Scrape]]:
    """Every URL scraped, then again `window` seconds later."""
    before = await scrape_all(urls, timeout=timeout)
    await asyncio.sleep(window)
    return before, await scrape_all(urls, timeout=timeout)
