"""`RouteIndex.lookup`: where method and path alone decide (no header or query conditions on
the virtual host), the route of a path is found once and then remembered; elsewhere every
request is matched afresh. Either way the answer is `select`'s."""

from __future__ import annotations

import pytest

from tests.proxy.builders import LISTENER, by_precedence, mk_match, mk_route, mk_table
from turnout.proxy import RequestInfo, RuntimeTable
from turnout.proxy import index as index_module


def req(path: str, *headers: tuple[str, str]) -> RequestInfo:
    return RequestInfo(method="GET", authority="web", path=path, headers=headers)


def table(*matches: object) -> tuple[RuntimeTable, index_module.RouteIndex]:
    t = mk_table(*(mk_route(m) for m in by_precedence(list(matches))))  # type: ignore[arg-type]
    [vhosts] = t.route_configs.values()
    [vh] = vhosts
    return t, vh.index


def rule(t: RuntimeTable, request: RequestInfo) -> str | None:
    d = t.decide(request, listener=LISTENER)
    return None if d.route is None else d.route.name


def test_path_only_routes_are_remembered_and_agree_with_select() -> None:
    t, ix = table(
        mk_match("a", prefix="/api"), mk_match("b", exact="/api/v1"), mk_match("c", prefix="/")
    )
    assert ix.path_only
    for path in ("/api/v1", "/api/v2", "/other", "/api/v1"):
        fresh = ix.select(req(path))
        assert fresh is not None and rule(t, req(path)) == fresh.decision.route.name  # type: ignore[union-attr]
    assert [rule(t, req(p)) for p in ("/api/v1", "/api/v2", "/other")] == ["b", "a", "c"]
    assert set(ix._decided) == {("GET", "/api/v1"), ("GET", "/api/v2"), ("GET", "/other")}


def test_a_header_condition_anywhere_on_the_host_turns_remembering_off() -> None:
    t, ix = table(
        mk_match("canary", prefix="/api", headers={"x-canary": "true"}),
        mk_match("all", prefix="/"),
    )
    assert not ix.path_only
    assert rule(t, req("/api/x", ("x-canary", "true"))) == "canary"
    assert rule(t, req("/api/x")) == "all"  # same method and path, another answer
    assert ix._decided == {}


def test_remembered_paths_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "MAX_REMEMBERED", 3)
    t, ix = table(mk_match("all", prefix="/"))
    for i in range(10):
        assert rule(t, req(f"/p{i}")) == "all"
        assert len(ix._decided) <= 3
