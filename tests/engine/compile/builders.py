"""Small builders for compile tests: raw Kubernetes objects as users write them.

Each `mk_*` returns a plain dict (the YAML a user would write, camelCase and all), so tests
say only what matters to them; `compile_objects` parses them the way the pipeline does and
runs the compiler. Nothing here touches the file system.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

from turnout.engine.compile import (
    DEFAULT_COMPILE_OPTIONS,
    CompileOptions,
    CompileResult,
    compile_table,
)
from turnout.engine.config import CONTROLLER_NAME
from turnout.engine.diagnostics import SourcePos
from turnout.engine.model import Document, parse_documents

Raw = dict[str, object]
GW_V1 = "gateway.networking.k8s.io/v1"


def mk_namespace(name: str, **labels: str) -> Raw:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def mk_service(ns: str, name: str, *ports: int | tuple[str, int]) -> Raw:
    """`mk_service("shop", "web", 80, ("admin", 8080))`: bare numbers get no port name."""
    raw_ports: list[Raw] = []
    for p in ports or (80,):
        if isinstance(p, tuple):
            raw_ports.append({"name": p[0], "port": p[1]})
        else:
            raw_ports.append({"port": p})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": raw_ports},
    }


def mk_gateway_class(name: str = "turnout", controller: str = CONTROLLER_NAME) -> Raw:
    return {
        "apiVersion": GW_V1,
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": controller},
    }


def mk_listener(
    name: str,
    port: int,
    *,
    protocol: str = "HTTP",
    hostname: str | None = None,
    allowed_from: str | None = None,
) -> Raw:
    li: Raw = {"name": name, "port": port, "protocol": protocol}
    if allowed_from is not None:
        li["allowedRoutes"] = {"namespaces": {"from": allowed_from}}
    if hostname is not None:
        li["hostname"] = hostname
    if protocol == "HTTPS":
        li["tls"] = {"certificateRefs": [{"name": "tls"}]}
    return li


def mk_gateway(ns: str, name: str, *listeners: Raw, cls: str = "turnout") -> Raw:
    return {
        "apiVersion": GW_V1,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "gatewayClassName": cls,
            "listeners": list(listeners) or [mk_listener("http", 80)],
        },
    }


def service_parent(name: str, port: int | None = None, *, ns: str | None = None) -> Raw:
    ref: Raw = {"group": "", "kind": "Service", "name": name}
    if port is not None:
        ref["port"] = port
    if ns is not None:
        ref["namespace"] = ns
    return ref


def gateway_parent(name: str, *, ns: str | None = None, section: str | None = None) -> Raw:
    ref: Raw = {"name": name}
    if ns is not None:
        ref["namespace"] = ns
    if section is not None:
        ref["sectionName"] = section
    return ref


def mk_backend(
    name: str, port: int = 80, *, weight: int | None = None, ns: str | None = None
) -> Raw:
    ref: Raw = {"name": name, "port": port}
    if weight is not None:
        ref["weight"] = weight
    if ns is not None:
        ref["namespace"] = ns
    return ref


def mk_rule(
    *,
    path: str | None = None,
    path_type: str = "PathPrefix",
    headers: Mapping[str, str] | None = None,
    backends: Sequence[Raw] = (),
    filters: Sequence[Raw] = (),
) -> Raw:
    rule: Raw = {}
    if path is not None or headers:
        match: Raw = {}
        if path is not None:
            match["path"] = {"type": path_type, "value": path}
        if headers:
            match["headers"] = [{"name": k, "value": v} for k, v in headers.items()]
        rule["matches"] = [match]
    if backends:
        rule["backendRefs"] = list(backends)
    if filters:
        rule["filters"] = list(filters)
    return rule


def mk_route(
    ns: str,
    name: str,
    *,
    parents: Sequence[Raw],
    rules: Sequence[Raw] = (),
    hostnames: Sequence[str] = (),
    created: str | None = None,
    kind: str = "HTTPRoute",
) -> Raw:
    meta: Raw = {"name": name, "namespace": ns}
    if created is not None:
        meta["creationTimestamp"] = created
    spec: Raw = {"parentRefs": list(parents)}
    if rules:
        spec["rules"] = list(rules)
    if hostnames:
        spec["hostnames"] = list(hostnames)
    return {"apiVersion": GW_V1, "kind": kind, "metadata": meta, "spec": spec}


def redirect(**fields: object) -> Raw:
    """A RequestRedirect filter: `redirect(scheme="https", port=8443)`."""
    return {"type": "RequestRedirect", "requestRedirect": dict(fields)}


def compile_objects(
    *objects: Raw, options: CompileOptions = DEFAULT_COMPILE_OPTIONS
) -> CompileResult:
    """Parse `objects` as documents of one file and compile them; schema errors fail the test."""
    docs = [
        Document(pos=SourcePos(file="test.yaml", doc_index=i), raw=obj)
        for i, obj in enumerate(objects)
    ]
    resources, diags = parse_documents(docs)
    assert not diags, [str(d) for d in diags]
    return compile_table(resources, options=options)


def mk_tls_secret(ns: str, name: str, chain_pem: bytes, key_pem: bytes) -> Raw:
    """A `kubernetes.io/tls` Secret holding `chain_pem` (leaf first) and its key."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(chain_pem).decode(),
            "tls.key": base64.b64encode(key_pem).decode(),
        },
    }
