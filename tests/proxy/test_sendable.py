"""Whatever a control plane sends, no space, CR, LF or NUL reaches a request line, a Host or
a Location: a rewrite, redirect or host value carrying one fails the table build with a
`TableError` naming the route and the field (the NACK reason), and the last good table
stays. Our own control plane refuses them earlier (`validate.filters.PATH_VALUE`)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from envoy.config.route.v3 import route_components_pb2 as rc

from tests.proxy.builders import LISTENER, mk_backend, mk_match, mk_redirect, mk_route, mk_table
from turnout.proxy import RequestInfo, TableError, apply_request_filters, redirect_location

ROUTE = "httproute/shop/web/rule/0/match/0"
MATCH = mk_match(ROUTE, prefix="/api")

BUILDS: list[tuple[Callable[[str], rc.Route], str]] = [
    (lambda v: mk_route(MATCH, prefix_rewrite=v), "route.prefix_rewrite"),
    (lambda v: mk_route(MATCH, full_path_rewrite=v), "route.regex_rewrite.substitution"),
    (lambda v: mk_route(MATCH, host_rewrite=v), "route.host_rewrite_literal"),
    (
        lambda v: mk_route(MATCH, backends=[mk_backend(host_rewrite=v)]),
        "route.weighted_clusters.clusters[0].host_rewrite_literal",
    ),
    (lambda v: mk_route(MATCH, redirect=mk_redirect(path=v)), "redirect.path_redirect"),
    (
        lambda v: mk_route(MATCH, redirect=mk_redirect(prefix=v, matched="/api")),
        "redirect.prefix_rewrite",
    ),
    (lambda v: mk_route(MATCH, redirect=mk_redirect(host=v)), "redirect.host_redirect"),
]
IDS = ["prefix-rewrite", "full-path", "host", "backend-host", "redirect-path", "redirect-prefix"]
IDS += ["redirect-host"]


@pytest.mark.parametrize(
    "bad",
    ["/a b", "/a\0b", "/a\r\nx-injected: 1", "/a\nb", "/é"],
    ids=["space", "nul", "crlf", "lf", "non-ascii"],
)
@pytest.mark.parametrize(("build", "field"), BUILDS, ids=IDS)
def test_a_value_that_cannot_be_sent_fails_the_table_naming_route_and_field(
    build: Callable[[str], rc.Route], field: str, bad: str
) -> None:
    with pytest.raises(TableError) as caught:
        mk_table(build(bad))
    assert f'"{ROUTE}"' in caught.value.resource
    assert caught.value.field == field
    assert "cannot be sent: want visible ASCII only" in caught.value.message


@pytest.mark.parametrize(("build", "field"), BUILDS, ids=IDS)
def test_visible_values_build(build: Callable[[str], rc.Route], field: str) -> None:
    mk_table(build("/a%20b" if "host" not in field else "a.example"))


def test_what_is_sent_holds_no_byte_that_splits_a_line() -> None:
    """The two places a route's values reach the wire, with the values the table took."""
    request = RequestInfo(method="GET", authority="web", path="/api/x", query="q=1")
    rewrite = mk_table(mk_route(MATCH, prefix_rewrite="/new%20x"))
    decision = rewrite.decide(request, listener=LISTENER)
    assert apply_request_filters(decision, request, None).path_and_query == "/new%20x/x?q=1"
    moved = mk_table(mk_route(MATCH, redirect=mk_redirect(path="/moved%20here")))
    decision = moved.decide(request, listener=LISTENER)
    assert redirect_location(decision, request, "http") == "http://web/moved%20here?q=1"
