"""The EndpointSlice annotation `identity.turnout.dev/name` -> `ir.Endpoint.identity`, and
through xDS to the proxy's `Endpoint.identity` (docs/xds.md "Endpoint identities")."""

from __future__ import annotations

import json
from pathlib import Path

from turnout.cli.offline import offline_runtime

IDENT = "api.shop.serviceaccount.identity.cluster.local"


def manifests(tmp: Path, annotations: dict[str, str]) -> str:
    docs = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "api", "namespace": "shop"},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "api-1",
                "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "api"},
                "annotations": annotations,
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["10.0.0.1"]}],
        },
    ]
    f = tmp / "m.yaml"
    f.write_text("\n---\n".join(json.dumps(d) for d in docs))
    return str(f)


def test_the_slice_annotation_reaches_the_proxy_endpoint(tmp_path: Path) -> None:
    table, _ = offline_runtime(
        [manifests(tmp_path, {"identity.turnout.dev/name": IDENT})], namespace="shop"
    )
    (ep,) = table.clusters["shop/api:80"].endpoints
    assert (ep.address, ep.port, ep.identity) == ("10.0.0.1", 8080, IDENT)


def test_without_the_annotation_an_endpoint_has_no_identity(tmp_path: Path) -> None:
    table, _ = offline_runtime([manifests(tmp_path, {})], namespace="shop")
    (ep,) = table.clusters["shop/api:80"].endpoints
    assert ep.identity is None
