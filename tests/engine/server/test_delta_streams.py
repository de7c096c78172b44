"""`DeltaStreamState`: the incremental xDS rules of one stream (Envoy's xDS protocol,
"Incremental xDS"), table-driven, no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from tests.engine.server.builders import compile_table, manifest, mk_route, mk_service, weighted
from turnout.engine.server.delta_streams import DeltaStreamState
from turnout.engine.server.encoded import serialize
from turnout.engine.server.snapshots import Built, Snapshot
from turnout.engine.xds import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    LOAD_ASSIGNMENT_TYPE,
    ROUTE_CONFIGURATION_TYPE,
)
from turnout.engine.xds.cache import ResourceCache

WEB = "web.shop.svc.cluster.local:80"
API = "api.shop.svc.cluster.local:80"
LDS, RDS, CDS, EDS = LISTENER_TYPE, ROUTE_CONFIGURATION_TYPE, CLUSTER_TYPE, LOAD_ASSIGNMENT_TYPE


def req(
    type_url: str,
    *subscribe: str,
    unsubscribe: tuple[str, ...] = (),
    nonce: str = "",
    error: str = "",
    initial: dict[str, str] | None = None,
) -> Any:
    r = discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url,
        resource_names_subscribe=subscribe,
        resource_names_unsubscribe=unsubscribe,
        response_nonce=nonce,
        initial_resource_versions=initial or {},
    )
    if error:
        r.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return r


class Tables:
    """Snapshots published in order, sharing one cache (as `AdsServer` does)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path, self.cache, self.current = tmp_path, ResourceCache(), None
        self.version = 0

    async def publish(self, v2: int = 10, *, api: bool = True) -> tuple[Snapshot, Built]:
        docs = [mk_service("web"), mk_route("web", rules=weighted(("web", 100 - v2), ("api", v2)))]
        if api:
            docs.insert(1, mk_service("api"))
        self.version += 1
        table = compile_table(self.tmp_path, manifest(*docs), name=f"m{self.version}.yaml")
        prev = self.current
        if prev is not None:
            prev.previous = None
        snap = Snapshot(version=self.version, table=table, cache=self.cache, previous=prev)
        self.current = snap
        built = await snap.built(None)
        assert built is not None
        return snap, built


def stream(*first: Any) -> DeltaStreamState:
    s = DeltaStreamState(peer="p")
    for i, r in enumerate(first):
        if i == 0:
            r.node.CopyFrom(base_pb2.Node(id="n"))
        s.on_request(r)
    return s


def sent(responses: list[Any]) -> dict[str, tuple[list[str], list[str]]]:
    """Kind -> (resource names, removed names) of each response."""
    return {
        r.type_url.rsplit(".", 1)[-1]: (
            [res.name for res in r.resources],
            list(r.removed_resources),
        )
        for r in responses
    }


def ack_all(s: DeltaStreamState, responses: list[Any]) -> None:
    for r in responses:
        assert s.on_request(req(r.type_url, nonce=r.nonce)).kind == "ack"


@pytest.fixture
def tables(tmp_path: Path) -> Tables:
    return Tables(tmp_path)


async def test_legacy_wildcard_then_only_the_changed_resource(tables: Tables) -> None:
    s = stream(req(CDS), req(LDS), req(RDS, WEB, API), req(EDS, "shop/web:80"))
    out = s.due(*await tables.publish())
    assert sent(out) == {
        "Cluster": (["shop/api:80", "shop/web:80"], []),
        "ClusterLoadAssignment": (["shop/web:80"], []),
        "Listener": ([API, WEB], []),
        "RouteConfiguration": ([API, WEB], []),
    }
    assert all(r.system_version_info == "1" for r in out)
    assert all(res.version and len(res.version) == 16 for r in out for res in r.resources)
    ack_all(s, out)
    assert s.sync("1") == {k: "SYNCED" for k in ("CDS", "EDS", "LDS", "RDS")} | {
        "POLICY": "IGNORED"
    }
    snap2, built2 = await tables.publish(v2=20)
    out = s.due(snap2, built2)
    assert sent(out) == {"RouteConfiguration": ([WEB], [])}
    assert snap2.changes(None) is not None  # the stream looked at the changed names only
    ack_all(s, out)
    assert s.due(*await tables.publish(v2=20)) == []  # equal table: nothing


