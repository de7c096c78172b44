"""The index in `decide()` equals "first matching route in xDS order" (and `explain()`).

The reference below is a naive linear scan written straight from HTTPROUTE-SEMANTICS §2 over
the IR matches, independent of the proxy's compiled matchers.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.proxy.builders import LISTENER, by_precedence, mk_route, mk_table, split_prefix_routes
from turnout.engine import ir
from turnout.proxy import RequestInfo

SEGMENTS = ["a", "b", "ab", "v2", "v2example"]
REGEXES = ["/a/.*", "/[ab]+(/.*)?", ".*", "/v2.*", "/a/b"]
HEADER_NAMES = ["x", "y"]
VALUES = ["1", "2", "1,2"]


def _path(segments: list[str], trailing: bool) -> str:
    p = "/" + "/".join(segments)
    return p + "/" if trailing and segments else p


paths = st.builds(_path, st.lists(st.sampled_from(SEGMENTS), max_size=3), st.booleans())


@st.composite
def matches(draw: st.DrawFn, index: int) -> ir.Match:
    kind = draw(st.sampled_from(["exact", "prefix", "prefix", "regex"]))
    path: ir.PathMatch
    if kind == "exact":
        path = ir.ExactPath(value=draw(paths))
    elif kind == "prefix":
        path = ir.PrefixPath(value=draw(paths))
    else:
        path = ir.RegexPath(pattern=draw(st.sampled_from(REGEXES)))
    names = draw(st.lists(st.sampled_from(HEADER_NAMES), unique=True, max_size=2))
    headers = tuple(
        ir.HeaderMatch(
            name=n,
            kind=draw(st.sampled_from(["Exact", "RegularExpression"])),
            value=draw(st.sampled_from(VALUES)),
        )
        for n in names
    )
    qnames = draw(st.lists(st.sampled_from(["q", "Q"]), unique=True, max_size=1))
    query = tuple(
        ir.QueryMatch(name=n, kind="Exact", value=draw(st.sampled_from(VALUES[:2]))) for n in qnames
    )
    method = draw(st.sampled_from([None, None, "GET", "POST"]))
    return ir.Match(
        name=f"r/{index}/match/0", path=path, headers=headers, query=query, method=method
    )


@st.composite
def route_sets(draw: st.DrawFn) -> list[ir.Match]:
    n = draw(st.integers(min_value=0, max_value=12))
    return by_precedence([draw(matches(i)) for i in range(n)])


requests = st.builds(
    lambda path, method, headers, query: RequestInfo(
        method=method, authority="web", path=path, query=query, headers=tuple(headers)
    ),
    paths,
    st.sampled_from(["GET", "POST", "HEAD"]),
    st.lists(
        st.tuples(st.sampled_from(["x", "X", "y", "z"]), st.sampled_from(["1", "2"])), max_size=3
    ),
    st.sampled_from(["", "q=1", "q=2&q=1", "Q=2", "q=1&Q=1", "q"]),
)


def _reference_matches(m: ir.Match, r: RequestInfo) -> bool:
    """HTTPROUTE-SEMANTICS §2, literally."""
    p = m.path
    if isinstance(p, ir.ExactPath):
        ok = r.path == p.value
    elif isinstance(p, ir.PrefixPath):
        v = p.value.rstrip("/") or "/"
        ok = v == "/" or r.path == v or r.path.startswith(v + "/")
    else:
        ok = re.fullmatch(p.pattern, r.path) is not None
    if not ok or (m.method is not None and r.method != m.method):
        return False
    assert isinstance(r.headers, tuple)
    for h in m.headers:
        values = [v for n, v in r.headers if n.lower() == h.name]
        if not values:
            return False
        joined = ",".join(values)
        if not (joined == h.value if h.kind == "Exact" else re.fullmatch(h.value, joined)):
            return False
    for q in m.query:
        firsts = [
            part.partition("=")[2]
            for part in r.query.split("&")
            if part.partition("=")[0] == q.name
        ]
        if not firsts or firsts[0] != q.value:
            return False
    return True


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(route_sets(), st.lists(requests, min_size=1, max_size=8), st.booleans())
def test_decide_equals_first_match_in_xds_order(
    ms: list[ir.Match], reqs: list[RequestInfo], split: bool
) -> None:
    """Both encodings of PathPrefix: docs/xds.md's `path_separated_prefix`, and the
    `path: P` + `prefix: "P/"` pair the translator emits for proxyless gRPC."""
    routes = [mk_route(m) for m in ms]
    table = mk_table(*(split_prefix_routes(routes) if split else routes))
    for r in reqs:
        want = next((m.name for m in ms if _reference_matches(m, r)), None)
        got = table.decide(r, listener=LISTENER)
        assert (got.route.name if got.route else None) == want
        assert table.explain(r, listener=LISTENER).winner == got
