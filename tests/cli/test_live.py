"""`mesh routes --live`: parsing, deltas, Prometheus quantiles and the table, on synthetic
scrapes with hand-computed numbers; then the scraper and the CLI against a local server."""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from turnout.cli import live, views
from turnout.cli.main import main
from turnout.engine.pipeline import compile_files
from turnout.proxy.metrics import ProxyMetrics
from turnout.viz import stats as viz

ROOT = Path(__file__).resolve().parents[2]
EMOJIVOTO = ROOT / "examples" / "emojivoto"
WEB = "service/emojivoto/web:80"
WEB_API = "httproute/emojivoto/web/rule/1"


def hist(labels: str, cumulative: dict[str, int]) -> str:
    return "".join(
        f'route_response_latency_ms_bucket{{{labels},le="{le}"}} {n}\n'
        for le, n in cumulative.items()
    )


def responses(labels: str, success: int, failure: int) -> str:
    return (
        f'route_response_total{{{labels},status_code="200",classification="success"}} {success}\n'
        f'route_response_total{{{labels},status_code="500",classification="failure"}} {failure}\n'
    )


LABELS = f'direction="outbound",namespace="loadgen",dst="web.emojivoto",rt_route="{WEB_API}"'


def test_parse_text_reads_labels_with_escapes_and_skips_comments() -> None:
    text = '# HELP x y\n# TYPE x counter\nx{a="1",b="q\\"uo\\\\te\\n"} 3\nplain 4.5 1700000000\n\n'
    got = viz.parse_text(text)
    assert got[0].name == "x" and dict(got[0].labels) == {"a": "1", "b": 'q"uo\\te\n'}
    assert got[0].value == 3
    assert (got[1].name, dict(got[1].labels), got[1].value) == ("plain", {}, 4.5)
    with pytest.raises(viz.ParseError):
        viz.parse_text('x{a="1} 3\n')


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.05, 0.5),  # rank 5 in [0, 1]: 0 + 1 * 5/10
        (0.25, 2.5),  # rank 25 in (1, 5]: 1 + 4 * (25 - 10) / 40
        (0.5, 5.0),  # rank 50: the top of (1, 5]
        (0.7, 7.5),  # rank 70 in (5, 10]: 5 + 5 * (70 - 50) / 40
        (0.99, 10.0),  # rank 99 falls in +Inf: the highest finite bound
    ],
)
def test_histogram_quantile_matches_prometheus(q: float, expected: float) -> None:
    buckets = [(1.0, 10.0), (5.0, 50.0), (10.0, 90.0), (math.inf, 100.0)]
    assert viz.histogram_quantile(q, buckets) == pytest.approx(expected)


def test_histogram_quantile_without_observations_is_nan() -> None:
    assert math.isnan(viz.histogram_quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]))


def test_deltas_give_success_rate_rps_and_latency() -> None:
    before = responses(LABELS, 100, 10) + hist(LABELS, {"1": 10, "5": 50, "10": 100, "+Inf": 110})
    after = responses(LABELS, 195, 15) + hist(
        LABELS, {"1": 20, "5": 100, "10": 180, "+Inf": 210}
    )  # window: 95 successes, 5 failures; buckets 10 / 40 / 30 / 20 (cumulative 10/50/80/100)
    stats = viz.route_deltas(before, after, seconds=10.0)
    st = stats[viz.RouteKey(parent=WEB, rule=WEB_API)]
    assert (st.success, st.failure) == (95, 5)
    assert live.stats_cells(st) == ["95.00%", "10.0rps", "5ms", "10ms", "10ms"]
    # p50: rank 50 = top of (1, 5] -> 5; p95 and p99 fall in +Inf -> 10.
    assert st.quantile(0.25) == pytest.approx(1 + 4 * 15 / 40)
    assert st.quantile(0.7) == pytest.approx(5 + 5 * 20 / 30)


def test_a_counter_that_went_down_was_reset() -> None:
    before = responses(LABELS, 500, 0)
    after = responses(LABELS, 30, 3)
    st = viz.route_deltas(before, after, seconds=3.0)[viz.RouteKey(WEB, WEB_API)]
    assert (st.success, st.failure, st.rps) == (30, 3, 11.0)