async def test_named_lds_is_not_a_wildcard_and_unsubscribe_stops_updates(tables: Tables) -> None:
    s = stream(req(LDS, WEB), req(RDS, WEB, API))
    first = s.due(*await tables.publish())
    assert sent(first) == {"Listener": ([WEB], []), "RouteConfiguration": ([API, WEB], [])}
    ack_all(s, first)
    s.on_request(req(RDS, unsubscribe=(WEB,)))
    assert s.subscriptions()["RDS"] == (API,)
    assert s.due(*await tables.publish(v2=30)) == []  # web's routes changed, not api's


async def test_removed_resources_for_a_wildcard(tables: Tables) -> None:
    s = stream(req(LDS), req(CDS))
    ack_all(s, s.due(*await tables.publish()))
    out = s.due(*await tables.publish(api=False))
    # api's Service is gone: its listener and cluster are removed, and web's share to it now
    # points at the invalid cluster (web's routes changed too, but RDS is not subscribed).
    assert sent(out) == {
        "Cluster": (["turnout/invalid"], ["shop/api:80"]),
        "Listener": ([], [API]),
    }
    ack_all(s, out)
    assert s.due(*await tables.publish(api=False, v2=11)) == []


async def test_a_name_that_does_not_exist_is_removed_once(tables: Tables) -> None:
    s = stream(req(RDS, WEB, "nope"))
    out = s.due(*await tables.publish())
    assert sent(out) == {"RouteConfiguration": ([WEB], ["nope"])}
    ack_all(s, out)
    assert s.due(*await tables.publish(v2=10)) == []
    out = s.due(*await tables.publish(v2=40))
    assert sent(out) == {"RouteConfiguration": ([WEB], [])}


async def test_nack_keeps_known_and_is_resent_once_with_a_newer_table(tables: Tables) -> None:
    s = stream(req(RDS, WEB))
    ack_all(s, s.due(*await tables.publish()))
    snap2 = await tables.publish(v2=20)
    [r] = s.due(*snap2)
    verdict = s.on_request(req(RDS, nonce=r.nonce, error="bad weights"))
    assert verdict.kind == "nack" and verdict.nack is not None
    assert verdict.nack.reason == "bad weights" and verdict.nack.version == "2"
    assert s.due(*snap2) == []  # not again for the same table
    assert s.sync("2")["RDS"] == "STALE"
    [again] = s.due(*await tables.publish(v2=20))  # a newer table: once more
    assert [res.version for res in again.resources] == [res.version for res in r.resources]
    ack_all(s, [again])
    assert s.nacks() == []


async def test_reconnect_with_initial_versions_sends_only_what_changed(tables: Tables) -> None:
    old = stream(req(LDS), req(RDS, WEB, API))
    first = old.due(*await tables.publish())
    versions = {r.type_url: {res.name: res.version for res in r.resources} for r in first}
    # The same server, a new stream: the client says what it has.
    s = stream(req(LDS, initial=versions[LDS]), req(RDS, WEB, API, initial=versions[RDS]))
    assert s.due(tables.current, await tables.current.built(None)) == []  # type: ignore[union-attr,arg-type]
    stale = dict(versions[RDS], **{WEB: "0000000000000000"})
    s = stream(req(LDS, initial=versions[LDS]), req(RDS, WEB, API, initial=stale))
    out = s.due(tables.current, await tables.current.built(None))  # type: ignore[union-attr,arg-type]
    assert sent(out) == {"RouteConfiguration": ([WEB], [])}
    gone = stream(req(LDS, initial={**versions[LDS], "old.shop.svc.cluster.local:80": "ab"}))
    out = gone.due(tables.current, await tables.current.built(None))  # type: ignore[union-attr,arg-type]
    assert sent(out) == {"Listener": ([], ["old.shop.svc.cluster.local:80"])}


async def test_subscribe_while_in_flight_is_answered_at_once(tables: Tables) -> None:
    s = stream(req(RDS, WEB))
    snap = await tables.publish()
    [r1] = s.due(*snap)
    assert s.on_request(req(RDS, API)).kind == "update"  # before the ACK of r1
    [r2] = s.due(*snap)
    assert sent([r2]) == {"RouteConfiguration": ([API], [])} and r2.nonce != r1.nonce
    ack_all(s, [r1, r2])
    assert s.due(*snap) == []
    assert s.sync("1")["RDS"] == "SYNCED"


