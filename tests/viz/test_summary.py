"""`turnout.viz.summary` and `source.ScrapeSource`: rows from instant vectors, no processes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest

from turnout.viz.prom import VectorSample
from turnout.viz.source import ScrapeSource
from turnout.viz.stats import Scrape
from turnout.viz.summary import authority_service, edge_rows, secured_cell, stat_rows
from turnout.viz.targets import parse_target

OUT = {"direction": "outbound", "namespace": "loadgen", "deployment": "vote-bot"}


@dataclass
class FakeSource:
    """Answers `increase` with fixed series, filtered and summed like Prometheus would."""

    series: Mapping[str, list[dict[str, str | float]]]
    window_s: float = 10.0

    async def increase(
        self, metric: str, where: Mapping[str, str], by: Sequence[str]
    ) -> list[VectorSample]:
        sums: dict[tuple[str, ...], float] = {}
        for s in self.series.get(metric, []):
            labels = {k: str(v) for k, v in s.items() if k != "value"}
            if all(labels.get(k, "") == v for k, v in where.items()):
                key = tuple(labels.get(b, "") for b in by)
                sums[key] = sums.get(key, 0.0) + float(s["value"])
        return [
            VectorSample(labels={b: v for b, v in zip(by, k, strict=True) if v}, value=v, at=0)
            for k, v in sums.items()
        ]

    current = increase


def responses(dst: str, ok: float, bad: float) -> list[dict[str, str | float]]:
    base = {**OUT, "authority": "web.emojivoto", "dst_namespace": "emojivoto", "dst_service": dst}
    return [
        {**base, "classification": "success", "value": ok},
        {**base, "classification": "failure", "value": bad},
    ]


async def test_a_service_counts_its_own_endpoints_and_the_calls_its_authority_names() -> None:
    source = FakeSource(
        {"response_total": [*responses("web-v1", 90, 10), *responses("web-v2", 10, 0)]}
    )
    rows = await stat_rows(source, parse_target("svc", namespace="emojivoto"))
    got = {r.name: (r.success, r.failure, r.rps) for r in rows}
    assert got == {"web": (100, 10, 11.0), "web-v1": (90, 10, 10.0), "web-v2": (10, 0, 1.0)}
    [web] = [r for r in rows if r.name == "web"]
    assert web.success_rate == pytest.approx(100 / 110) and web.quantile(0.5) is None


async def test_edges_name_client_workload_and_service_with_the_tls_cell() -> None:
    plain = {**OUT, "dst_namespace": "emojivoto", "dst_service": "web-v1", "tls": "no_identity",
             "no_tls_reason": "not_provided_by_service_discovery", "value": 3}  # fmt: skip
    source = FakeSource({"request_total": [plain]})
    [edge] = await edge_rows(source, parse_target("deploy", namespace="x", all_namespaces=True))
    assert (edge.src, edge.dst, edge.secured) == (
        "vote-bot",
        "web-v1",
        "Not Provided By Service Discovery",
    )
    assert await edge_rows(source, parse_target("ns/elsewhere", namespace="x")) == []


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("web.emojivoto", ("emojivoto", "web")),
        ("web.emojivoto.svc.cluster.local:80", ("emojivoto", "web")),
        ("web:8080", ("loadgen", "web")),
        ("www.example.com", None),
        ("unknown", None),
    ],
)
def test_authority_names_a_service(authority: str, expected: tuple[str, str] | None) -> None:
    assert authority_service(authority, "loadgen") == expected


def test_secured_is_a_check_for_mtls_else_the_reason_title_cased() -> None:
    assert secured_cell({"tls": "true"}) == "√"
    assert secured_cell({"tls": "no_identity", "no_tls_reason": "loopback"}) == "Loopback"
    assert secured_cell({"tls": "disabled"}) == "Disabled"


async def test_the_scrape_source_counts_deltas_and_a_reset_counter_whole() -> None:
    src = ScrapeSource(["a"], window_s=2.0)
    src.loaded = True
    src.before = src._samples([Scrape("a", 0, 'x{p="1"} 10\nx{p="2"} 50\n')], record=False)
    src.after = src._samples(
        [Scrape("a", 2, 'x{p="1"} 14\nx{p="2"} 5\n'), Scrape("b", 2, error="refused")], record=True
    )
    got = {s.labels["p"]: s.value for s in await src.increase("x", {}, ["p"])}
    assert got == {"1": 4.0, "2": 5.0}  # 50 -> 5: reset, the new value counts whole
    assert src.errors == ["b: refused"] and src.scraped == 1
