"""Where the viz commands' numbers come from: one interface, two sources.

```
Source.increase(metric, where, by)   sum(increase(metric{where}[W])) by (by)   ─┐
Source.current(metric, where, by)    sum(metric{where}) by (by)                 ─┴─> [VectorSample]

PromSource(url, window_s)    the PromQL above, asked of Prometheus (`prom.instant_query`)
ScrapeSource(urls, window_s) every proxy's /metrics scraped twice, window_s apart
                             (`stats.scrape_all`); increase = the counter deltas, a counter
                             that went down counting whole (Prometheus' reset rule)
```

Both answer the same instant vectors, so the row builders (`summary.py`) are pure functions
over them, whichever source fed them. The scrape source waits its window once, on its first
question (`load`), then answers every question from the same two scrapes. `where` holds
exact label matchers; `by` the labels to keep. Not here: which PromQL linkerd-viz asks
(`summary.py`), the control plane's address book (`cli.viz_source`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from turnout.viz.prom import VectorSample, instant_query
from turnout.viz.stats import ParseError, Sample, Scrape, parse_text, scrape_all


class Source(Protocol):
    @property
    def window_s(self) -> float:
        """The window `increase` covers, seconds."""

    async def increase(
        self, metric: str, where: Mapping[str, str], by: Sequence[str]
    ) -> list[VectorSample]: ...

    async def current(
        self, metric: str, where: Mapping[str, str], by: Sequence[str]
    ) -> list[VectorSample]: ...


def selector(metric: str, where: Mapping[str, str]) -> str:
    pairs = ",".join(f'{k}="{v}"' for k, v in sorted(where.items()))
    return f"{metric}{{{pairs}}}"


def window_text(seconds: float) -> str:
    """PromQL's duration: ``60s``."""
    return f"{round(seconds * 1000)}ms" if seconds % 1 else f"{int(seconds)}s"


@dataclass(frozen=True, slots=True)
class PromSource:
    url: str
    window_s: float

    async def increase(
        self, metric: str, where: Mapping[str, str], by: Sequence[str]
    ) -> list[VectorSample]:
        promql = (
            f"sum(increase({selector(metric, where)}[{window_text(self.window_s)}]))"
            f" by ({', '.join(by)})"
        )
        return await instant_query(self.url, promql)

    async def current(
        self, metric: str, where: Mapping[str, str], by: Sequence[str]
    ) -> list[VectorSample]:
        promql = f"sum({selector(metric, where)}) by ({', '.join(by)})"
        return await instant_query(self.url, promql)


SeriesId = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(slots=True)
class ScrapeSource:
    urls: Sequence[str]
    window_s: float
    timeout_s: float = 2.0
    before: dict[SeriesId, Sample] = field(default_factory=dict)
    after: dict[SeriesId, Sample] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    """``URL: why`` of every scrape that failed (or did not parse)."""
    scraped: int = 0
    """Proxies scraped successfully both times."""
    loaded: bool = False

    async def load(self) -> None:
        if self.loaded:
            return
        self.loaded = True
        first = await scrape_all(self.urls, timeout=self.timeout_s)
        await asyncio.sleep(self.window_s)
        second = await scrape_all(self.urls, timeout=self.timeout_s)
        self.before = self._samples(first, record=False)
        self.after = self._samples(second, record=True)

    def _samples(self, scrapes: Sequence[Scrape], *, record: bool) -> dict[SeriesId, Sample]:
        out: dict[SeriesId, Sample] = {}
        for s in scrapes:
            if s.error:
                if record:
                    self.errors.append(f"{s.url}: {s.error}")
                continue
            try:
                samples = parse_text(s.text)
            except ParseError as exc:
                if record:
                    self.errors.append(f"{s.url}: {exc}")
                continue
            if record:
                self.scraped += 1
            for sample in samples:
                # the URL keeps two proxies' identical series apart
                labels = tuple(sorted({**sample.labels, "__url": s.url}.items()))
                out[(sample.name, labels)] = sample
        return out

    async def increase(
        self, metric: str, where: Mapping[str, str], by: Sequence[str]
    ) -> list[VectorSample]:
        await self.load()
        sums: dict[tuple[str, ...], float] = {}
        for sid, s in self.after.items():
            if s.name != metric or not _selected(s.labels, where):
                continue
            prev = self.before.get(sid)
            delta = s.value if prev is None or s.value < prev.value else s.value - prev.value
            key = tuple(s.labels.get(b, "") for b in by)
            sums[key] = sums.get(key, 0.0) + delta
        return _vector(sums, by)

    async def current(
        self, metric: str, where: Mapping[str, str], by: Sequence[str]
    ) -> list[VectorSample]:
        await self.load()
        sums: dict[tuple[str, ...], float] = {}
        for s in self.after.values():
            if s.name == metric and _selected(s.labels, where):
                key = tuple(s.labels.get(b, "") for b in by)
                sums[key] = sums.get(key, 0.0) + s.value
        return _vector(sums, by)


def _selected(labels: Mapping[str, str], where: Mapping[str, str]) -> bool:
    return all(labels.get(k, "") == v for k, v in where.items())


def _vector(sums: Mapping[tuple[str, ...], float], by: Sequence[str]) -> list[VectorSample]:
    # Prometheus drops empty labels from a result; so do we, so both sources look alike
    return [
        VectorSample(labels={b: v for b, v in zip(by, key, strict=True) if v}, value=value, at=0.0)
        for key, value in sums.items()
    ]