async def test_star_and_unsubscribing_star(tables: Tables) -> None:
    s = stream(req(CDS, "*"))
    out = s.due(*await tables.publish())
    assert sent(out)["Cluster"][0] == ["shop/api:80", "shop/web:80"]
    ack_all(s, out)
    s.on_request(req(CDS, "shop/web:80", unsubscribe=("*",)))
    assert s.subscriptions()["CDS"] == ("shop/web:80",)
    assert s.due(*await tables.publish(api=False)) == []  # api is no longer of interest


async def test_stale_nonce_is_neither_ack_nor_nack(tables: Tables) -> None:
    s = stream(req(RDS, WEB))
    snap = await tables.publish()
    [r1] = s.due(*snap)
    assert s.on_request(req(RDS, nonce="999")).kind == "stale"
    assert s.due(*snap) == []  # r1 still in flight
    ack_all(s, [r1])
    assert s.acked() == {"RDS": "1"}


async def test_a_response_never_answered_does_not_block_the_stream(tables: Tables) -> None:
    s = stream(req(RDS, WEB))
    snap = await tables.publish()
    s.due(*snap)  # never answered
    s.on_request(req(RDS, API))
    [r2] = s.due(*snap)
    ack_all(s, [r2])
    [again] = s.due(*snap)  # what r1 carried is sent again
    assert sent([again]) == {"RouteConfiguration": ([WEB], [])}
    ack_all(s, [again])
    assert sent(s.due(*await tables.publish(v2=30))) == {"RouteConfiguration": ([WEB], [])}


async def test_the_body_is_shared_and_parses_to_the_message_serialize_would_give(
    tables: Tables,
) -> None:
    """Two streams due the same names get one body (serialized once) and their own nonce;
    body + nonce field parses to the `DeltaDiscoveryResponse` built field by field."""
    first = (req(CDS), req(LDS), req(RDS, WEB, API), req(EDS, "shop/web:80"))
    a, b = stream(*first), stream(*first)
    next(b._nonces)  # b's nonces run one ahead of a's
    snap, built = await tables.publish()
    ra, rb = a.due(snap, built), b.due(snap, built)
    for x, y in zip(ra, rb, strict=True):
        assert x.body is y.body and x.nonce != y.nonce
        assert y.data != x.data
    gone = stream(req(RDS, WEB, "nope.shop.svc.cluster.local:80"))
    [rgone] = gone.due(snap, built)
    for r in [*ra, *rb, rgone]:
        view = built.view[r.type_url]
        names = sorted(n for n in view if n in {res.name for res in r.resources})
        expected = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info="1",
            type_url=r.type_url,
            nonce=r.nonce,
            removed_resources=r.removed_resources,
            resources=[
                discovery_pb2.Resource(
                    name=n, version=built.versions[r.type_url][n], resource=view[n]
                )
                for n in names
            ],
        )
        parsed = discovery_pb2.DeltaDiscoveryResponse.FromString(serialize(r))
        assert parsed == expected
        assert parsed.SerializeToString() == expected.SerializeToString()
        assert sorted(serialize(r)) == sorted(expected.SerializeToString())  # same bytes, moved
    assert rgone.removed_resources == ("nope.shop.svc.cluster.local:80",)
    assert serialize(expected) == expected.SerializeToString()  # messages still serialize


async def test_an_empty_table_is_said_once_to_a_wildcard_subscriber(tmp_path: Path) -> None:
    # No resources at all (a proxy started before any manifest): without an empty first
    # answer the client would wait for LDS/CDS forever and never be ready.
    table = compile_table(tmp_path, manifest(), name="empty.yaml")
    snap = Snapshot(version=1, table=table, cache=ResourceCache())
    built = await snap.built(None)
    assert built is not None
    s = stream(req(LDS), req(CDS), req(RDS, WEB))
    out = s.due(snap, built)
    assert sent(out) == {
        "Cluster": ([], []),
        "Listener": ([], []),
        "RouteConfiguration": ([], [WEB]),
    }
    ack_all(s, out)
    assert s.due(snap, built) == []  # said once
    # A client that comes back with what it had is not told again that nothing changed.
    again = stream(req(LDS, initial={"x": "ab"}))
    assert sent(again.due(snap, built)) == {"Listener": ([], ["x"])}
