"""backendRef-level filters (HTTPROUTE-SEMANTICS §7.9): header modifiers, RequestRedirect and
URLRewrite stay on the backend, resolved as at rule level (the parent's port, the rule's only
PathPrefix); what a backend cannot do (mirror, CORS) is reported and left out instead of
silently dropped further down the pipeline."""

from __future__ import annotations

from tests.engine.compile.builders import (
    Raw,
    compile_objects,
    mk_backend,
    mk_route,
    mk_rule,
    mk_service,
    redirect,
    service_parent,
)
from turnout.engine import ir
from turnout.engine.compile import CompileResult


def _filtered(*filters: Raw, name: str = "web", weight: int | None = None) -> Raw:
    backend = mk_backend(name, weight=weight)
    backend["filters"] = list(filters)
    return backend


def _compile(rule: Raw, port: int = 80) -> CompileResult:
    return compile_objects(
        mk_service("shop", "web", port),
        mk_service("shop", "web-v2", port),
        mk_route("shop", "r", parents=[service_parent("web", port)], rules=[rule]),
    )


def _backends(result: CompileResult, port: int = 80) -> tuple[ir.WeightedBackend, ...]:
    (parent,) = [p for p in result.table.parents if p.name == f"service/shop/web:{port}"]
    assert isinstance(parent, ir.ServiceParent)
    (rule,) = [r for r in parent.producer.rules if r.name.startswith("httproute/shop/r/")]
    return rule.backends


REWRITE = {
    "type": "URLRewrite",
    "urlRewrite": {
        "hostname": "x.example",
        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"},
    },
}


def test_backend_redirect_is_kept_with_the_parent_port_and_the_rule_prefix() -> None:
    """§7.2 "At backendRef level: same behaviour when that backend is picked": the port
    defaults to the parent's (mesh: the Service port) and ReplacePrefixMatch replaces the
    rule's PathPrefix."""
    moved = redirect(path={"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"})
    result = _compile(
        mk_rule(
            path="/old/",
            backends=[mk_backend("web", weight=1), _filtered(moved, name="web-v2", weight=1)],
        ),
        port=8080,
    )
    plain, moving = _backends(result, port=8080)
    assert plain.filters == ()
    assert moving.filters == (
        ir.RedirectFilter(
            status_code=302, port=8080, path=ir.ReplacePrefix(prefix="/old", replacement="/new")
        ),
    )
    assert not [d for d in result.diagnostics if d.reason == "UnsupportedValue"]


def test_backend_url_rewrite_keeps_its_path_and_hostname_next_to_header_filters() -> None:
    headers = {
        "type": "RequestHeaderModifier",
        "requestHeaderModifier": {"set": [{"name": "b", "value": "1"}]},
    }
    result = _compile(mk_rule(path="/api", backends=[_filtered(headers, REWRITE)]))
    (wb,) = _backends(result)
    assert [type(f).__name__ for f in wb.filters] == ["RequestHeaderFilter", "URLRewriteFilter"]
    assert wb.filters[1] == ir.URLRewriteFilter(
        hostname="x.example", path=ir.ReplacePrefix(prefix="/api", replacement="/v2")
    )
    assert not [d for d in result.diagnostics if d.reason == "UnsupportedValue"]


def test_backend_mirror_and_cors_are_reported_and_left_out() -> None:
    mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "web", "port": 80}}}
    cors = {"type": "CORS", "cors": {"allowOrigins": ["https://a.example"]}}
    result = _compile(mk_rule(backends=[_filtered(mirror, cors)]))
    (wb,) = _backends(result)
    assert wb.filters == ()
    diags = [d for d in result.diagnostics if d.reason == "UnsupportedValue"]
    assert [d.pos.path for d in diags] == ["spec.rules[0].backendRefs[0].filters"] * 2
    assert {d.message.split(" is ")[0] for d in diags} == {"RequestMirror", "CORS"}


def test_prefix_rewrite_on_two_backends_without_a_prefix_match_drops_the_rule() -> None:
    """The CRD's `exists_one` lets two backendRefs with ReplacePrefixMatch through on an Exact
    match; "ReplacePrefixMatch is only compatible with a PathPrefix HTTPRouteMatch" (API
    reference), so the rule is dropped and reported at the first such filter."""
    moved = redirect(path={"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"})
    result = _compile(
        mk_rule(
            path="/old",
            path_type="Exact",
            backends=[_filtered(moved), _filtered(REWRITE, name="web-v2")],
        )
    )
    (diag,) = [d for d in result.diagnostics if d.reason == "UnsupportedValue"]
    assert diag.pos.path == "spec.rules[0].backendRefs[0].filters[0]"
    assert "the rule is dropped" in diag.message
    (parent,) = [p for p in result.table.parents if p.name == "service/shop/web:80"]
    assert isinstance(parent, ir.ServiceParent)
    assert not [r for r in parent.producer.rules if r.name.startswith("httproute/shop/r/")]