def test_inbound_series_and_other_families_are_ignored() -> None:
    inbound = LABELS.replace('"outbound"', '"inbound"')
    st = viz.route_deltas("", responses(inbound, 5, 0) + "request_total 9\n", seconds=1.0)
    assert st == {}


def test_stats_from_real_proxy_metrics() -> None:
    m = ProxyMetrics(namespace="loadgen", workload_kind="deployment", workload_name="bot")
    before = m.render()
    rk = m.route(direction="outbound", dst="web.emojivoto.svc.cluster.local:80", rt_route=WEB_API)
    for i in range(100):
        m.route_request(rk)
        failed = i < 5
        m.route_response(rk, status_code=500 if failed else 200, latency_ms=3 if i < 50 else 30)
    stats = viz.route_deltas(before, m.render(), seconds=4.0)
    st = stats[viz.RouteKey(WEB, WEB_API)]
    # 50 observations of 3 ms (bucket (2, 3]) and 50 of 30 ms (bucket (20, 30]):
    # p50 = rank 50 = top of (2, 3] -> 3; p95: rank 95 in (20, 30]: 20 + 10 * 45/50 = 29.
    assert live.stats_cells(st) == ["95.00%", "25.0rps", "3ms", "29ms", "29ms"]


@pytest.mark.parametrize(
    ("dst", "ns", "parent"),
    [
        ("web.emojivoto.svc.cluster.local:80", "x", "service/emojivoto/web:80"),
        ("web.emojivoto", "x", "service/emojivoto/web:80"),
        ("web.emojivoto.svc:8080", "x", "service/emojivoto/web:8080"),
        ("web", "emojivoto", "service/emojivoto/web:80"),
        ("www.example.com", "x", None),
    ],
)
def test_parent_of_dst(dst: str, ns: str, parent: str | None) -> None:
    assert viz.parent_of_dst(dst, namespace=ns) == parent


def test_live_table_appends_columns_to_the_routes_table() -> None:
    table = compile_files([str(EMOJIVOTO / "mesh")]).result.table
    stats = viz.route_deltas("", responses(LABELS, 19, 1), seconds=2.0)
    text = live.live_table(views.route_rows(table), stats)
    header, *lines = text.splitlines()
    assert header.split()[-5:] == list(live.LIVE_COLUMNS)
    api = [line for line in lines if "PathPrefix /api" in line]
    assert len(api) == 1 and api[0].split()[-5:] == ["95.00%", "10.0rps", "-", "-", "-"]
    others = [line for line in lines if "PathPrefix /api" not in line]
    assert all(line.split()[-5:] == ["-"] * 5 for line in others)


def test_metrics_url_accepts_admin_addresses() -> None:
    assert viz.metrics_url("127.0.0.1:4191") == "http://127.0.0.1:4191/metrics"
    assert viz.metrics_url("http://h:1/") == "http://h:1/metrics"
    assert viz.metrics_url("http://h:1/other") == "http://h:1/other"


class _Counting(BaseHTTPRequestHandler):
    """Each GET answers 10 more successes on the web /api route than the one before."""

    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        body = responses(LABELS, 10 * type(self).hits, 0).encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain; version=0.0.4")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def metrics_server() -> Iterator[str]:
    _Counting.hits = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_live_stats_scrapes_twice_and_reports_unreachable_targets(
    metrics_server: str,
) -> None:
    url = viz.metrics_url(metrics_server)
    stats, errors = await viz.live_stats([url, "http://127.0.0.1:1/metrics"], window=0.2)
    st = stats[viz.RouteKey(WEB, WEB_API)]
    assert st.success == 10 and 0 < st.rps <= 10 / 0.2
    assert len(errors) == 1 and errors[0].startswith("http://127.0.0.1:1/metrics: ")


def test_cli_routes_live(metrics_server: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    argv = ["routes", "-f", str(EMOJIVOTO), "--live", "--admin", metrics_server, "--window", "0.2"]
    assert main(argv, stdout=out, stderr=err) == 0, err.getvalue()
    [api] = [line for line in out.getvalue().splitlines() if "PathPrefix /api" in line]
    assert api.split()[-5] == "100.00%"


def test_cli_routes_live_needs_a_metrics_url() -> None:
    err = io.StringIO()
    assert main(["routes", "-f", str(EMOJIVOTO), "--live"], stdout=io.StringIO(), stderr=err) == 2
    assert "--metrics" in err.getvalue()
