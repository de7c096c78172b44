"""Telemetry counts what happened to each request: checked against the per-family calls of
`ProxyMetrics` (its documented API) spelled out event by event, for any mix of requests.

The request path takes shortcuts (a request answered by its first try is counted in one
tally cell, folded into the families when rendered); whatever the mix of plain requests,
retries, errors, timeouts, abandoned requests and inbound ones, the exposition must be the
one the plain per-family calls give.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from turnout.proxy.actions import Backend, Decision, Forward, RouteRef
from turnout.proxy.families import REQUEST_TIMEOUT, RESPONSE_HEADERS_TIMEOUT
from turnout.proxy.metrics import ProxyMetrics
from turnout.proxy.tap import TapHub
from turnout.proxy.telemetry import Exchange, Telemetry
from turnout.proxy.transport.messages import TLS_DISABLED, IncomingRequest, RequestBody

HOST = "web.shop.svc.cluster.local:80"
BACKENDS = (
    Backend(cluster="shop/web-v1:8080", name="b/0", weight=90),
    Backend(cluster="shop/web-v2:8080", name="b/1", weight=10),
)
ROUTES = (
    RouteRef(name="r/0/m/0", rule="httproute/shop/web/rule/0", source="HTTPRoute/shop/web"),
    RouteRef(name="r/1/m/0", rule="httproute/shop/web/rule/1", source="HTTPRoute/shop/web"),
)
ENDPOINTS = (("10.0.0.1", 8080), ("10.0.0.2", 8080))


@dataclass(frozen=True)
class Try:
    status: int | None
    """None: no answer (`error` says why)."""
    error: str = ""


@dataclass(frozen=True)
class Script:
    """One request's events."""

    inbound: bool
    route: int
    backend: int
    endpoint: int
    tries: tuple[Try, ...]
    final: int | None
    """Status the request ends with (None: no answer)."""
    error: str
    latency_ms: int
    headed: bool
    """The response head went out (its latency is the time to it)."""
    abandoned: bool
    """The client left: no `finish`."""


statuses = st.sampled_from([200, 201, 404, 500, 503])
tries = st.one_of(
    statuses.map(Try),
    st.sampled_from(["UpstreamConnectError", RESPONSE_HEADERS_TIMEOUT]).map(lambda e: Try(None, e)),
)


@st.composite
def scripts(draw: st.DrawFn) -> Script:
    inbound = draw(st.booleans())
    attempts = () if inbound else tuple(draw(st.lists(tries, min_size=0, max_size=3)))
    last = attempts[-1] if attempts else None
    kind = draw(st.sampled_from(["as-last-try", "own", "timeout", "error"]))
    final: int | None
    if kind == "as-last-try" and last is not None and last.status is not None:
        final, error = last.status, ""
    elif kind == "timeout":
        final, error = draw(st.sampled_from([None, 200])), REQUEST_TIMEOUT
    elif kind == "error":
        final, error = 502, "UpstreamProtocolError"
    else:
        final, error = draw(statuses), ""
    return Script(
        inbound=inbound,
        route=draw(st.integers(0, 1)),
        backend=draw(st.integers(0, 1)),
        endpoint=draw(st.integers(0, 1)),
        tries=attempts,
        final=final,
        error=error,
        latency_ms=draw(st.sampled_from([0, 1, 7, 250, 60_000])),
        headed=final is not None and draw(st.booleans()),
        abandoned=draw(st.integers(0, 9)) == 0,
    )


