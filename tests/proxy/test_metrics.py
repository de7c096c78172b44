"""ProxyMetrics: the exposition parsed back strictly, Linkerd's names/buckets/labels, and the
series Flagger's Linkerd queries (fixtures/common/metric-queries.yaml) select."""

from __future__ import annotations

import math
import re
from typing import Literal

import pytest
import yaml

from tests.conftest import REFERENCE, require_reference
from tests.proxy.exposition import (
    Family,
    Labels,
    mk_metrics,
    parse_exposition,
    serve,
    value,
)
from turnout.proxy.families import REQUEST_TIMEOUT, RESPONSE_HEADERS_TIMEOUT, classify
from turnout.proxy.metrics import ProxyMetrics
from turnout.proxy.outbound_tls import NOT_PROVIDED, server_tls
from turnout.proxy.registry import LATENCY_BOUNDS_MS
from turnout.proxy.transport.messages import NO_TLS_FROM_REMOTE, client_tls

METRIC_QUERIES = REFERENCE / "flagger" / "fixtures" / "common" / "metric-queries.yaml"
LINKERD_LE = [
    *("1", "2", "3", "4", "5", "10", "20", "30", "40", "50", "100", "200", "300", "400"),
    *("500", "1000", "2000", "3000", "4000", "5000", "10000", "20000", "30000", "40000"),
    *("50000", "+Inf"),
]

# -- format -----------------------------------------------------------------------------------


def test_every_family_parses_strictly_with_help_and_type() -> None:
    m = mk_metrics()
    serve(m, 200, 503)
    serve(m, 200, direction="outbound")
    rk = m.route(direction="outbound", dst="backend.test.svc.cluster.local:80", rt_route="r")
    m.route_request(rk)
    m.route_actual_request(rk)
    m.route_actual_response(rk, status_code=503)
    m.route_response(rk, status_code=200, latency_ms=12)
    pk = m.policy_route(
        parent_namespace="test", parent_name="backend", parent_port=80,
        route_namespace="test", route_name="backend",
    )  # fmt: skip
    m.route_status(pk, status_code=200)
    bk = m.policy_backend(pk, backend_namespace="test", backend_name="backend", backend_port=80)
    m.backend_request(bk)
    m.backend_response(bk, status_code=200)
    tk = m.tcp(direction="inbound", peer="src", target_addr=("10.1.0.5", 9898))
    m.tcp_open(tk)
    m.tcp_close(tk, read=1, write=2)

    fams = parse_exposition(m.render())

    assert {name: f.type for name, f in fams.items()} == {
        "request_total": "counter",
        "response_latency_ms": "histogram",
        "response_total": "counter",
        "route_request_total": "counter",
        "route_response_latency_ms": "histogram",
        "route_response_total": "counter",
        "route_actual_request_total": "counter",
        "route_actual_response_total": "counter",
        "outbound_http_route_request_statuses_total": "counter",
        "outbound_http_route_backend_requests_total": "counter",
        "outbound_http_route_backend_response_statuses_total": "counter",
        "outbound_http_route_retry_requests_total": "counter",
        "outbound_http_route_retry_successes_total": "counter",
        "outbound_http_route_retry_limit_exceeded_total": "counter",
        "outbound_http_route_retry_overflow_total": "counter",
        "tcp_open_total": "counter",
        "tcp_open_connections": "gauge",
        "tcp_read_bytes_total": "counter",
        "tcp_write_bytes_total": "counter",
        "tcp_close_total": "counter",
        "process_start_time_seconds": "gauge",
        "process_resident_memory_bytes": "gauge",
    }
    assert value(fams, "process_start_time_seconds") == 1.5
    assert value(fams, "process_resident_memory_bytes") > 0


def test_every_series_starts_with_direction_and_carries_the_workload_labels() -> None:
    m = mk_metrics()
    serve(m, 200)
    serve(m, 200, direction="outbound")
    m.tcp_open(m.tcp(direction="outbound", peer="dst", target_addr=("10.1.0.9", 8080)))

    for fam in parse_exposition(m.render()).values():
        for _, labels, _ in fam.samples:
            names = dict(labels)
            if not fam.name.startswith("process_"):
                assert labels[0][0] == "direction", fam.name
            assert (names["namespace"], names["deployment"]) == ("test", "podinfo")
            assert names["pod"] == "podinfo-7d9f-abc12"


