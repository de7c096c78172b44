"""backendRef-level filters: header modifiers apply per backend; what a backend cannot do
(redirect, path rewrite, mirror, CORS) is reported and left out instead of silently dropped
further down the pipeline."""

from __future__ import annotations

from tests.engine.compile.builders import (
    compile_objects,
    mk_backend,
    mk_route,
    mk_service,
    service_parent,
)
from turnout.engine import ir


def test_backend_redirect_is_reported_and_left_out_while_headers_stay() -> None:
    backend = mk_backend("web")
    backend["filters"] = [
        {
            "type": "RequestHeaderModifier",
            "requestHeaderModifier": {"set": [{"name": "b", "value": "1"}]},
        },
        {
            "type": "URLRewrite",
            "urlRewrite": {
                "hostname": "x.example",
                "path": {"type": "ReplaceFullPath", "replaceFullPath": "/p"},
            },
        },
    ]
    result = compile_objects(
        mk_service("shop", "web", 80),
        mk_route(
            "shop", "r", parents=[service_parent("web", 80)], rules=[{"backendRefs": [backend]}]
        ),
    )
    (parent,) = [p for p in result.table.parents if p.name == "service/shop/web:80"]
    assert isinstance(parent, ir.ServiceParent)
    (wb,) = parent.producer.rules[0].backends
    assert [type(f).__name__ for f in wb.filters] == ["RequestHeaderFilter", "URLRewriteFilter"]
    rewrite = wb.filters[1]
    assert isinstance(rewrite, ir.URLRewriteFilter) and rewrite.path is None
    (diag,) = [d for d in result.diagnostics if d.reason == "UnsupportedValue"]
    assert diag.pos.path == "spec.rules[0].backendRefs[0].filters"
    assert "URLRewrite is not supported on a backendRef" in diag.message