class Clock:
    """Set to 0 at each request's start: latencies come out as whole milliseconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def request(peer_port: int) -> IncomingRequest:
    return IncomingRequest(
        "GET", "/", "/", "", [(b"host", HOST.encode())], HOST, "1.1", True,
        cast(RequestBody, None), ("127.0.0.1", peer_port), ("127.0.0.1", 4140), None,
    )  # fmt: skip


def metrics() -> ProxyMetrics:
    return ProxyMetrics(namespace="shop", workload_name="client")


def through_telemetry(runs: list[Script]) -> str:
    m = metrics()
    clock = Clock()
    t = Telemetry(m, TapHub(), clock=clock)
    for i, s in enumerate(runs):
        clock.now = 0.0
        decision = None
        if not s.inbound:
            decision = Decision(route=ROUTES[s.route], action=Forward.of(BACKENDS))
        ex = Exchange(
            t,
            "inbound" if s.inbound else "outbound",
            request(40000 + i),
            decision,
            clock.now,
            ENDPOINTS[s.endpoint] if s.inbound else None,
            authority=HOST,
        )
        if not s.inbound:
            ex.backend(BACKENDS[s.backend])
            ex.endpoint(ENDPOINTS[s.endpoint], TLS_DISABLED)
        for tr in s.tries:
            ex.attempt(tr.status, error=tr.error)
        clock.now += s.latency_ms / 1000
        if s.headed:
            assert s.final is not None
            ex.response_head(s.final)
        if s.abandoned:
            ex.abandon()
        else:
            ex.finish(s.final, error=s.error)
        if i % 7 == 3:
            m.render()  # folds part way: later requests add to what is rendered
    return m.render()


def by_the_book(runs: list[Script]) -> str:
    """The per-family calls each event stands for (metrics.py's module docstring). A
    series shows (at 0) from the first call that names it, so keys are asked for where the
    events need them."""
    m = metrics()
    for s in runs:
        # a request timeout before any response head: no status (Linkerd's policy families)
        status = s.final if s.error != REQUEST_TIMEOUT or s.headed else None
        latency = s.latency_ms  # to the head, or to the end when there was none
        if s.inbound:
            if not s.abandoned:
                key = m.http(direction="inbound", authority=HOST, target_addr=ENDPOINTS[s.endpoint])
                m.request(key)
                m.response(key, status_code=status, latency_ms=latency, error=s.error)
            continue
        b = BACKENDS[s.backend]
        ns, svc, port = b.dst
        rk = m.route(direction="outbound", dst=HOST, rt_route=ROUTES[s.route].rule)
        pk = m.policy_route(
            parent_namespace="shop",
            parent_name="web",
            parent_port=80,
            route_namespace="shop",
            route_name="web",
            route_kind="HTTPRoute",
        )
        for tr in s.tries:
            bk = m.policy_backend(pk, backend_namespace=ns, backend_name=svc, backend_port=port)
            m.route_actual_request(rk)
            m.route_actual_response(rk, status_code=tr.status, error=tr.error)
            m.backend_request(bk)
            m.backend_response(bk, status_code=tr.status, error=tr.error)
        if s.abandoned:
            continue
        key = m.http(
            direction="outbound",
            authority=HOST,
            target_addr=ENDPOINTS[s.endpoint],
            dst_namespace=ns,
            dst_service=svc,
        )
        m.request(key)
        m.response(key, status_code=status, latency_ms=latency, error=s.error)
        m.route_request(rk)
        m.route_response(rk, status_code=status, latency_ms=latency, error=s.error)
        m.route_status(pk, status_code=status, error=s.error)
    return m.render()


def without_process_series(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if "process_" not in line)


@settings(max_examples=150, deadline=None)
@given(st.lists(scripts(), min_size=1, max_size=25))
def test_telemetry_counts_exactly_what_the_per_family_calls_count(runs: list[Script]) -> None:
    assert without_process_series(through_telemetry(runs)) == without_process_series(
        by_the_book(runs)
    )


def test_plain_requests_are_counted_in_every_family_they_belong_to() -> None:
    """The common case on its own, with numbers: 3 requests answered 200 by their only
    try, 30 ms each."""
    runs = [
        Script(False, 0, 0, 0, (Try(200),), 200, "", 30, True, False),
    ] * 3
    text = through_telemetry(runs)
    wanted = {
        "request_total": 3,
        "route_request_total": 3,
        "route_actual_request_total": 3,
        "outbound_http_route_backend_requests_total": 3,
        "outbound_http_route_request_statuses_total": 3,
        "outbound_http_route_backend_response_statuses_total": 3,
        "response_latency_ms_count": 3,
        "response_latency_ms_sum": 90,
        "route_response_latency_ms_sum": 90,
    }
    got: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0]
        if name in wanted:
            got[name] = got.get(name, 0) + int(line.rsplit(" ", 1)[1])
    assert got == wanted