def test_label_names_are_fixed_per_family_and_direction() -> None:
    m = mk_metrics()
    serve(m, 200, 404, 503)
    serve(m, 200, 502, direction="outbound")
    key = m.http(direction="inbound", authority="x", target_addr=("10.1.0.5", 9898))
    m.response(key, status_code=None, latency_ms=0, error="UNEXPECTED")

    fams = parse_exposition(m.render())
    for fam in fams.values():
        if fam.name.startswith("process_"):
            continue
        shapes: dict[tuple[str, str], set[tuple[str, ...]]] = {}
        for name, labels, _ in fam.samples:
            shapes.setdefault((name, dict(labels)["direction"]), set()).add(
                tuple(k for k, _ in labels)
            )
        assert all(len(s) == 1 for s in shapes.values()), (fam.name, shapes)
    outbound = dict(fams["response_total"].samples[-1][1])
    assert outbound["authority"] == "backend.test.svc.cluster.local:80"
    assert (outbound["dst_namespace"], outbound["dst_service"]) == ("test", "backend")


def test_label_values_are_escaped_and_read_back_unchanged() -> None:
    m = mk_metrics(pod='we"ird\\pod\nname')
    tricky = 'a"b\\c\nd'
    m.request(
        m.http(
            direction="outbound",
            authority=tricky,
            target_addr=("::1", 80),
            dst_namespace="test",
            dst_service="x",
        )
    )

    text = m.render()
    (_, labels, _), *_ = parse_exposition(text)["request_total"].samples

    assert dict(labels)["authority"] == tricky
    assert dict(labels)["pod"] == 'we"ird\\pod\nname'
    assert dict(labels)["target_addr"] == "[::1]:80"
    assert 'authority="a\\"b\\\\c\\nd"' in text


def test_render_is_stable_whatever_the_order_of_traffic() -> None:
    a, b = mk_metrics(), mk_metrics()
    serve(a, 200, 503, 404)
    serve(a, 200, direction="outbound")
    serve(b, 200, direction="outbound")
    serve(b, 404, 503, 200)

    def strip(text: str) -> str:
        return "\n".join(x for x in text.splitlines() if "process_resident" not in x)

    assert strip(a.render()) == strip(b.render())


# -- histogram --------------------------------------------------------------------------------


def test_latency_bucket_bounds_are_exactly_linkerds() -> None:
    m = mk_metrics()
    serve(m, 200)

    fams = parse_exposition(m.render())

    assert [str(b) for b in LATENCY_BOUNDS_MS] == LINKERD_LE[:-1]
    for fam in ("response_latency_ms", "route_response_latency_ms"):
        rk = m.route(direction="inbound", dst="podinfo.test.svc.cluster.local:9898", rt_route="")
        m.route_response(rk, status_code=200, latency_ms=1)
        fams = parse_exposition(m.render())
        les = [dict(lb)["le"] for n, lb, _ in fams[fam].samples if n.endswith("_bucket")]
        assert les == LINKERD_LE


@pytest.mark.parametrize(
    ("latency_ms", "le"),
    [
        pytest.param(0, "1", id="zero-in-first-bucket"),
        pytest.param(1, "1", id="bound-is-inclusive"),
        pytest.param(1.99, "1", id="truncated-to-whole-ms"),
        pytest.param(2, "2", id="two"),
        pytest.param(5.5, "5", id="truncated-onto-a-bound"),
        pytest.param(6, "10", id="between-5-and-10"),
        pytest.param(50_000, "50000", id="last-finite-bound"),
        pytest.param(50_001, "+Inf", id="over-the-top"),
    ],
)
def test_an_observation_lands_in_the_first_bucket_whose_bound_is_not_below_it(
    latency_ms: float, le: str
) -> None:
    m = mk_metrics()
    serve(m, 200, latency=latency_ms)

    fams = parse_exposition(m.render())
    buckets = {
        dict(lb)["le"]: v
        for n, lb, v in fams["response_latency_ms"].samples
        if n.endswith("_bucket")
    }

    first = LINKERD_LE.index(le)
    assert all(buckets[b] == 0 for b in LINKERD_LE[:first])
    assert all(buckets[b] == 1 for b in LINKERD_LE[first:])
    assert value(fams, "response_latency_ms_sum") == int(latency_ms)


def test_buckets_are_cumulative_with_sum_and_count_per_status_code() -> None:
    m = mk_metrics()
    for ms in (0, 3, 3, 45, 250, 7000, 60_000):
        serve(m, 200, latency=ms)
    serve(m, 503, latency=12)

    fams = parse_exposition(m.render())

    ok = {"status_code": "200"}
    assert value(fams, "response_latency_ms_count", **ok) == 7
    assert value(fams, "response_latency_ms_sum", **ok) == 0 + 3 + 3 + 45 + 250 + 7000 + 60_000
    assert value(fams, "response_latency_ms_bucket", le="3", **ok) == 3
    assert value(fams, "response_latency_ms_bucket", le="50", **ok) == 4
    assert value(fams, "response_latency_ms_bucket", le="50000", **ok) == 6
    assert value(fams, "response_latency_ms_bucket", le="+Inf", **ok) == 7
    assert value(fams, "response_latency_ms_count", status_code="503") == 1


