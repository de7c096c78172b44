"""`DeltaXdsResources`: our proxy's side of delta xDS, pure (no network): subscriptions,
one answer per response nonce, removals, a NACK that takes back only what it rejected, and
a rebuild that compiles only the RouteConfigurations whose message changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from tests.engine.server.ads_kit import V2_LISTENER, WEB, WEB_V1, WEB_V2, backends, split
from tests.engine.server.builders import compile_table
from turnout.engine.xds import translate
from turnout.engine.xds.cache import version_of
from turnout.proxy.xds_delta import DeltaXdsResources
from turnout.proxy.xds_resources import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    LOAD_ASSIGNMENT_TYPE,
    ROUTE_CONFIGURATION_TYPE,
)

LDS, RDS, CDS, EDS = LISTENER_TYPE, ROUTE_CONFIGURATION_TYPE, CLUSTER_TYPE, LOAD_ASSIGNMENT_TYPE


class Server:
    """Delta responses cut from the engine's translation of a manifest."""

    def __init__(self) -> None:
        self.nonce = 0
        self.view: dict[str, dict[str, Any]] = {}
        self.version = ""

    def publish(self, tmp_path: Path, text: str, version: str) -> None:
        self.view, self.version = translate(compile_table(tmp_path, text)).packed(), version

    def response(self, type_url: str, *names: str, removed: tuple[str, ...] = ()) -> Any:
        self.nonce += 1
        view = self.view[type_url]
        return discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=self.version,
            type_url=type_url,
            nonce=str(self.nonce),
            removed_resources=removed,
            resources=[
                discovery_pb2.Resource(name=n, version=version_of(view[n]), resource=view[n])
                for n in (names or sorted(view))
            ],
        )


def acks(requests: list[Any]) -> list[tuple[str, str]]:
    return [
        (r.type_url.rsplit(".", 1)[-1], r.response_nonce)
        for r in requests
        if r.response_nonce and not r.HasField("error_detail")
    ]


def subscriptions(requests: list[Any]) -> dict[str, tuple[list[str], list[str]]]:
    return {
        r.type_url.rsplit(".", 1)[-1]: (
            list(r.resource_names_subscribe),
            list(r.resource_names_unsubscribe),
        )
        for r in requests
        if r.resource_names_subscribe or r.resource_names_unsubscribe
    }


def sync(client: DeltaXdsResources, server: Server) -> Any:
    client.on_response(server.response(CDS))
    client.on_response(server.response(EDS))
    client.on_response(server.response(LDS))
    verdict = client.on_response(server.response(RDS))
    assert verdict.table is not None
    return verdict


def test_first_sync_subscribes_by_name_and_acks_every_nonce(tmp_path: Path) -> None:
    server, client = Server(), DeltaXdsResources()
    server.publish(tmp_path, split(90, 10), "1")
    first = client.start_stream()
    assert subscriptions(first) == {"Listener": (["*"], []), "Cluster": (["*"], [])}
    cds = client.on_response(server.response(CDS))
    assert subscriptions(cds.requests) == {"ClusterLoadAssignment": ([WEB_V2, WEB_V1], [])}
    assert acks(cds.requests) == [("Cluster", "1")]  # ACKed while it waits
    client.on_response(server.response(EDS))
    lds = client.on_response(server.response(LDS))
    assert subscriptions(lds.requests) == {"RouteConfiguration": ([V2_LISTENER, WEB], [])}
    rds = client.on_response(server.response(RDS))
    assert rds.table is not None and backends(rds.table) == {WEB_V1: 90, WEB_V2: 10}
    assert acks(rds.requests) == [("RouteConfiguration", "4")]
    assert client.table_version == "1"


def test_one_changed_route_config_is_the_only_one_compiled_again(tmp_path: Path) -> None:
    server, client = Server(), DeltaXdsResources()
    server.publish(tmp_path, split(90, 10), "1")
    client.start_stream()
    before = sync(client, server).table
    server.publish(tmp_path, split(50, 50), "2")
    verdict = client.on_response(server.response(RDS, WEB))
    assert verdict.table is not None and backends(verdict.table) == {WEB_V1: 50, WEB_V2: 50}
    assert verdict.table.route_configs[V2_LISTENER] is before.route_configs[V2_LISTENER]
    assert verdict.table.route_configs[WEB] is not before.route_configs[WEB]


def test_removed_listener_unsubscribes_its_route_config(tmp_path: Path) -> None:
    server, client = Server(), DeltaXdsResources()
    server.publish(tmp_path, split(90, 10), "1")
    client.start_stream()
    sync(client, server)
    verdict = client.on_response(server.response(LDS, WEB, removed=(V2_LISTENER,)))
    assert subscriptions(verdict.requests) == {"RouteConfiguration": ([], [V2_LISTENER])}
    assert verdict.table is not None and V2_LISTENER not in verdict.table.listeners


def test_nack_takes_back_only_the_rejected_response(tmp_path: Path) -> None:
    server, client = Server(), DeltaXdsResources()
    server.publish(tmp_path, split(90, 10), "1")
    client.start_stream()
    sync(client, server)
    bad = server.response(RDS, WEB)
    bad.resources[0].resource.value = b"\xff\xff"  # does not decode
    verdict = client.on_response(bad)
    assert verdict.error and "cannot decode" in verdict.error
    [nack] = verdict.requests
    assert nack.response_nonce == bad.nonce and nack.HasField("error_detail")
    # A good table next: only what changed arrives, and it builds on what was ACKed.
    server.publish(tmp_path, split(20, 80), "3")
    verdict = client.on_response(server.response(RDS, WEB))
    assert verdict.table is not None and backends(verdict.table) == {WEB_V1: 20, WEB_V2: 80}


def test_reconnect_says_what_it_has(tmp_path: Path) -> None:
    server, client = Server(), DeltaXdsResources()
    server.publish(tmp_path, split(90, 10), "1")
    client.start_stream()
    sync(client, server)
    again = {r.type_url: r for r in client.start_stream()}
    assert dict(again[LDS].initial_resource_versions) == {
        n: version_of(a) for n, a in server.view[LDS].items()
    }
    assert list(again[RDS].resource_names_subscribe) == [V2_LISTENER, WEB]
    assert dict(again[RDS].initial_resource_versions) == {
        n: version_of(a) for n, a in server.view[RDS].items()
    }
