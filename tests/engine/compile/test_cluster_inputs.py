"""What the compiler may conclude when its inputs are the whole cluster
(`CompileOptions.complete_inputs`, the Kubernetes source), and FQDN EndpointSlices."""

from __future__ import annotations

from tests.engine.compile.builders import (
    Raw,
    compile_objects,
    mk_backend,
    mk_route,
    mk_rule,
    mk_service,
    service_parent,
)
from turnout.engine.compile import CompileOptions, CompileResult

CLUSTER = CompileOptions(complete_inputs=True)


def orphan(*extra: Raw, options: CompileOptions = CLUSTER) -> CompileResult:
    """A route whose parent Service `gone` is not among the inputs."""
    route = mk_route(
        "shop",
        "web",
        parents=[service_parent("gone", 80)],
        rules=[mk_rule(backends=[mk_backend("web")])],
    )
    return compile_objects(mk_service("shop", "web", ("http", 80)), route, *extra, options=options)


def accepted(result: CompileResult) -> tuple[str, str, str]:
    (status,) = result.statuses
    (parent,) = status.parents
    cond = next(c for c in parent.conditions if c.type == "Accepted")
    return cond.status, cond.reason, cond.message


def test_a_missing_parent_service_in_the_cluster_is_not_accepted_no_matching_parent() -> None:
    """Linkerd's answer for a parentRef whose Service does not exist; the spec's
    `NoMatchingParent` reason ("no matching parents")."""
    result = orphan()
    assert accepted(result) == (
        "False",
        "NoMatchingParent",
        "parent Service shop/gone does not exist",
    )
    assert [p.service for p in result.table.parents] == ["web"]  # nothing for `gone`
    assert [d.reason for d in result.diagnostics] == ["NoMatchingParent"]


def test_a_manifests_directory_still_assumes_the_port_it_names() -> None:
    result = orphan(options=CompileOptions())
    assert accepted(result)[:2] == ("True", "Accepted")
    assert "assuming port 80" in result.diagnostics[0].message


def mk_slice(name: str, address_type: str, *addresses: str) -> Raw:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": address_type,
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": [a]} for a in addresses],
    }


def test_fqdn_slices_are_not_served_as_socket_addresses_and_say_so() -> None:
    route = mk_route(
        "shop",
        "web",
        parents=[service_parent("web", 80)],
        rules=[mk_rule(backends=[mk_backend("web")])],
    )
    result = compile_objects(
        mk_service("shop", "web", ("http", 80)),
        mk_slice("web-ip", "IPv4", "10.0.0.1"),
        mk_slice("web-dns", "FQDN", "db.example.com"),
        route,
    )
    (cluster,) = result.table.clusters
    assert [(e.address, e.port) for e in cluster.endpoints] == [("10.0.0.1", 8080)]
    (diag,) = [d for d in result.diagnostics if d.reason == "UnsupportedAddressType"]
    assert diag.pos.path == "addressType" and diag.pos.doc_index == 2
    assert "web-dns has addressType FQDN" in diag.message
