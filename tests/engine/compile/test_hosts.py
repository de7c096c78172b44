"""Hostname rules of HTTPROUTE-SEMANTICS §4: wildcard matching, listener ∩ route, the order
of virtual hosts and which listener owns a host."""

from __future__ import annotations

import pytest

from tests.engine.compile.builders import (
    compile_objects,
    gateway_parent,
    mk_gateway,
    mk_gateway_class,
    mk_listener,
    mk_route,
    mk_rule,
)
from turnout.engine import ir
from turnout.engine.compile.hosts import (
    effective_hostnames,
    host_matches,
    host_specificity,
    intersect,
    owning_listener,
)


@pytest.mark.parametrize(
    ("host", "pattern", "expected"),
    [
        pytest.param("a.example.com", "*.example.com", True, id="wildcard-one-label"),
        pytest.param("a.b.example.com", "*.example.com", True, id="wildcard-several-labels"),
        pytest.param("example.com", "*.example.com", False, id="wildcard-never-the-bare-suffix"),
        pytest.param("badexample.com", "*.example.com", False, id="wildcard-label-boundary"),
        pytest.param("foo.example.com", "foo.example.com", True, id="exact-equal"),
        pytest.param("Foo.example.com", "foo.example.com", False, id="exact-is-exact"),
        pytest.param("*.a.example.com", "*.example.com", True, id="narrower-wildcard-inside"),
        pytest.param("*.example.com", "*.example.com", True, id="same-wildcard"),
        pytest.param("*.example.com", "*.a.example.com", False, id="wider-wildcard-not-inside"),
        pytest.param("anything.org", "*", True, id="any-host"),
    ],
)
def test_wildcard_matches_one_or_more_labels_never_the_suffix_itself(
    host: str, pattern: str, expected: bool
) -> None:
    """§4: "A wildcard is a suffix match on one or more labels: `*.example.com` matches
    `a.example.com` and `a.b.example.com`, never `example.com`."""
    assert host_matches(host, pattern) is expected


@pytest.mark.parametrize(
    ("route_host", "listener_host", "expected"),
    [
        pytest.param("*.specific.com", "very.specific.com", "very.specific.com", id="route-wider"),
        pytest.param("foo.wildcard.io", "*.wildcard.io", "foo.wildcard.io", id="route-narrower"),
        pytest.param(
            "*.a.example.com", "*.example.com", "*.a.example.com", id="both-wild-route-narrower"
        ),
        pytest.param("*.com", "*.example.com", "*.example.com", id="both-wild-listener-narrower"),
        pytest.param("other.org", "*.example.com", None, id="disjoint"),
        pytest.param("example.com", "*.example.com", None, id="bare-suffix-disjoint"),
        pytest.param("foo.example.com", None, "foo.example.com", id="listener-without-hostname"),
    ],
)
def test_listener_and_route_hostnames_intersect_to_the_narrower(
    route_host: str, listener_host: str | None, expected: str | None
) -> None:
    """§4: "a route `*.specific.com` intersects a listener `very.specific.com`, and then only
    `very.specific.com` is served; a route `foo.wildcard.io` intersects a listener
    `*.wildcard.io`"."""
    assert intersect(route_host, listener_host) == expected


@pytest.mark.parametrize(
    ("route_hosts", "listener_host", "expected"),
    [
        pytest.param([], None, ["*"], id="neither-set-any-host"),
        pytest.param([], "*.example.com", ["*.example.com"], id="route-unset-takes-listener"),
        pytest.param(
            ["a.example.com", "other.org"],
            "*.example.com",
            ["a.example.com"],
            id="non-intersecting-ignored",
        ),
        pytest.param(["other.org"], "*.example.com", [], id="none-intersect"),
        pytest.param(
            ["*.example.com", "a.example.com"],
            "a.example.com",
            ["a.example.com"],
            id="duplicates-folded",
        ),
    ],
)
def test_route_hostnames_that_do_not_intersect_are_ignored(
    route_hosts: list[str], listener_host: str | None, expected: list[str]
) -> None:
    """§4: "No route hostnames = all hostnames the listener accepts ... Route hostnames that do
    not intersect are ignored."""
    assert effective_hostnames(route_hosts, listener_host) == expected


def test_vhost_order_is_exact_then_longer_wildcard_then_shorter_then_any() -> None:
    """§4: "the most specific listener hostname that matches the Host wins (exact > longer
    wildcard > shorter wildcard > no hostname)"; §3.1: "an exact host beats a wildcard; a
    longer wildcard beats a shorter one"."""
    hosts = ["*", "*.example.com", "foo.example.com", "*.a.example.com", "b.example.com"]
    assert sorted(hosts, key=host_specificity) == [
        "foo.example.com",
        "b.example.com",
        "*.a.example.com",
        "*.example.com",
        "*",
    ]


LISTENERS = [("any", None), ("wild", "*.example.com"), ("foo", "foo.example.com")]


@pytest.mark.parametrize(
    ("host", "owner"),
    [
        pytest.param("foo.example.com", "foo", id="exact-listener-owns-its-host"),
        pytest.param("bar.example.com", "wild", id="wildcard-listener-owns-the-rest"),
        pytest.param("*.a.example.com", "wild", id="narrower-wildcard-under-wildcard"),
        pytest.param("other.org", "any", id="no-hostname-listener-owns-the-remainder"),
        pytest.param("*", "any", id="any-host"),
    ],
)
def test_most_specific_listener_owns_the_host(host: str, owner: str) -> None:
    """§4: "routes of a less specific listener must not see requests that a more specific
    listener owns (feature GatewayHTTPListenerIsolation)"."""
    assert owning_listener(host, LISTENERS) == owner


def test_no_listener_owns_a_host_outside_every_listener() -> None:
    assert owning_listener("other.org", [("wild", "*.example.com")]) is None


def _vhosts(result_table: ir.RouteTable) -> dict[str, list[str]]:
    (parent,) = [p for p in result_table.parents if isinstance(p, ir.GatewayParent)]
    return {vh.domains[0]: [r.name for r in vh.rules] for vh in parent.vhosts}


def test_route_reaching_a_host_through_two_listeners_is_listed_once() -> None:
    """A route on the whole Gateway whose hostname both `*.example.com` and
    `foo.example.com` accept joins that host's vhost once, through the owning listener."""
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway(
            "web",
            "edge",
            mk_listener("wild", 80, hostname="*.example.com"),
            mk_listener("foo", 80, hostname="foo.example.com"),
        ),
        mk_route("web", "foo", parents=[gateway_parent("edge")], hostnames=["foo.example.com"]),
    )
    assert _vhosts(result.table) == {"foo.example.com": ["httproute/web/foo/rule/0"]}


def test_less_specific_listener_route_does_not_see_a_more_specific_listeners_host() -> None:
    """GatewayHTTPListenerIsolation: a route on the hostname-less listener that names
    `*.example.com` must not join the vhost that listener `wild` owns."""
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway(
            "web",
            "edge",
            mk_listener("wild", 80, hostname="*.example.com"),
            mk_listener("any", 80),
        ),
        mk_route(
            "web",
            "owner",
            parents=[gateway_parent("edge", section="wild")],
            rules=[mk_rule(path="/owner")],
        ),
        mk_route(
            "web",
            "shadow",
            parents=[gateway_parent("edge", section="any")],
            hostnames=["*.example.com"],
            rules=[mk_rule(path="/shadow")],
        ),
    )
    assert _vhosts(result.table) == {"*.example.com": ["httproute/web/owner/rule/0"]}
