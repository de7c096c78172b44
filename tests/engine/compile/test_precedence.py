"""Gateway API precedence (HTTPROUTE-SEMANTICS §3): `ir.match_precedence` ranks matches, the
compiler orders rules for ties. Each test is named after the rule it checks and quotes it."""

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
    mk_service,
    service_parent,
)
from turnout.engine import ir
from turnout.engine.compile.matches import http_match
from turnout.engine.diagnostics import SourcePos
from turnout.engine.model.httproute import HTTPRouteMatch

POS = SourcePos(file="test.yaml", doc_index=0)


def match(**raw: object) -> ir.Match:
    """Compile one `matches[]` entry written as in YAML: `match(path={...}, headers=[...])`."""
    got, diags = http_match(HTTPRouteMatch.model_validate(raw), name="m", pos=POS)
    assert got is not None, diags
    return got


def prefix(value: str, **extra: object) -> ir.Match:
    return match(path={"type": "PathPrefix", "value": value}, **extra)


def headers(*names: str) -> list[dict[str, str]]:
    return [{"name": n, "value": "v"} for n in names]


def query(*names: str) -> list[dict[str, str]]:
    return [{"name": n, "value": "v"} for n in names]


@pytest.mark.parametrize(
    ("winner", "loser"),
    [
        pytest.param(
            match(path={"type": "Exact", "value": "/a"}),
            prefix("/a/very/long/prefix/indeed"),
            id="exact-beats-longer-prefix",
        ),
        pytest.param(
            match(path={"type": "Exact", "value": "/a"}),
            prefix("/", method="GET", headers=headers("a", "b", "c")),
            id="exact-beats-prefix-with-method-and-headers",
        ),
    ],
)
def test_exact_path_beats_any_prefix(winner: ir.Match, loser: ir.Match) -> None:
    """§3.2.1: "an **Exact** path match (over any prefix)"."""
    assert ir.match_precedence(winner) > ir.match_precedence(loser)


@pytest.mark.parametrize(
    ("winner", "loser"),
    [
        pytest.param(
            prefix("/match/prefix/one"), prefix("/match/prefix/"), id="conf-path-match-order"
        ),
        pytest.param(prefix("/match/prefix/"), prefix("/match/"), id="conf-path-match-order-2"),
        pytest.param(prefix("/v2"), prefix("/"), id="slash-is-length-one"),
    ],
)
def test_prefix_with_most_characters_wins(winner: ir.Match, loser: ir.Match) -> None:
    """§3.2.2: "a **PathPrefix** with the **most characters**" (Conf HTTPRoutePathMatchOrder:
    `/match/prefix/one` beats `/match/prefix/` beats `/match/`)."""
    assert ir.match_precedence(winner) > ir.match_precedence(loser)


def test_trailing_slash_does_not_lengthen_a_prefix() -> None:
    """§2: "Trailing `/` in the value is ignored: `/abc` and `/abc/` behave the same"."""
    assert ir.match_precedence(prefix("/abc/")) == ir.match_precedence(prefix("/abc"))


def test_omitted_path_counts_as_prefix_slash() -> None:
    """§3: "`PathPrefix "/"` (or an omitted path) counts as prefix length 1"."""
    assert ir.match_precedence(match()) == ir.match_precedence(prefix("/"))
    assert ir.match_precedence(match()) == (2, 1, 0, 0, 0)


def test_longer_prefix_always_beats_more_headers() -> None:
    """§3: "path specificity outranks method, which outranks header count ...; a longer
    prefix **always** beats more headers"."""
    assert ir.match_precedence(prefix("/path5")) > ir.match_precedence(
        prefix("/", method="GET", headers=headers("a", "b"), queryParams=query("x"))
    )


def test_method_match_beats_more_headers() -> None:
    """§3.2.3: "a **method** match present" ranks before §3.2.4 header count."""
    assert ir.match_precedence(prefix("/", method="GET")) > ir.match_precedence(
        prefix("/", headers=headers("a", "b", "c"))
    )


def test_most_header_matches_wins() -> None:
    """§3.2.4: "the **most header matches**" (Conf HTTPRouteHeaderMatching: `version: two` +
    `color: orange` wins over the one-header rule listed earlier)."""
    assert ir.match_precedence(prefix("/", headers=headers("version", "color"))) > (
        ir.match_precedence(prefix("/", headers=headers("version")))
    )


