"""`explain()`: every route of the virtual host, why it lost, and the same winner as `decide()`."""

from __future__ import annotations

from tests.proxy.builders import LISTENER, by_precedence, mk_match, mk_route, mk_table
from turnout.proxy import RequestInfo
from turnout.proxy.table import refused

MATCHES = by_precedence(
    [
        mk_match("v1", prefix="/v1"),
        mk_match("canary", prefix="/v2", headers={"x-canary": "true"}),
        mk_match("v2", prefix="/v2"),
        mk_match("get", prefix="/", method="GET"),
        mk_match("root", prefix="/"),
        mk_match("exact", exact="/v2/status"),
    ]
)
TABLE = mk_table(*(mk_route(m) for m in MATCHES))


def test_explain_reports_first_failure_and_lower_precedence() -> None:
    request = RequestInfo(method="GET", authority="web", path="/v2")
    ex = TABLE.explain(request, listener=LISTENER)
    verdicts = {v.route.name: v for v in ex.verdicts}
    assert ex.virtual_host == "web"
    assert verdicts["v1"].reason == "path /v2 does not match PathPrefix /v1"
    assert verdicts["canary"].reason == 'header x-canary: want exact "true", got none'
    assert verdicts["exact"].reason == "path /v2 does not match Exact /v2/status"
    assert verdicts["v2"].outcome == "winner"
    assert verdicts["get"].outcome == "lower-precedence"
    assert verdicts["get"].reason == "matched, but v2 wins: longer prefix /v2 beats /"
    assert verdicts["root"].outcome == "lower-precedence"
    assert ex.winner == TABLE.decide(request, listener=LISTENER)


def test_explain_reports_wrong_header_value_and_method() -> None:
    request = RequestInfo(
        method="POST", authority="web", path="/v2/x", headers=(("X-Canary", "false"),)
    )
    verdicts = {v.route.name: v for v in TABLE.explain(request, listener=LISTENER).verdicts}
    assert verdicts["canary"].reason == 'header x-canary: want exact "true", got "false"'
    assert verdicts["get"].reason == "method: want GET, got POST"


def test_explain_winner_equals_decide_for_many_requests() -> None:
    paths = ["/", "/v1", "/v1/", "/v1x", "/v2", "/v2/status", "/v2/status/", "/v3", "", "*"]
    for path in paths:
        for method in ("GET", "POST"):
            for headers in ((), (("x-canary", "true"),), (("X-CANARY", "true"), ("x-canary", "x"))):
                request = RequestInfo(method=method, authority="web", path=path, headers=headers)
                winner = TABLE.explain(request, listener=LISTENER).winner
                if request.refusal is not None:
                    # "" and "*" are no paths: the proxy's handler answers 400 before
                    # deciding, and explain says the same
                    assert winner == refused(request.refusal)
                    continue
                assert winner == TABLE.decide(request, listener=LISTENER)


def test_explain_without_listener_or_host() -> None:
    request = RequestInfo(method="GET", authority="web", path="/")
    assert TABLE.explain(request, listener="nope").virtual_host is None
    table = mk_table(mk_route(mk_match("m")), domains=["only.example"])
    ex = table.explain(request, listener=LISTENER)
    assert (
        ex.virtual_host is None and "no virtual host" in ex.host_reason and ex.winner.route is None
    )