def test_no_latency_is_recorded_without_a_response() -> None:
    m = mk_metrics()
    key = m.http(direction="inbound", authority="", target_addr=("10.1.0.5", 9898))
    m.response(key, status_code=None, latency_ms=30_000, error=REQUEST_TIMEOUT)

    fams = parse_exposition(m.render())

    assert "response_latency_ms" not in fams
    assert value(fams, "response_total", status_code="", error=REQUEST_TIMEOUT) == 1


# -- labels and classification ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "grpc", "error", "expected"),
    [
        pytest.param(200, None, "", "success", id="2xx"),
        pytest.param(404, None, "", "success", id="4xx-is-not-a-failure"),
        pytest.param(500, None, "", "failure", id="5xx"),
        pytest.param(503, None, "", "failure", id="503"),
        pytest.param(200, 0, "", "success", id="grpc-ok"),
        pytest.param(200, 14, "", "failure", id="grpc-unavailable"),
        pytest.param(200, None, "UNEXPECTED", "failure", id="stream-error"),
        pytest.param(None, None, "UNEXPECTED", "failure", id="no-response"),
    ],
)
def test_responses_are_classified_like_linkerds_default_classes(
    status: int | None, grpc: int | None, error: str, expected: str
) -> None:
    m = mk_metrics()
    key = m.http(direction="inbound", authority="", target_addr=("10.1.0.5", 9898))
    m.response(key, status_code=status, latency_ms=1, grpc_status=grpc, error=error)

    fams = parse_exposition(m.render())
    (_, labels, count), *_ = fams["response_total"].samples

    assert classify(status, grpc, error) == expected
    assert count == 1
    assert (
        dict(labels).items()
        >= {
            "classification": expected,
            "status_code": "" if status is None else str(status),
            "grpc_status": "" if grpc is None else str(grpc),
            "error": error,
        }.items()
    )


def test_inbound_series_omit_authority_and_dst_labels_like_linkerd() -> None:
    m = mk_metrics()
    a = m.http(direction="inbound", authority="one:80", target_addr=("10.1.0.5", 9898))
    b = m.http(direction="inbound", authority="two:80", target_addr=("10.1.0.5", 9898))
    m.request(a)

    labels = dict(parse_exposition(m.render())["request_total"].samples[0][1])

    assert a is b, "authority must not split inbound series"
    assert "authority" not in labels
    assert not any(k.startswith("dst_") for k in labels)
    assert labels["target_addr"] == "10.1.0.5:9898"
    assert (labels["target_ip"], labels["target_port"], labels["tls"]) == (
        "10.1.0.5",
        "9898",
        "disabled",
    )


def test_keys_are_cached_per_label_combination() -> None:
    m = mk_metrics()
    args = {"direction": "outbound", "authority": "a:80", "target_addr": ("10.0.0.1", 80)}

    assert m.http(**args) is m.http(**args)  # type: ignore[arg-type]
    assert m.http(**args) is not m.http(**(args | {"target_addr": ("10.0.0.2", 80)}))  # type: ignore[arg-type]


def test_workload_kind_names_the_workload_label() -> None:
    m = ProxyMetrics(namespace="db", workload_kind="statefulset", workload_name="pg")
    serve(m, 200)

    labels = dict(parse_exposition(m.render())["request_total"].samples[0][1])

    assert labels["statefulset"] == "pg"
    assert "deployment" not in labels and "pod" not in labels
    with pytest.raises(ValueError, match="label name"):
        ProxyMetrics(namespace="db", workload_kind="stateful-set", workload_name="pg")


# -- route, policy and transport families -----------------------------------------------------


def test_route_actual_counts_every_attempt_and_effective_only_the_request() -> None:
    m = mk_metrics()
    rk = m.route(direction="outbound", dst="web.shop.svc.cluster.local:80", rt_route="rule/0")
    m.route_request(rk)
    for status in (503, 503, 200):
        m.route_actual_request(rk)
        m.route_actual_response(rk, status_code=status)
    m.route_response(rk, status_code=200, latency_ms=40)

    fams = parse_exposition(m.render())

    assert value(fams, "route_request_total", rt_route="rule/0") == 1
    assert value(fams, "route_actual_request_total", rt_route="rule/0") == 3
    assert value(fams, "route_actual_response_total", classification="failure") == 2
    assert value(fams, "route_response_total", classification="success") == 1
    assert value(fams, "route_response_total", classification="failure") == 0
    assert value(fams, "route_response_latency_ms_count", dst="web.shop.svc.cluster.local:80") == 1


