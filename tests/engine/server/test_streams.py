"""`StreamState`: the SotW protocol rules of one stream, table-driven, no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2

from tests.engine.server.builders import (
    compile_table,
    manifest,
    mk_endpoints,
    mk_route,
    mk_service,
    weighted,
)
from turnout.engine.server.snapshots import Snapshot, View, build_view
from turnout.engine.server.streams import StreamState
from turnout.engine.xds import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    LOAD_ASSIGNMENT_TYPE,
    ROUTE_CONFIGURATION_TYPE,
    translate,
)

WEB = "web.shop.svc.cluster.local:80"
API = "api.shop.svc.cluster.local:80"


def req(type_url: str, *names: str, nonce: str = "", version: str = "", error: str = "") -> Any:
    r = discovery_pb2.DiscoveryRequest(
        type_url=type_url, resource_names=names, response_nonce=nonce, version_info=version
    )
    if error:
        r.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return r


def snap(
    tmp_path: Path, version: int, v2: int = 10, web_port: int | None = None
) -> tuple[Snapshot, View]:
    """`web` splitting to `api` (`v2` percent); with `web_port`, `web` has an endpoint there."""
    endpoints = () if web_port is None else (mk_endpoints("web", web_port),)
    text = manifest(
        mk_service("web"),
        mk_service("api"),
        *endpoints,
        mk_route("web", rules=weighted(("web", 100 - v2), ("api", v2))),
    )
    table = compile_table(tmp_path, text)
    return Snapshot(version=version, table=table), build_view(translate(table))


MESSAGES = {
    LISTENER_TYPE: listener_pb2.Listener,
    ROUTE_CONFIGURATION_TYPE: route_pb2.RouteConfiguration,
    CLUSTER_TYPE: cluster_pb2.Cluster,
    LOAD_ASSIGNMENT_TYPE: endpoint_pb2.ClusterLoadAssignment,
}


def names(responses: list[Any]) -> dict[str, list[str]]:
    """Kind -> resource names of each response."""
    out = {}
    for r in responses:
        found = []
        for packed in r.resources:
            m = MESSAGES[r.type_url]()
            packed.Unpack(m)
            found.append(str(m.cluster_name if r.type_url == LOAD_ASSIGNMENT_TYPE else m.name))
        out[r.type_url.rsplit(".", 1)[-1]] = sorted(found)
    return out


def test_empty_first_lds_is_a_wildcard_and_empty_rds_is_nothing(tmp_path: Path) -> None:
    s = StreamState(peer="p")
    first = req(LISTENER_TYPE)
    first.node.CopyFrom(base_pb2.Node(id="n"))
    s.on_request(first)
    s.on_request(req(ROUTE_CONFIGURATION_TYPE))
    out = s.due(*snap(tmp_path, 1))
    assert names(out) == {"Listener": [API, WEB], "RouteConfiguration": []}


def test_star_is_a_wildcard_and_named_lds_gets_only_its_names(tmp_path: Path) -> None:
    s = StreamState(peer="p")
    s.on_request(req(CLUSTER_TYPE, "*"))
    s.on_request(req(LISTENER_TYPE, WEB))  # what grpcio asks for: its target only
    assert names(s.due(*snap(tmp_path, 1))) == {
        "Cluster": ["shop/api:80", "shop/web:80"],
        "Listener": [WEB],
    }


def test_stale_nonce_is_ignored_and_acked_content_is_not_resent(tmp_path: Path) -> None:
    s = StreamState(peer="p")
    s.on_request(req(ROUTE_CONFIGURATION_TYPE, WEB))
    [r1] = s.due(*snap(tmp_path, 1))
    assert s.on_request(req(ROUTE_CONFIGURATION_TYPE, WEB, nonce="old")).kind == "stale"
    assert s.subscriptions()["RDS"] == (WEB,)
    assert s.due(*snap(tmp_path, 2, v2=20)) == []  # still waiting for r1's answer
    assert (
        s.on_request(req(ROUTE_CONFIGURATION_TYPE, WEB, nonce=r1.nonce, version="1")).kind == "ack"
    )
    assert s.due(*snap(tmp_path, 2)) == []  # same content in a new version: nothing to send
    [r2] = s.due(*snap(tmp_path, 3, v2=50))
    assert r2.version_info == "3" and r2.nonce != r1.nonce


def test_stale_nonce_with_new_names_gets_the_new_names_at_once(tmp_path: Path) -> None:
    """The exact race: a table change sends CDS then EDS (endpoints of a cluster changed);
    the client, on reading CDS (a cluster is back), asks EDS for the new cluster too, with
    the EDS nonce it has, which our EDS response has made stale. The names still count
    (xDS protocol: the nonce only says which response a request answers), and the new
    cluster's endpoints go out without waiting for the first EDS response's ACK."""
    s = StreamState(peer="p")
    first = req(CLUSTER_TYPE)
    first.node.CopyFrom(base_pb2.Node(id="n"))
    s.on_request(first)
    s.on_request(req(LOAD_ASSIGNMENT_TYPE, "shop/web:80"))
    cds1, eds1 = s.due(*snap(tmp_path, 1))
    s.on_request(req(CLUSTER_TYPE, nonce=cds1.nonce, version="1"))
    s.on_request(req(LOAD_ASSIGNMENT_TYPE, "shop/web:80", nonce=eds1.nonce, version="1"))
    # A new table in which web's endpoints changed: CDS, then EDS, go out in one breath.
    cds2, eds2 = s.due(*snap(tmp_path, 2, v2=20, web_port=8081))
    assert (cds2.type_url, eds2.type_url) == (CLUSTER_TYPE, LOAD_ASSIGNMENT_TYPE)
    # The client read cds2 (and wants api's endpoints now) before eds2 reached it.
    verdict = s.on_request(
        req(LOAD_ASSIGNMENT_TYPE, "shop/api:80", "shop/web:80", nonce=eds1.nonce, version="1")
    )
    assert verdict.kind == "stale-update"
    assert s.subscriptions()["EDS"] == ("shop/api:80", "shop/web:80")
    [eds3] = s.due(*snap(tmp_path, 2, v2=20, web_port=8081))
    assert names([eds3]) == {"ClusterLoadAssignment": ["shop/api:80", "shop/web:80"]}
    assert eds3.nonce not in (eds1.nonce, eds2.nonce)
    # The client's answer to eds2 (now stale, same names) changes nothing; eds3's ACK is one.
    late = req(LOAD_ASSIGNMENT_TYPE, "shop/api:80", "shop/web:80", nonce=eds2.nonce, version="2")
    assert s.on_request(late).kind == "stale"
    assert s.due(*snap(tmp_path, 2, v2=20, web_port=8081)) == []
    ack = req(LOAD_ASSIGNMENT_TYPE, "shop/api:80", "shop/web:80", nonce=eds3.nonce, version="2")
    assert s.on_request(ack).kind == "ack"
    assert s.acked()["EDS"] == "2"


@pytest.mark.parametrize("narrow", [True, False], ids=["narrowed", "widened"])
def test_a_subscription_change_sends_the_new_set(tmp_path: Path, narrow: bool) -> None:
    s = StreamState(peer="p")
    start = (WEB, API) if narrow else (WEB,)
    s.on_request(req(ROUTE_CONFIGURATION_TYPE, *start))
    [r1] = s.due(*snap(tmp_path, 1))
    after = (WEB,) if narrow else (WEB, API)
    s.on_request(req(ROUTE_CONFIGURATION_TYPE, *after, nonce=r1.nonce, version="1"))
    assert names(s.due(*snap(tmp_path, 1))) == {"RouteConfiguration": sorted(after)}


def test_nacked_content_is_resent_once_per_newer_table(tmp_path: Path) -> None:
    """A client that NACKs one type rolls all of them back: content it NACKed only for
    another type's sake is what it lacks, so a newer table sends it again; the same table
    never does (no resend loop), and an ACK ends it."""
    s = StreamState(peer="p")
    s.on_request(req(ROUTE_CONFIGURATION_TYPE, WEB))
    [r1] = s.due(*snap(tmp_path, 1))
    verdict = s.on_request(req(ROUTE_CONFIGURATION_TYPE, WEB, nonce=r1.nonce, error="bad regex"))
    assert verdict.kind == "nack" and verdict.nack is not None
    assert (verdict.nack.version, verdict.nack.reason) == ("1", "bad regex")
    assert s.due(*snap(tmp_path, 1)) == []
    [r2] = s.due(*snap(tmp_path, 2))  # a newer table with the same content: once again
    assert (r2.version_info, r2.resources) == ("2", r1.resources)
    s.on_request(req(ROUTE_CONFIGURATION_TYPE, WEB, nonce=r2.nonce, error="bad regex"))
    assert s.due(*snap(tmp_path, 2)) == []
    [r3] = s.due(*snap(tmp_path, 3))
    s.on_request(req(ROUTE_CONFIGURATION_TYPE, WEB, nonce=r3.nonce, version="3"))
    assert s.due(*snap(tmp_path, 4)) == []  # ACKed: equal content is not sent again
    assert len(s.due(*snap(tmp_path, 5, v2=70))) == 1


def test_one_response_per_type_in_flight(tmp_path: Path) -> None:
    s = StreamState(peer="p")
    s.on_request(req(ROUTE_CONFIGURATION_TYPE, WEB))
    [r1] = s.due(*snap(tmp_path, 1))
    assert s.due(*snap(tmp_path, 2, v2=20)) == []  # r1 not yet ACKed
    s.on_request(req(ROUTE_CONFIGURATION_TYPE, WEB, nonce=r1.nonce, version="1"))
    [r3] = s.due(*snap(tmp_path, 3, v2=30))  # the newest, v2 is skipped
    assert r3.version_info == "3"


def test_a_view_keeps_wire_bytes_only_and_equal_tables_pack_equal(tmp_path: Path) -> None:
    """A view is what goes on the wire: no decoded message is kept beside it (for 10,000
    routes they weighed 6 times their bytes), and equal content packs to equal bytes, which
    is how a stream tells a change from none."""
    _, view = snap(tmp_path, 1)
    _, again = snap(tmp_path, 2)
    for url, named in view.items():
        assert named, url
        for packed in named.values():
            assert isinstance(packed, any_pb2.Any) and packed.type_url == url
    assert view == again
    _, changed = snap(tmp_path, 3, v2=20)
    assert changed[ROUTE_CONFIGURATION_TYPE] != view[ROUTE_CONFIGURATION_TYPE]
    assert changed[LISTENER_TYPE] == view[LISTENER_TYPE]


def test_sync_says_per_type_whether_the_client_runs_the_current_table(tmp_path: Path) -> None:
    """istioctl proxy-status's words: IGNORED (never asked), NOT SENT, STALE (in flight,
    NACKed, or a newer table not looked at yet), SYNCED (ACKed what the current table says)."""
    s = StreamState(peer="p")
    s.on_request(req(LISTENER_TYPE))
    assert s.sync("1") == {
        "LDS": "NOT SENT",
        "RDS": "IGNORED",
        "CDS": "IGNORED",
        "EDS": "IGNORED",
        "POLICY": "IGNORED",
    }
    one, view = snap(tmp_path, 1)
    [lds] = s.due(one, view)
    assert s.sync("1")["LDS"] == "STALE"  # in flight
    s.on_request(req(LISTENER_TYPE, nonce=lds.nonce, version="1"))
    assert s.sync("1")["LDS"] == "SYNCED"
    assert s.sync("2")["LDS"] == "STALE"  # the server has a newer table this stream has not seen
    two, view2 = snap(tmp_path, 2, v2=20)  # a route change: no listener changes
    assert s.due(two, view2) == []
    assert s.sync("2")["LDS"] == "SYNCED" and s.acked() == {"LDS": "1"}
    s.on_request(req(ROUTE_CONFIGURATION_TYPE, WEB))
    [rds] = s.due(two, view2)
    s.on_request(req(ROUTE_CONFIGURATION_TYPE, WEB, nonce=rds.nonce, error="bad regex"))
    assert s.sync("2")["RDS"] == "STALE" and s.sent()["RDS"] == "2"
