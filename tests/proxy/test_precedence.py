"""Gateway API precedence, one table row per rule (HTTPROUTE-SEMANTICS §2-§4).

Each case lists the matches of a parent in the order the user wrote them (rule order); the
builder sorts them the way docs/xds.md does, and the test checks which one `decide()` picks.
"""

from __future__ import annotations

import pytest

from tests.proxy.builders import LISTENER, by_precedence, mk_match, mk_route, mk_table
from turnout.engine import ir
from turnout.proxy import RequestInfo


def _pick(matches: list[ir.Match], request: RequestInfo) -> str | None:
    table = mk_table(*(mk_route(m) for m in by_precedence(matches)))
    decision = table.decide(request, listener=LISTENER)
    return None if decision.route is None else decision.route.name


def req(
    target: str,
    *,
    method: str = "GET",
    headers: tuple[tuple[str, str], ...] = (),
    host: str = "web",
) -> RequestInfo:
    return RequestInfo.from_target(method, host, target, headers=headers)


CASES = [
    pytest.param(
        # "precedence must be given to the match having: Exact path match"
        [mk_match("prefix", prefix="/match/exact"), mk_match("exact", exact="/match/exact/one")],
        req("/match/exact/one"),
        "exact",
        id="exact-beats-prefix",
    ),
    pytest.param(
        # "Prefix path match with largest number of characters"
        [
            mk_match("short", prefix="/match/"),
            mk_match("long", prefix="/match/prefix/one"),
            mk_match("mid", prefix="/match/prefix/"),
        ],
        req("/match/prefix/one/x"),
        "long",
        id="longest-prefix-wins",
    ),
    pytest.param(
        [mk_match("short", prefix="/match/"), mk_match("mid", prefix="/match/prefix/")],
        req("/match/prefix/other"),
        "mid",
        id="longest-prefix-wins-second-level",
    ),
    pytest.param(
        # "Method match" ranks above "Largest number of header matches"
        [
            mk_match("headers", prefix="/", headers={"a": "1", "b": "2"}),
            mk_match("method", prefix="/", method="GET"),
        ],
        req("/x", headers=(("a", "1"), ("b", "2"))),
        "method",
        id="method-beats-headers",
    ),
    pytest.param(
        # "Largest number of header matches" (HTTPRouteHeaderMatching: version two + color orange)
        [
            mk_match("one", prefix="/", headers={"version": "two"}),
            mk_match("two", prefix="/", headers={"version": "two", "color": "orange"}),
        ],
        req("/", headers=(("Version", "two"), ("Color", "orange"))),
        "two",
        id="more-headers-beat-fewer",
    ),
    pytest.param(
        # "Largest number of header matches" ranks above "Largest number of query param matches"
        [
            mk_match("query", prefix="/", query={"animal": "hydra"}),
            mk_match("header", prefix="/", headers={"version": "four"}),
        ],
        req("/?animal=hydra", headers=(("version", "four"),)),
        "header",
        id="headers-beat-query",
    ),
    pytest.param(
        # HTTPRouteQueryParamMatching: "a longer prefix beats a query match"
        [
            mk_match("query", prefix="/", query={"animal": "hydra"}),
            mk_match("path5", prefix="/path5"),
        ],
        req("/path5?animal=hydra"),
        "path5",
        id="longer-prefix-beats-query",
    ),
    pytest.param(
        # "PathPrefix /v2 matches /v2, /v2/, /v2/example, not /v2example"
        [mk_match("root", prefix="/"), mk_match("v2", prefix="/v2")],
        req("/v2example"),
        "root",
        id="element-wise-prefix-v2-does-not-match-v2example",
    ),
    pytest.param(
        [mk_match("v2", prefix="/v2")],
        req("/v2/"),
        "v2",
        id="prefix-matches-trailing-slash-request",
    ),
    pytest.param(
        [mk_match("v2", prefix="/v2")], req("/v2/example"), "v2", id="prefix-matches-subpath"
    ),
    pytest.param(
        # "Trailing / in the value is ignored: /abc and /abc/ behave the same and match /abc"
        [mk_match("root", prefix="/"), mk_match("abc", prefix="/abc/")],
        req("/abc"),
        "abc",
        id="trailing-slash-in-prefix-ignored",
    ),
    pytest.param(
        # "Exact path: byte-for-byte, case-sensitive. /abc does not match /abc/, /Abc, /abcd"
        [mk_match("exact", exact="/two")],
        req("/two/"),
        None,
        id="exact-does-not-match-trailing-slash",
    ),
    pytest.param(
        [mk_match("exact", exact="/two")], req("/Two"), None, id="exact-is-case-sensitive"
    ),
    pytest.param(
        # "Method: exact upper-case token. A HEAD request does not match method: GET"
        [mk_match("get", prefix="/", method="GET")],
        req("/", method="HEAD"),
        None,
        id="head-does-not-match-get",
    ),
    pytest.param(
        # "Query params: name compare is exact and case-sensitive"
        [
            mk_match("lower", prefix="/", query={"animal": "whale"}),
            mk_match("upper", prefix="/", query={"ANIMAL": "Whale"}),
        ],
        req("/?ANIMAL=Whale"),
        "upper",
        id="query-names-are-case-sensitive",
    ),
    pytest.param(
        # "repeated params in the request: undefined, first value recommended"
        [mk_match("q", prefix="/", query={"a": "1"})],
        req("/?a=1&a=2"),
        "q",
        id="query-first-value-counts",
    ),
    pytest.param(
        [mk_match("q", prefix="/", query={"a": "2"})],
        req("/?a=1&a=2"),
        None,
        id="query-later-value-ignored",
    ),
    pytest.param(
        # "Repeated request headers: impl-specific (RFC 7230 comma-join is the guidance)"
        [mk_match("h", prefix="/", headers={"x": "1,2"})],
        req("/", headers=(("X", "1"), ("x", "2"))),
        "h",
        id="repeated-headers-are-joined",
    ),
    pytest.param(
        # "Still tied inside one route: the first rule in list order"
        [
            mk_match("first", prefix="/a", headers={"h": "1"}),
            mk_match("second", prefix="/a", headers={"g": "1"}),
        ],
        req("/a", headers=(("h", "1"), ("g", "1"))),
        "first",
        id="tie-goes-to-earlier-rule",
    ),
    pytest.param(
        # "RegularExpression path precedence is impl-specific; put it after Exact/prefix"
        [mk_match("regex", regex="/a/.*"), mk_match("root", prefix="/")],
        req("/a/b"),
        "root",
        id="prefix-beats-regex",
    ),
    pytest.param(
        [mk_match("regex", regex="/a/.*")],
        req("/a/b"),
        "regex",
        id="regex-used-when-nothing-else-matches",
    ),
    pytest.param([mk_match("regex", regex="/a")], req("/a/b"), None, id="regex-is-a-full-match"),
    pytest.param(
        [
            mk_match(
                "h",
                prefix="/",
                headers=[ir.HeaderMatch(name="v", kind="RegularExpression", value="v[0-9]+")],
            )
        ],
        req("/", headers=(("V", "v12"),)),
        "h",
        id="header-regex-full-match",
    ),
    pytest.param(
        # "a longer prefix always beats more headers"
        [
            mk_match("headers", prefix="/a", headers={"x": "1", "y": "1"}),
            mk_match("long", prefix="/a/b"),
        ],
        req("/a/b", headers=(("x", "1"), ("y", "1"))),
        "long",
        id="longer-prefix-beats-more-headers",
    ),
    pytest.param(
        [mk_match("exact", exact="/a", headers={"x": "1"}), mk_match("prefix", prefix="/a")],
        req("/a"),
        "prefix",
        id="exact-falls-back-to-prefix-when-its-headers-fail",
    ),
]


