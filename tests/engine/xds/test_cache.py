"""`engine.xds.cache`: the cached, versioned view equals the plain translation, byte for byte,
for every golden case and every client namespace; unchanged parents are not translated again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.conftest import GOLDEN
from tests.engine.xds.builders import mk_full_table
from turnout.engine import ir
from turnout.engine.pipeline import compile_files
from turnout.engine.xds import ROUTE_CONFIGURATION_TYPE, translate
from turnout.engine.xds.cache import (
    ResourceCache,
    consumer_namespaces,
    translate_view,
    version_of,
)

CASES = sorted((GOLDEN / "compile").glob("*.in.yaml"))


def _check(table: ir.RouteTable, cache: ResourceCache) -> None:
    for ns in [None, "elsewhere", *sorted(consumer_namespaces(table))]:
        want = translate(table, client_namespace=ns).packed()
        got = translate_view(table, ns, cache)
        assert {u: list(n) for u, n in got.items()} == {u: list(n) for u, n in want.items()}
        for url, named in want.items():
            for name, packed in named.items():
                assert got[url][name].any == packed, (url, name)
                assert got[url][name].version == version_of(packed)


@pytest.mark.parametrize("src", CASES, ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_cached_view_is_the_translation(src: Path) -> None:
    table = compile_files([src]).result.table
    cache = ResourceCache()
    _check(table, cache)
    _check(table, cache)  # from the cache this time
    assert cache.stats.hits > 0 or not table.parents


def test_one_changed_parent_is_the_only_miss() -> None:
    table = mk_full_table()
    assert consumer_namespaces(table), "the builder's table has consumer views"
    cache = ResourceCache()
    for ns in [None, *consumer_namespaces(table)]:
        translate_view(table, ns, cache)
    service = next(p for p in table.parents if isinstance(p, ir.ServiceParent))
    rule = service.producer.rules[0]
    changed = dataclasses.replace(
        service,
        producer=dataclasses.replace(
            service.producer, rules=(dataclasses.replace(rule, name=rule.name + "-x"),)
        ),
    )
    new = dataclasses.replace(
        table, parents=tuple(changed if p is service else p for p in table.parents)
    )
    before = translate_view(table, None, cache)
    misses = cache.stats.misses
    after = translate_view(new, None, cache)
    assert cache.stats.misses == misses + 1
    rds = ROUTE_CONFIGURATION_TYPE
    differ = [n for n in after[rds] if after[rds][n].version != before[rds][n].version]
    assert differ == [service.authority]
    _check(new, cache)
