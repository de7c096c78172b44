"""Core kinds the compiler reads: Namespace (labels), Service (ports), EndpointSlice, Secret
(a Gateway listener's certificates)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

from pydantic import Field, JsonValue

from turnout.engine.model.base import (
    Bool,
    Int32,
    LooseModel,
    NullAsEmpty,
    PortNumber,
    Resource,
    Str,
)


class Namespace(Resource):
    kind: Literal["Namespace"] = "Namespace"
    spec: dict[str, JsonValue] | None = None
    status: dict[str, JsonValue] | None = None

    @property
    def namespace(self) -> str:
        return self.name


class ServicePort(LooseModel):
    name: Str | None = None
    port: PortNumber
    target_port: Int32 | Str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    app_protocol: Str | None = None


class ServiceSpec(LooseModel):
    type: Str = "ClusterIP"
    cluster_ip: Str | None = Field(default=None, alias="clusterIP")
    cluster_ips: list[Str] = Field(default_factory=list, alias="clusterIPs")
    selector: dict[str, str] = Field(default_factory=dict)
    ports: list[ServicePort] = Field(default_factory=list)


class Service(Resource):
    kind: Literal["Service"] = "Service"
    spec: ServiceSpec = Field(default_factory=ServiceSpec)
    status: dict[str, JsonValue] | None = None


class EndpointConditions(LooseModel):
    ready: Bool | None = None
    serving: Bool | None = None
    terminating: Bool | None = None


class ObjectReference(LooseModel):
    kind: Str | None = None
    name: Str | None = None
    namespace: Str | None = None


class SliceEndpoint(LooseModel):
    addresses: list[Str] = Field(min_length=1)
    conditions: EndpointConditions = Field(default_factory=EndpointConditions)
    zone: Str | None = None
    node_name: Str | None = None
    target_ref: ObjectReference | None = None
    """The Pod behind the endpoint (set by the EndpointSlice controller): its service
    account is the endpoint's mesh identity."""


class ContainerPort(LooseModel):
    name: Str | None = None
    container_port: Int32


class HttpGetAction(LooseModel):
    path: Str = "/"
    port: Int32 | Str
    scheme: Str = "HTTP"


class Probe(LooseModel):
    http_get: HttpGetAction | None = None


class Container(LooseModel):
    name: Str = ""
    ports: Annotated[list[ContainerPort], NullAsEmpty] = Field(default_factory=list)
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None


class PodSpec(LooseModel):
    service_account_name: Str = "default"
    containers: Annotated[list[Container], NullAsEmpty] = Field(default_factory=list)


class Pod(Resource):
    """Only what the mesh needs of a Pod: its service account (the identity its proxy
    proves, which clients expect of its endpoints); from manifests (`-f`), its containers'
    named ports and HTTP probes (what `mesh routes explain` resolves a Server's named port
    and the kubelet's probe paths with; the Kubernetes source keeps only the account)."""

    kind: Literal["Pod"] = "Pod"
    spec: PodSpec = Field(default_factory=PodSpec)
    status: dict[str, JsonValue] | None = None
    """Not read (a Pod's readiness reaches the mesh through its EndpointSlices); accepted
    so that `kubectl get pod -o yaml` validates."""

    def port_names(self) -> tuple[tuple[str, int], ...]:
        """Its containers' named ports, the first of a name winning (as Linkerd's)."""
        return _port_names(self.spec.containers)

    def probes(self) -> tuple[tuple[int, str], ...]:
        """(port, path) of its containers' HTTP liveness, readiness and startup probes (a
        named port is the probe's own container's, as the kubelet resolves it)."""
        out: list[tuple[int, str]] = []
        for c in self.spec.containers:
            names = dict(_port_names([c]))
            for probe in (c.liveness_probe, c.readiness_probe, c.startup_probe):
                get = probe.http_get if probe is not None else None
                if get is None or get.scheme.upper() != "HTTP":
                    continue
                port = get.port if isinstance(get.port, int) else names.get(get.port)
                if port is None:
                    continue
                item = (port, get.path.split("?", 1)[0])
                if item not in out:
                    out.append(item)
        return tuple(out)


def _port_names(containers: list[Container]) -> tuple[tuple[str, int], ...]:
    out: dict[str, int] = {}
    for c in containers:
        for p in c.ports:
            if p.name:
                out.setdefault(p.name, p.container_port)
    return tuple(out.items())


class EndpointPort(LooseModel):
    name: Str | None = None
    port: PortNumber | None = None
    protocol: Str = "TCP"
    app_protocol: Str | None = None


class EndpointSlice(Resource):
    kind: Literal["EndpointSlice"] = "EndpointSlice"
    address_type: Literal["IPv4", "IPv6", "FQDN"]
    # The server sends `"endpoints": null` for a Service scaled to 0 (and `ports` likewise).
    endpoints: Annotated[list[SliceEndpoint], NullAsEmpty] = Field(default_factory=list)
    ports: Annotated[list[EndpointPort], NullAsEmpty] = Field(default_factory=list)

    @property
    def service_name(self) -> str | None:
        return self.metadata.labels.get("kubernetes.io/service-name")


TLS_SECRET_TYPE = "kubernetes.io/tls"


class Secret(Resource):
    """A core Secret; Gateway listeners read `kubernetes.io/tls` ones (`tls.crt`, `tls.key`)."""

    kind: Literal["Secret"] = "Secret"
    type: Str = "Opaque"
    immutable: Bool | None = None
    data: dict[str, str] = Field(default_factory=dict)
    """Base64 values, as the API server serves them."""
    string_data: dict[str, str] = Field(default_factory=dict, alias="stringData")
    """Plain values (manifests only): they win over `data`, as the API server merges them."""

    def value(self, key: str) -> bytes | None:
        """The decoded value of `key`; None when absent or not valid base64."""
        if key in self.string_data:
            return self.string_data[key].encode()
        raw = self.data.get(key)
        if raw is None:
            return None
        try:
            return base64.b64decode(raw, validate=True)
        except binascii.Error:
            return None