@pytest.mark.parametrize(("matches", "request_", "want"), CASES)
def test_gateway_api_precedence(
    matches: list[ir.Match], request_: RequestInfo, want: str | None
) -> None:
    assert _pick(matches, request_) == want


HOST_CASES = [
    pytest.param("foo.bar.com", "exact", id="exact-host-beats-wildcard"),
    pytest.param("a.bar.com", "wild", id="wildcard-matches-one-label"),
    pytest.param("a.b.bar.com", "wild", id="wildcard-matches-several-labels"),
    pytest.param("x.foo.bar.com", "longwild", id="longer-wildcard-beats-shorter"),
    pytest.param("bar.com", "any", id="wildcard-never-matches-the-bare-suffix"),
    pytest.param("FOO.bar.com", "exact", id="host-is-case-insensitive"),
    # "Match against the Host header ignoring any :port" (very.specific.com:1234)
    pytest.param("foo.bar.com:1234", "exact", id="port-ignored-in-host"),
    pytest.param("a.bar.com:8080", "wild", id="port-ignored-for-wildcards"),
    pytest.param("other.org", "any", id="star-catches-the-rest"),
]


@pytest.mark.parametrize(("host", "want"), HOST_CASES)
def test_hostname_precedence(host: str, want: str) -> None:
    """§3.1: "an exact host beats a wildcard; a longer wildcard beats a shorter one"."""
    from tests.proxy.builders import mk_vhost

    vhosts = [
        mk_vhost([mk_route(mk_match(f"{n}/m", prefix="/"))], name=n, domains=d)
        for n, d in [
            ("wild", ["*.bar.com"]),
            ("exact", ["foo.bar.com"]),
            ("longwild", ["*.foo.bar.com"]),
            ("any", ["*"]),
        ]
    ]
    table = mk_table(vhosts=vhosts)
    decision = table.decide(req("/", host=host), listener=LISTENER)
    assert decision.route is not None
    assert decision.route.name == f"{want}/m"
