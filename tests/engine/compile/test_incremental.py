"""The incremental compiler against the reference `compile_table`.

The world is a set of objects drawn from every golden compile input: the cases reuse names
(`web`, `shop`, ...), so swapping one object for another case's version of it is a real edit
(ports, rules, parentRefs, listeners, slices and grants change), and dropping or restoring
one makes things appear and disappear under routes that name them. After every step the
incremental result must equal a full compile of the same snapshot.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Iterator

import pytest

from bench.synth import documents
from tests.conftest import GOLDEN
from turnout.engine.compile import CompileOptions, CompileResult, compile_table
from turnout.engine.compile.incremental import IncrementalTable
from turnout.engine.model import Document, Loaded, Resource, Resources, parse_documents
from turnout.engine.pipeline import load_inputs

Key = tuple[str, str, str]


@pytest.fixture(scope="module")
def pool() -> dict[Key, list[Loaded[Resource]]]:
    """Every valid object of every golden compile input, by (kind, namespace, name)."""
    out: dict[Key, list[Loaded[Resource]]] = {}
    for src in sorted(GOLDEN.glob("compile/*.in.yaml")):
        for o in load_inputs([str(src)]).resources.objects:
            key = (o.obj.kind, o.obj.metadata.namespace or "", o.obj.name)
            out.setdefault(key, []).append(o)
    return out


def edits(pool: dict[Key, list[Loaded[Resource]]], seed: int) -> Iterator[Resources]:
    """Snapshots, each a few edits after the last (now and then a batch of 90, which the
    incremental compiler answers with a pass over every route), in a shuffled order, and
    sometimes with an object listed twice or a second object under one key (the later one
    wins, as in `compile_table`)."""
    rnd = random.Random(seed)
    keys = sorted(pool)
    world: dict[Key, Loaded[Resource]] = {
        k: rnd.choice(pool[k]) for k in keys if rnd.random() < 0.6
    }
    yield Resources(tuple(world.values()))
    for _ in range(50):
        for _ in range(rnd.choice([1, 1, 1, 2, 5, 90])):
            key = rnd.choice(keys)
            what = rnd.random()
            if key in world and what < 0.3:
                del world[key]  # gone: what named it must notice
            elif what < 0.5 and key in world:
                world[key] = dataclasses.replace(world[key])  # equal, another object
            else:
                world[key] = rnd.choice(pool[key])  # added, or another case's version
        objects = list(world.values())
        rnd.shuffle(objects)
        if objects and rnd.random() < 0.1:
            objects.append(rnd.choice(objects))
        if world and rnd.random() < 0.1:
            objects.append(rnd.choice(pool[rnd.choice(list(world))]))
        yield Resources(tuple(objects))


@pytest.mark.parametrize("complete", [False, True], ids=["manifests", "cluster"])
@pytest.mark.parametrize("seed", range(4))
def test_random_edits_compile_as_a_full_compile(
    pool: dict[Key, list[Loaded[Resource]]], seed: int, complete: bool
) -> None:
    options = CompileOptions(complete_inputs=complete)
    inc = IncrementalTable(options=options)
    for step, resources in enumerate(edits(pool, seed)):
        got = inc.compile(resources)
        want = compile_table(resources, options=options)
        assert got.table == want.table, step
        assert got.statuses == want.statuses, step
        assert got.gateway_statuses == want.gateway_statuses, step
        assert got.diagnostics == want.diagnostics, step


def _bench(
    n: int, services: int, extra: tuple[dict[str, object], ...] = ()
) -> list[Loaded[Resource]]:
    resources, _ = parse_documents(documents(n, services=services, extra=extra))
    return list(resources.objects)


def _reparsed(objs: list[Loaded[Resource]], name: str, edit: dict[str, object]) -> None:
    """Replace object `name` by a parse of its document with `edit` applied."""
    (i,) = [i for i, o in enumerate(objs) if o.obj.name == name]
    raw = _merge(copy.deepcopy(dict(objs[i].raw)), edit)
    (objs[i],) = parse_documents([Document(pos=objs[i].pos, raw=raw)])[0].objects


def _merge(raw: dict[str, object], edit: dict[str, object]) -> dict[str, object]:
    for k, v in edit.items():
        cur = raw.get(k)
        raw[k] = _merge(cur, v) if isinstance(cur, dict) and isinstance(v, dict) else v  # type: ignore[arg-type]
    return raw


def test_one_route_changed_recompiles_one_unit_and_keeps_the_other_parents() -> None:
    objs = _bench(200, services=20)
    inc = IncrementalTable()
    first = inc.compile(Resources(tuple(objs)))
    assert inc.units_compiled == 200
    rules = [{"backendRefs": [{"name": "v1", "port": 80, "weight": 42}]}]
    _reparsed(objs, "r17", {"spec": {"rules": rules}})
    second = inc.compile(Resources(tuple(objs)))
    assert inc.units_compiled == 1
    assert second == compile_table(Resources(tuple(objs)))
    moved = [
        a.name for a, b in zip(first.table.parents, second.table.parents, strict=True) if a is not b
    ]
    assert moved == ["service/bench/web17:80"]  # route i is on web{i % 20}
    assert second.table.clusters is first.table.clusters


SLICE = {
    "apiVersion": "discovery.k8s.io/v1",
    "kind": "EndpointSlice",
    "metadata": {
        "name": "v1-abc",
        "namespace": "bench",
        "labels": {"kubernetes.io/service-name": "v1"},
    },
    "addressType": "IPv4",
    "ports": [{"name": "http", "port": 8080}],
    "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}],
}


def test_an_endpoint_change_recompiles_no_route_and_keeps_every_parent() -> None:
    objs = _bench(50, services=5, extra=(SLICE,))
    inc = IncrementalTable()
    first = inc.compile(Resources(tuple(objs)))
    _reparsed(
        objs, "v1-abc", {"endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": False}}]}
    )
    second = inc.compile(Resources(tuple(objs)))
    assert inc.units_compiled == 0
    assert second.table.parents is first.table.parents
    assert second == compile_table(Resources(tuple(objs)))

    def v1_not_ready(r: CompileResult) -> int:
        return sum(
            d.reason == "NoReadyEndpoints" and "bench/v1 " in d.message for d in r.diagnostics
        )

    assert (v1_not_ready(first), v1_not_ready(second)) == (0, 50)  # every route has a v1 backend
    (old_v1,) = [c for c in first.table.clusters if c.service == "v1"]
    (new_v1,) = [c for c in second.table.clusters if c.service == "v1"]
    assert not new_v1.endpoints[0].ready and old_v1.endpoints[0].ready
    others = [
        (a, b)
        for a, b in zip(first.table.clusters, second.table.clusters, strict=True)
        if a.service != "v1"
    ]
    assert others and all(a is b for a, b in others)


def test_a_parents_own_inputs_rebuild_it_without_its_routes() -> None:
    """A Service's clusterIP and its namespace's opaque-ports annotation are read by the
    parent, not by the routes on it."""
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}
    objs = _bench(20, services=2, extra=(ns,))
    inc = IncrementalTable()
    first = inc.compile(Resources(tuple(objs)))
    _reparsed(objs, "web1", {"spec": {"clusterIP": "10.96.0.11"}})
    second = inc.compile(Resources(tuple(objs)))
    assert inc.units_compiled == 10  # the routes on web1 read its ports
    assert second == compile_table(Resources(tuple(objs)))
    moved = [
        b for a, b in zip(first.table.parents, second.table.parents, strict=True) if a is not b
    ]
    assert [(p.name, p.addresses) for p in moved] == [("service/bench/web1:80", ("10.96.0.11",))]  # type: ignore[union-attr]
    _reparsed(
        objs, "bench", {"metadata": {"annotations": {"config.linkerd.io/opaque-ports": "80"}}}
    )
    third = inc.compile(Resources(tuple(objs)))
    assert inc.units_compiled == 0
    assert third == compile_table(Resources(tuple(objs)))
    assert (
        sum(a is not b for a, b in zip(second.table.parents, third.table.parents, strict=True)) == 4
    )
