"""Small builders for raw manifests (camelCase dicts, as users write them) and a runner."""

from __future__ import annotations

from typing import Any

from turnout.engine.diagnostics import Diagnostic, Severity, SourcePos
from turnout.engine.model import Document, parse_documents
from turnout.engine.validate import Channel, CRDSet, validate_resources, validate_with_crds

GW = "gateway.networking.k8s.io/v1"
Raw = dict[str, Any]


def mk_route(*rules: Raw, parent_refs: list[Raw] | None = None, kind: str = "HTTPRoute") -> Raw:
    spec: Raw = {"parentRefs": parent_refs or [{"name": "gw"}], "rules": list(rules)}
    return {
        "apiVersion": GW,
        "kind": kind,
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": spec,
    }


def mk_rule(
    *,
    filters: list[Raw] | None = None,
    backends: list[Raw] | None = None,
    matches: list[Raw] | None = None,
    **extra: Any,
) -> Raw:
    rule: Raw = dict(extra)
    if matches is not None:
        rule["matches"] = matches
    if filters is not None:
        rule["filters"] = filters
    if backends is not None:
        rule["backendRefs"] = backends
    return rule


def mk_backend(name: str = "svc", port: int | None = 80, **extra: Any) -> Raw:
    ref: Raw = {"name": name, **extra}
    if port is not None:
        ref["port"] = port
    return ref


def mk_filter(kind: str, **members: Any) -> Raw:
    return {"type": kind, **members}


def mk_headers(**ops: Any) -> Raw:
    return dict(ops)


def mk_redirect(path_type: str, value: str, field: str | None = None) -> Raw:
    key = field or (
        "replacePrefixMatch" if path_type == "ReplacePrefixMatch" else "replaceFullPath"
    )
    return {"path": {"type": path_type, key: value}}


def mk_gateway(*listeners: Raw, **spec: Any) -> Raw:
    body: Raw = {"gatewayClassName": "gc", "listeners": list(listeners), **spec}
    return {
        "apiVersion": GW,
        "kind": "Gateway",
        "metadata": {"name": "g", "namespace": "ns"},
        "spec": body,
    }


def mk_listener(name: str = "http", protocol: str = "HTTP", port: int = 80, **extra: Any) -> Raw:
    return {"name": name, "protocol": protocol, "port": port, **extra}


def as_document(raw: Raw) -> Document:
    return Document(pos=SourcePos(file="t.yaml", doc_index=0), raw=raw)


def errors_builtin(raw: Raw, *, channel: Channel = "experimental") -> list[Diagnostic]:
    """Schema (model) and built-in rule errors for one manifest."""
    resources, diags = parse_documents([as_document(raw)])
    found = diags + validate_resources(resources, channel=channel)
    return [d for d in found if d.severity is Severity.ERROR]


def errors_crds(raw: Raw, crds: CRDSet) -> list[Diagnostic]:
    """jsonschema + CEL errors for one manifest."""
    found = validate_with_crds([as_document(raw)], crds)
    return [d for d in found if d.severity is Severity.ERROR]
