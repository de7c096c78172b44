"""`engine.xds.splice`: a virtual host's routes kept in order across versions give, after any
edit, what splicing the new version from nothing gives."""

from __future__ import annotations

import random

import pytest

from tests.engine.xds.builders import mk_backend, mk_invalid, mk_match, mk_rule
from turnout.engine import ir
from turnout.engine.xds import splice
from turnout.engine.xds.splice import RouteBytesCache

PATHS: list[ir.PathMatch] = [
    ir.ExactPath(value="/a"),
    ir.ExactPath(value="/bb"),
    ir.PrefixPath(value="/"),
    ir.PrefixPath(value="/a"),
    ir.PrefixPath(value="/api/v1"),
    ir.RegexPath(pattern="/x.*"),
]


def _rule(rnd: random.Random, n: int) -> ir.Rule:
    """Rule `n`: one to three matches drawn to tie often, sometimes an invalid backend."""
    route = f"r{n}"
    matches = tuple(
        mk_match(
            rnd.choice(PATHS),
            name=f"httproute/shop/{route}/rule/0/match/{k}",
            method=rnd.choice([None, "GET"]),
            headers=tuple(
                ir.HeaderMatch(name=f"h{i}", kind="Exact", value="v")
                for i in range(rnd.randrange(2))
            ),
        )
        for k in range(rnd.randrange(1, 4))
    )
    target = mk_invalid() if rnd.random() < 0.1 else "web"
    backend = mk_backend(target, weight=rnd.randrange(1, 9), rule=f"httproute/shop/{route}/rule/0")
    return mk_rule(route=route, matches=matches, backends=(backend,))


def _vhost(rules: list[ir.Rule]) -> ir.VirtualHost:
    return ir.VirtualHost(name="web", domains=("web",), rules=tuple(rules))


def test_any_edit_splices_as_a_fresh_splice_does() -> None:
    rnd = random.Random(11)
    counter = iter(range(10**6))
    rules = [_rule(rnd, next(counter)) for _ in range(40)]
    kept = RouteBytesCache()
    for step in range(300):
        vhost = _vhost(rules)
        got = kept.route_configuration("web:80", [vhost])
        want = RouteBytesCache().route_configuration("web:80", [vhost])
        assert got == want, step
        what = rnd.randrange(6)
        at = rnd.randrange(len(rules))
        if what <= 2:  # the usual edit: one rule replaced in place
            rules[at] = _rule(rnd, next(counter))
        elif what == 3:
            rules.insert(at, _rule(rnd, next(counter)))
        elif what == 4 and len(rules) > 2:
            del rules[at]
        else:  # a route moved in the tie-break order (its creationTimestamp changed)
            rules.insert(rnd.randrange(len(rules)), rules.pop(at))


def test_one_replaced_rule_orders_only_its_own_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(3)
    rules = [_rule(rnd, n) for n in range(200)]
    cache = RouteBytesCache()
    sorts: list[int] = []
    real = splice.flatten_matches

    def counted(vhost: ir.VirtualHost) -> list[tuple[ir.Rule, ir.Match]]:
        sorts.append(len(vhost.rules))
        return real(vhost)

    monkeypatch.setattr(splice, "flatten_matches", counted)
    cache.route_configuration("web:80", [_vhost(rules)])
    rules[50] = _rule(rnd, 1000)
    cache.route_configuration("web:80", [_vhost(rules)])
    assert sorts == [200]  # the first version only
    rules = rules[:100] + [_rule(rnd, n) for n in range(2000, 2100)]  # half of them replaced
    cache.route_configuration("web:80", [_vhost(rules)])
    assert sorts == [200, 200]