def test_policy_route_families_count_timeouts_retries_and_backends() -> None:
    m = mk_metrics()
    pk = m.policy_route(
        parent_namespace="shop", parent_name="web", parent_port=80,
        route_namespace="shop", route_name="web", hostname="web.shop.svc.cluster.local",
    )  # fmt: skip
    bk = m.policy_backend(pk, backend_namespace="shop", backend_name="web-canary", backend_port=80)
    m.backend_request(bk)
    m.backend_response(bk, status_code=None, error=RESPONSE_HEADERS_TIMEOUT)
    m.retry(pk)
    m.backend_request(bk)
    m.backend_response(bk, status_code=200)
    m.retry_success(pk)
    m.route_status(pk, status_code=200)
    m.route_status(pk, status_code=None, error=REQUEST_TIMEOUT)
    m.route_status(pk, status_code=200, grpc_status=14)
    m.retry_limit_exceeded(pk)
    m.retry_overflow(pk)

    fams = parse_exposition(m.render())
    statuses = "outbound_http_route_request_statuses_total"

    assert value(fams, statuses, http_status="", error=REQUEST_TIMEOUT) == 1
    assert value(fams, statuses, http_status="200", error="", grpc_status="") == 1
    assert value(fams, statuses, grpc_status="UNAVAILABLE") == 1
    assert value(fams, "outbound_http_route_backend_requests_total", backend_name="web-canary") == 2
    assert (
        value(
            fams,
            "outbound_http_route_backend_response_statuses_total",
            error=RESPONSE_HEADERS_TIMEOUT,
        )
        == 1
    )
    for name in ("retry_requests", "retry_successes", "retry_limit_exceeded", "retry_overflow"):
        assert value(fams, f"outbound_http_route_{name}_total", route_name="web") == 1
    labels = dict(fams[statuses].samples[0][1])
    assert {k: labels[k] for k in labels if k.startswith(("parent_", "route_"))} == {
        "parent_group": "core",
        "parent_kind": "Service",
        "parent_namespace": "shop",
        "parent_name": "web",
        "parent_port": "80",
        "parent_section_name": "",
        "route_group": "gateway.networking.k8s.io",
        "route_kind": "HTTPRoute",
        "route_namespace": "shop",
        "route_name": "web",
    }
    assert labels["hostname"] == "web.shop.svc.cluster.local"
    assert labels["direction"] == "outbound"


def test_tcp_series_track_open_connections_bytes_and_close_errno() -> None:
    m = mk_metrics()
    tk = m.tcp(direction="inbound", peer="src", target_addr=("10.1.0.5", 9898))
    for _ in range(3):
        m.tcp_open(tk)
    m.tcp_bytes(tk, read=100, write=10)
    m.tcp_close(tk, read=5, write=1000)
    m.tcp_close(tk, errno="ECONNRESET")

    fams = parse_exposition(m.render())

    assert value(fams, "tcp_open_total", peer="src") == 3
    assert value(fams, "tcp_open_connections", peer="src") == 1
    assert value(fams, "tcp_read_bytes_total") == 105
    assert value(fams, "tcp_write_bytes_total") == 1010
    assert value(fams, "tcp_close_total", errno="") == 1
    assert value(fams, "tcp_close_total", errno="ECONNRESET") == 1


WEB = "web.shop.serviceaccount.identity.cluster.local"


@pytest.mark.parametrize(
    ("direction", "status", "labels"),
    [
        ("inbound", client_tls(WEB), f'tls="true",client_id="{WEB}"'),
        ("inbound", client_tls(""), 'tls="true",client_id=""'),
        ("inbound", NO_TLS_FROM_REMOTE, 'tls="no_identity",no_tls_reason="no_tls_from_remote"'),
        ("outbound", server_tls(True, WEB), f'tls="true",server_id="{WEB}"'),
        (
            "outbound",
            NOT_PROVIDED,
            'tls="no_identity",no_tls_reason="not_provided_by_service_discovery"',
        ),
        ("outbound", server_tls(False, WEB), 'tls="disabled"'),
    ],
)
def test_tls_labels_follow_the_address_as_linkerd_orders_them(
    direction: Literal["inbound", "outbound"], status: tuple[str, str, str], labels: str
) -> None:
    m = mk_metrics()
    key = m.http(direction=direction, authority="web:80", target_addr=("10.1.0.5", 80), tls=status)
    m.request(key)
    tk = m.tcp(direction=direction, peer="src", target_addr=("10.1.0.5", 80), tls=status)
    m.tcp_open(tk)
    text = m.render()
    addr = 'target_addr="10.1.0.5:80",target_ip="10.1.0.5",target_port="80"'
    after = ',dst_namespace=""' if direction == "outbound" else "}"
    assert "request_total{direction=" in text
    assert re.search(
        rf"^request_total\{{.*{addr},{re.escape(labels)}{re.escape(after)}", text, re.M
    ), text
    assert re.search(rf'^tcp_open_total\{{.*peer="src",{addr},{re.escape(labels)}', text, re.M), (
        text
    )


