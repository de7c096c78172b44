"""Opaque Service ports (`config.linkerd.io/opaque-ports`): the Service parent names its own
cluster (`ServiceParent.opaque_cluster`), which the table then has, and the xDS listener
carries it as metadata ``turnout.opaque`` for transparent client proxies."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from tests.engine.compile.builders import (
    Raw,
    compile_objects,
    mk_backend,
    mk_namespace,
    mk_route,
    mk_rule,
    mk_service,
    service_parent,
)
from turnout.engine import ir
from turnout.engine.xds.listeners import service_resources


def annotated(raw: Raw, text: str) -> Raw:
    raw["metadata"]["annotations"] = {"config.linkerd.io/opaque-ports": text}
    return raw


def db_service(*, ports: list[Raw]) -> Raw:
    svc = mk_service("shop", "db")
    svc["spec"] = {"clusterIP": "10.96.0.20", "ports": ports}
    return svc


@pytest.mark.parametrize(
    ("svc_text", "ns_text", "opaque"),
    [
        ("3306", None, True),
        ("3000-4000", None, True),
        ("mysql", None, True),  # by the port's name
        ("13306", None, True),  # by its numeric targetPort
        (None, "3306", True),  # the Namespace's annotation
        ("8080,web", None, False),
        (None, None, False),
    ],
)
def test_a_listed_port_is_opaque_with_its_own_cluster(
    svc_text: str | None, ns_text: str | None, opaque: bool
) -> None:
    svc = db_service(ports=[{"name": "mysql", "port": 3306, "targetPort": 13306}, {"port": 80}])
    if svc_text is not None:
        annotated(svc, svc_text)
    ns = mk_namespace("shop")
    if ns_text is not None:
        annotated(ns, ns_text)
    table = compile_objects(ns, svc).table
    parents = {p.port: p for p in table.parents if isinstance(p, ir.ServiceParent)}
    want = "shop/db:3306" if opaque else None
    assert (parents[3306].opaque_cluster, parents[80].opaque_cluster) == (want, None)
    assert "shop/db:3306" in {c.name for c in table.clusters}  # its own (the default rule's)
    listener, _ = service_resources(parents[3306], client_namespace=None)
    meta = json_format.MessageToDict(listener.metadata.filter_metadata["turnout"])
    assert meta.get("opaque") == want and meta["addresses"] == ["10.96.0.20"]


def test_an_opaque_port_whose_routes_go_elsewhere_still_has_its_own_cluster() -> None:
    svc = annotated(db_service(ports=[{"port": 3306}]), "3306")
    other = mk_service("shop", "db-v2", 3306)
    route = mk_route(
        "shop",
        "db",
        parents=[service_parent("db", 3306)],
        rules=[mk_rule(backends=[mk_backend("db-v2", 3306)])],
    )
    table = compile_objects(svc, other, route).table
    parents = {p.service: p for p in table.parents if isinstance(p, ir.ServiceParent)}
    assert (parents["db"].opaque_cluster, parents["db-v2"].opaque_cluster) == ("shop/db:3306", None)
    assert {c.name for c in table.clusters} == {"shop/db:3306", "shop/db-v2:3306"}