def test_one_header_beats_one_query_param() -> None:
    """§3.2.5: "the **most query-param matches**" comes last (Conf HTTPRouteQueryParamMatching:
    `version: four` header rule beats the `animal=hydra` query rule)."""
    assert ir.match_precedence(prefix("/", headers=headers("version"))) > ir.match_precedence(
        prefix("/", queryParams=query("animal"))
    )


def test_most_query_param_matches_wins() -> None:
    """§3.2.5: "the **most query-param matches**"."""
    assert ir.match_precedence(prefix("/", queryParams=query("a", "b"))) > ir.match_precedence(
        prefix("/", queryParams=query("a"))
    )


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(prefix("/"), id="below-prefix-slash"),
        pytest.param(match(path={"type": "Exact", "value": "/"}), id="below-exact"),
    ],
)
def test_regex_path_ranks_below_exact_and_prefix(other: ir.Match) -> None:
    """§3.2: "RegularExpression path precedence is impl-specific; put it after Exact/prefix,
    and document"."""
    regex = match(path={"type": "RegularExpression", "value": "/a/very/long/.*/pattern"})
    assert ir.match_precedence(other) > ir.match_precedence(regex)


# --------------------------------------------------------------------------- compiled order


def producer_rules(*routes: dict[str, object]) -> list[str]:
    result = compile_objects(mk_service("shop", "web", 80), *routes)
    parent = result.table.parent("service/shop/web:80")
    assert isinstance(parent, ir.ServiceParent)
    return [r.name for r in parent.producer.rules]


def web_route(ns: str, name: str, created: str | None, n_rules: int = 1) -> dict[str, object]:
    return mk_route(
        ns,
        name,
        parents=[service_parent("web", 80, ns="shop")],
        rules=[mk_rule(path="/same") for _ in range(n_rules)],
        created=created,
    )


def test_oldest_route_first_on_a_tie() -> None:
    """§3.3: "the route with the **oldest `metadata.creationTimestamp`**"."""
    assert producer_rules(
        web_route("shop", "a-new", "2024-06-01T00:00:00Z"),
        web_route("shop", "z-old", "2024-01-01T00:00:00Z"),
    ) == ["httproute/shop/z-old/rule/0", "httproute/shop/a-new/rule/0"]


def test_timestamps_compare_as_instants_not_strings() -> None:
    """§3.3 compares times: 01:00+02:00 is 23:00Z the day before, so it is the older one."""
    assert producer_rules(
        web_route("shop", "utc", "2024-03-01T00:00:00Z"),
        web_route("shop", "offset", "2024-03-01T01:00:00+02:00"),
    ) == ["httproute/shop/offset/rule/0", "httproute/shop/utc/rule/0"]


def test_namespace_then_name_alphabetical_on_equal_timestamps() -> None:
    """§3.3: "then the route first in alphabetical order of `"{namespace}/{name}"`"; checked
    on a Gateway listener, where routes of several namespaces merge into one table."""
    stamp = "2024-03-01T00:00:00Z"
    edge = gateway_parent("edge", ns="infra")
    result = compile_objects(
        mk_gateway_class(),
        mk_gateway("infra", "edge", mk_listener("http", 80, allowed_from="All")),
        mk_route("b", "alpha", parents=[edge], rules=[mk_rule(path="/same")], created=stamp),
        mk_route("a", "zeta", parents=[edge], rules=[mk_rule(path="/same")], created=stamp),
    )
    parent = result.table.parent("gateway/infra/edge:80")
    assert isinstance(parent, ir.GatewayParent)
    assert [r.name for r in parent.vhosts[0].rules] == [
        "httproute/a/zeta/rule/0",
        "httproute/b/alpha/rule/0",
    ]


def test_route_without_timestamp_counts_as_newest() -> None:
    """An offline manifest has no creationTimestamp; it must not jump ahead of dated routes."""
    assert producer_rules(
        web_route("shop", "a-undated", None),
        web_route("shop", "z-dated", "2030-01-01T00:00:00Z"),
    ) == ["httproute/shop/z-dated/rule/0", "httproute/shop/a-undated/rule/0"]


def test_first_rule_in_list_order_inside_one_route() -> None:
    """§3.4: "Still tied **inside one route**: the **first rule in list order**"."""
    assert producer_rules(web_route("shop", "web", None, n_rules=3)) == [
        "httproute/shop/web/rule/0",
        "httproute/shop/web/rule/1",
        "httproute/shop/web/rule/2",
    ]
