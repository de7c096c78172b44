"""`NoReadyEndpoints`: a backend that gets traffic while its Service has no ready endpoint
(what Flagger users see as a canary stuck at 503s). Reported only where endpoints are
tracked (EndpointSlices among the inputs) and only for backends with a weight above 0."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.engine.compile.builders import (
    Raw,
    compile_objects,
    mk_backend,
    mk_route,
    mk_service,
    service_parent,
)
from turnout.engine.compile import CompileResult
from turnout.engine.pipeline import compile_files


def mk_slice(ns: str, service: str, port: int, *ready: bool) -> Raw:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-abc",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port}],
        "endpoints": [
            {"addresses": [f"10.0.0.{i + 1}"], "conditions": {"ready": r}}
            for i, r in enumerate(ready)
        ],
    }


def split(primary: int, canary: int, *slices: Raw) -> CompileResult:
    return compile_objects(
        mk_service("shop", "web", ("http", 80)),
        mk_service("shop", "web-primary", ("http", 80)),
        mk_service("shop", "web-canary", ("http", 80)),
        *slices,
        mk_route(
            "shop",
            "web",
            parents=[service_parent("web", 80)],
            rules=[
                {
                    "backendRefs": [
                        mk_backend("web-primary", weight=primary),
                        mk_backend("web-canary", weight=canary),
                    ]
                }
            ],
        ),
    )


def reported(result: CompileResult) -> list[tuple[str, str]]:
    return [(d.pos.path, d.message) for d in result.diagnostics if d.reason == "NoReadyEndpoints"]


def test_a_canary_with_weight_and_no_ready_pod_is_reported_at_its_backend_ref() -> None:
    result = split(
        90,
        10,
        mk_slice("shop", "web-primary", 8080, True),
        mk_slice("shop", "web-canary", 8080, False),
    )
    [(path, message)] = reported(result)
    assert path == "spec.rules[0].backendRefs[1]"
    assert "shop/web-canary port 80 has no ready endpoint (1 not ready)" in message
    assert "weight 10 of 100" in message and "503" in message


def test_a_service_without_any_slice_has_none_where_slices_are_tracked() -> None:
    result = split(90, 10, mk_slice("shop", "web-primary", 8080, True))
    [(path, message)] = reported(result)
    assert path == "spec.rules[0].backendRefs[1]" and "(none)" in message


def test_an_idle_canary_at_weight_zero_is_not_reported() -> None:
    assert reported(split(100, 0, mk_slice("shop", "web-primary", 8080, True))) == []


def test_nothing_is_reported_when_no_endpoints_are_given_at_all() -> None:
    assert reported(split(90, 10)) == []


def test_one_ready_endpoint_is_enough() -> None:
    result = split(
        50,
        50,
        mk_slice("shop", "web-primary", 8080, True),
        mk_slice("shop", "web-canary", 8080, False, True),
    )
    assert reported(result) == []


def test_a_trafficsplit_backend_is_reported_at_the_trafficsplit(tmp_path: Path) -> None:
    """Flagger's SMI path: the warning names the TrafficSplit document and its backend."""
    docs = [
        mk_service("test", "podinfo", ("http", 9898)),
        mk_service("test", "podinfo-primary", ("http", 9898)),
        mk_service("test", "podinfo-canary", ("http", 9898)),
        mk_slice("test", "podinfo-primary", 9898, True),
        mk_slice("test", "podinfo-canary", 9898, False),
        {
            "apiVersion": "split.smi-spec.io/v1alpha1",
            "kind": "TrafficSplit",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "service": "podinfo",
                "backends": [
                    {"service": "podinfo-primary", "weight": "900m"},
                    {"service": "podinfo-canary", "weight": "100m"},
                ],
            },
        },
    ]
    f = tmp_path / "canary.yaml"
    f.write_text(yaml.safe_dump_all(docs))
    compiled = compile_files([f])
    [diag] = [d for d in compiled.diagnostics if d.reason == "NoReadyEndpoints"]
    assert (diag.pos.file, diag.pos.doc_index) == (str(f), 5)
    # the equivalent HTTPRoute's field (spec.backends[1]), the share as written (100m of 1)
    assert diag.pos.path == "spec.rules[0].backendRefs[1]"
    assert "test/podinfo-canary port 9898" in diag.message and "weight 100 of 1000" in diag.message
