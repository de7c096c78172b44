"""Small manifest builders for the ADS server and directory source tests.

`mk_service`, `mk_endpoints`, `mk_route` return one YAML document each; `manifest(*docs)`
joins them; `compile_table(tmp_path, text)` compiles with the engine and fails on any
error diagnostic, so each test starts from a table the product would really serve.
"""

from __future__ import annotations

from pathlib import Path

from turnout.engine.ir import RouteTable
from turnout.engine.pipeline import compile_files


def mk_service(name: str, *, ns: str = "shop", port: int = 80, proto: str = "http") -> str:
    return (
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n"
        f"spec:\n  ports: [{{name: {proto}, port: {port}, appProtocol: {proto}}}]\n"
    )


def mk_endpoints(service: str, port: int, *, ns: str = "shop", svc_port_name: str = "http") -> str:
    """An EndpointSlice putting `service`'s one ready endpoint at 127.0.0.1:`port`."""
    return (
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
        f"metadata: {{name: {service}-x1, namespace: {ns},"
        f" labels: {{kubernetes.io/service-name: {service}}}}}\n"
        f"addressType: IPv4\nports: [{{name: {svc_port_name}, port: {port}, protocol: TCP}}]\n"
        'endpoints:\n- addresses: ["127.0.0.1"]\n  conditions: {ready: true}\n'
    )


def mk_route(
    name: str,
    *,
    ns: str = "shop",
    parent: str = "web",
    parent_ns: str | None = None,
    port: int = 80,
    kind: str = "HTTPRoute",
    rules: str,
) -> str:
    """A mesh (GAMMA) route on Service `parent`; `rules` is the YAML of `spec.rules`."""
    pns = f", namespace: {parent_ns}" if parent_ns else ""
    return (
        f"apiVersion: gateway.networking.k8s.io/v1\nkind: {kind}\n"
        f"metadata: {{name: {name}, namespace: {ns}}}\nspec:\n"
        f'  parentRefs: [{{group: "", kind: Service, name: {parent}{pns}, port: {port}}}]\n'
        f"  rules:\n{rules}"
    )


def weighted(*backends: tuple[str, int], port: int = 80) -> str:
    refs = ", ".join(f"{{name: {n}, port: {port}, weight: {w}}}" for n, w in backends)
    return f"  - backendRefs: [{refs}]\n"


def manifest(*docs: str) -> str:
    return "---\n".join(docs)


def compile_table(tmp_path: Path, text: str, *, name: str = "manifest.yaml") -> RouteTable:
    path = tmp_path / f"{abs(hash(text))}-{name}"
    path.write_text(text)
    compiled = compile_files([path])
    errors = [str(d) for d in compiled.diagnostics if d.severity.value == "error"]
    assert not errors, errors
    return compiled.result.table
