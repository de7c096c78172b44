"""TrafficSplit -> HTTPRoute, checked by what a request gets (the same runtime path the proxy
uses, in-process) and by the synthesized model objects themselves."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from turnout.adapters.smi import smi_to_routes
from turnout.cli.offline import OfflineMesh, Request, parse_via
from turnout.engine.diagnostics import Diagnostic
from turnout.engine.model import HTTPRoute, Resources, parse_documents, parse_text
from turnout.engine.model.smi import TrafficSplitRoute
from turnout.engine.pipeline import compile_files

VIA = parse_via("service/test/podinfo:9898")


def mk_service(name: str, *ports: int) -> str:
    lines = "".join(f"\n  - {{port: {p}}}" for p in ports or (9898,))
    return f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: test}}\nspec:\n  ports:{lines}\n"


SERVICES = mk_service("podinfo") + mk_service("podinfo-primary") + mk_service("podinfo-canary")

AB = textwrap.dedent(
    """\
    ---
    apiVersion: specs.smi-spec.io/v1alpha4
    kind: HTTPRouteGroup
    metadata: {name: podinfo, namespace: test}
    spec:
      matches:
      - name: insider
        headers: {x-canary: ^insider$}
      - name: metrics
        pathRegex: /metrics
        methods: [GET]
    ---
    apiVersion: split.smi-spec.io/v1alpha4
    kind: TrafficSplit
    metadata: {name: podinfo, namespace: test}
    spec:
      service: podinfo
      matches: [{kind: HTTPRouteGroup, name: podinfo}]
      backends:
      - {service: podinfo-canary, weight: 100}
      - {service: podinfo-primary, weight: 0}
    """
)


def mesh_for(tmp_path: Path, text: str) -> OfflineMesh:
    src = tmp_path / "in.yaml"
    src.write_text(text)
    return OfflineMesh(compile_files([src]).result.table)


def live(mesh: OfflineMesh, method: str, path: str, **headers: str) -> list[str | None]:
    req = Request(
        method=method,
        url=f"http://podinfo.test:9898{path}",
        headers=tuple((k.replace("_", "-"), v) for k, v in headers.items()),
    )
    return [b.service for b in mesh.send(VIA, req).live_backends]


@pytest.mark.parametrize(
    ("method", "path", "headers", "expected"),
    [
        pytest.param("GET", "/", {"x_canary": "insider"}, "test/podinfo-canary", id="header-match"),
        pytest.param(
            "GET", "/", {"x_canary": "outsider"}, "test/podinfo", id="header-regex-anchored"
        ),
        pytest.param("GET", "/", {}, "test/podinfo", id="no-match-falls-through-to-apex"),
        pytest.param(
            "GET", "/metrics/x", {}, "test/podinfo-canary", id="pathregex-anchored-at-start-only"
        ),
        pytest.param("POST", "/metrics", {}, "test/podinfo", id="method-must-match"),
        pytest.param("GET", "/x/metrics", {}, "test/podinfo", id="pathregex-anchored-at-start"),
    ],
)
def test_ab_split_routes_matching_requests_and_leaves_the_rest_on_the_apex(
    tmp_path: Path, method: str, path: str, headers: dict[str, str], expected: str
) -> None:
    """smi-spec traffic-split v1alpha4: "If the header conditions don't match the incoming
    request, then routing will be handled by the Kubernetes service with the same name as
    `spec.service`"."""
    mesh = mesh_for(tmp_path, SERVICES + AB)
    assert live(mesh, method, path, **headers) == [expected]


def test_zero_weights_answer_500(tmp_path: Path) -> None:
    split = textwrap.dedent(
        """\
        ---
        apiVersion: split.smi-spec.io/v1alpha2
        kind: TrafficSplit
        metadata: {name: podinfo, namespace: test}
        spec:
          service: podinfo
          backends: [{service: podinfo-canary, weight: 0}, {service: podinfo-primary, weight: 0}]
        """
    )
    mesh = mesh_for(tmp_path, SERVICES + split)
    out = mesh.send(VIA, Request(method="GET", url="http://podinfo.test:9898/"))
    assert out.statuses == (500,)


def parsed(text: str) -> Resources:
    docs, load_diags = parse_text(text, file="in.yaml")
    resources, diags = parse_documents(docs)
    assert not load_diags and not diags
    return resources


def test_synthesized_route_is_the_producer_httproute_of_section_14() -> None:
    """HTTPROUTE-SEMANTICS §14: a producer HTTPRoute in the apex's namespace, parentRef the
    apex Service, one rule without matches, backendRefs at the apex port."""
    resources = parsed(
        SERVICES + "---\napiVersion: split.smi-spec.io/v1alpha1\nkind: TrafficSplit\n"
        "metadata: {name: podinfo, namespace: test}\nspec:\n  service: podinfo\n"
        "  backends: [{service: podinfo-canary, weight: '10'}, {service: podinfo-primary, weight: '90'}]\n"
    )
    diags: list[Diagnostic] = []
    out = smi_to_routes(resources, diags)
    [route] = [o for o in out.objects if isinstance(o.obj, TrafficSplitRoute)]
    split = next(o for o in resources.objects if o.obj.kind == "TrafficSplit")
    assert isinstance(route.obj, HTTPRoute)
    assert route.pos == split.pos
    assert route.obj.kind == "TrafficSplit"
    assert (route.obj.namespace, route.obj.name) == ("test", "podinfo")
    [ref] = route.obj.spec.parent_refs
    assert (ref.group, ref.kind, ref.name, ref.port) == ("", "Service", "podinfo", 9898)
    [rule] = route.obj.spec.rules
    assert [(b.name, b.port, b.weight) for b in rule.backend_refs] == [
        ("podinfo-canary", 9898, 10),
        ("podinfo-primary", 9898, 90),
    ]
    assert diags == []
    # Idempotent: a second pass replaces, never duplicates, the synthesized routes.
    again = smi_to_routes(out, diags)
    assert len(again.objects) == len(out.objects)