# -- Flagger ----------------------------------------------------------------------------------

MATCHER = re.compile(r'([a-zA-Z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def select(fams: dict[str, Family], selector: str) -> list[tuple[str, Labels, float]]:
    """Evaluate a PromQL instant-vector selector ``name{matchers}`` (regexes anchored)."""
    name, _, body = selector.partition("{")
    name = name.strip()
    matchers = MATCHER.findall(body)
    assert matchers, selector

    def ok(labels: Labels) -> bool:
        got = dict(labels)
        for label, op, want in matchers:
            v = got.get(label, "")
            if not {
                "=": v == want,
                "!=": v != want,
                "=~": re.fullmatch(want, v) is not None,
                "!~": re.fullmatch(want, v) is None,
            }[op]:
                return False
        return True

    fam = fams[name.removesuffix("_bucket")]
    return [s for s in fam.samples if s[0] == name and ok(s[1])]


FLAGGER_QUERIES = {
    "builtin/request-success-rate": ("builtin", "linkerd", "request-success-rate"),
    "builtin/request-duration": ("builtin", "linkerd", "request-duration"),
    "template/success-rate": ("templates", "success-rate"),
    "template/latency": ("templates", "latency"),
}
"""Case -> where its PromQL is in Flagger's metric-queries fixture (read when the test runs,
so a clone without the reference data skips these instead of failing to collect)."""


def flagger_query(case: str) -> str:
    node = yaml.safe_load(require_reference(METRIC_QUERIES).read_text())
    for key in FLAGGER_QUERIES[case]:
        node = node[key]
    return str(node["wire"])


def scrape_canary_and_primary() -> dict[str, Family]:
    """Two pods as Prometheus would see them: the canary (deployment podinfo) answering 9 of
    10 inbound requests, the primary (podinfo-primary) failing everything, and outbound
    traffic from the canary that must not count."""
    canary, primary = mk_metrics(), mk_metrics("podinfo-primary", pod="podinfo-primary-1")
    serve(canary, *[200] * 8, 404, 503, latency=7)
    serve(canary, 500, 500, direction="outbound", latency=900)
    serve(primary, 503, 503, 503, latency=2000)
    fams = parse_exposition(canary.render())
    for name, fam in parse_exposition(primary.render()).items():
        if name in fams and not name.startswith("process_"):
            fams[name].samples += fam.samples
    return fams


@pytest.mark.parametrize("case", FLAGGER_QUERIES)
def test_flaggers_linkerd_queries_select_only_the_canarys_inbound_series(case: str) -> None:
    wire = flagger_query(case)
    fams = scrape_canary_and_primary()
    selectors = re.findall(r"([a-z_]+\{[^}]*\})", wire)
    assert selectors, wire

    selected = [select(fams, s) for s in selectors]

    for series in selected:
        assert series
        assert {dict(lb)["deployment"] for _, lb, _ in series} == {"podinfo"}
        assert {dict(lb)["direction"] for _, lb, _ in series} == {"inbound"}
    if "success" in case:
        good, total = (sum(v for *_, v in s) for s in selected)
        assert good / total * 100 == pytest.approx(90.0)  # 503 fails; 404 does not
    else:
        buckets: dict[str, float] = {}
        for _, lb, v in selected[0]:
            buckets[dict(lb)["le"]] = buckets.get(dict(lb)["le"], 0) + v
        assert list(buckets) == LINKERD_LE
        assert histogram_quantile(0.99, buckets) <= 10  # the canary's 7 ms, not 900 or 2000


def histogram_quantile(q: float, buckets: dict[str, float]) -> float:
    """Prometheus' linear interpolation within the bucket holding the q-quantile."""
    bounds = [(math.inf if le == "+Inf" else float(le), c) for le, c in buckets.items()]
    rank = q * bounds[-1][1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in bounds:
        if count >= rank:
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return math.nan
