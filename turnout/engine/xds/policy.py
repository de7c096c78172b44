"""The policy IR as xDS resources: one Turnout-typed config per inbound server port.

```
PolicyTable --policy_resources--> PolicyResources     (all served as POLICY_TYPE_URL)
   InboundServer   -> TypedStruct turnout.dev/policy.v1alpha1.InboundServer          name server/<ns>/<name>
   WorkloadPolicy  -> TypedStruct turnout.dev/policy.v1alpha1.WorkloadPolicy         name istio/authorizationpolicy/...
   PeerAuthn       -> TypedStruct turnout.dev/policy.v1alpha1.PeerAuthentication     name istio/peerauthentication/...
   RequestAuthn    -> TypedStruct turnout.dev/policy.v1alpha1.RequestAuthentication  name istio/requestauthentication/...
   the defaults    -> TypedStruct turnout.dev/policy.v1alpha1.PolicyDefaults         name turnout/policy-defaults
```

There is no Envoy message for "who may call this port" in Turnout's own terms, so each
resource is an `xds.type.v3.TypedStruct` whose `type_url` names the Turnout type and whose
`value` is the IR node as `engine.render.to_data` renders it: snake_case fields, union members
tagged with ``type``, `None` and empty tuples left out (absent means the IR default). A Struct
carries numbers as doubles, so a reader turns `port`/`ports` back into ints. The proxy's
xDS client decodes these and implements `docs/policy.md` "The decision"; grpcio servers will
get gRFC A41 RBAC instead (`grpc_rbac.py`). Every value carries its resource name as `name` (a
SotW response holds bare `Any`s). The ADS server serves them all under `POLICY_TYPE_URL`
(`engine.server`; wildcard only, the same set to every node).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from google.protobuf import any_pb2, json_format, struct_pb2
from xds.type.v3 import typed_struct_pb2

from turnout.engine.ir_policy import InboundServer, PolicyTable, WorkloadPolicy
from turnout.engine.render import to_data
from turnout.engine.xds.wire import TYPE_PREFIX as GOOGLE_TYPE_PREFIX
from turnout.engine.xds.wire import pack

POLICY_TYPE_URL = GOOGLE_TYPE_PREFIX + "xds.type.v3.TypedStruct"
"""The xDS type every policy resource is served as (`type.googleapis.com/xds.type.v3.TypedStruct`)."""

TYPE_PREFIX = "turnout.dev/policy.v1alpha1."
INBOUND_SERVER_TYPE = TYPE_PREFIX + "InboundServer"
WORKLOAD_POLICY_TYPE = TYPE_PREFIX + "WorkloadPolicy"
DEFAULTS_TYPE = TYPE_PREFIX + "PolicyDefaults"
PEER_AUTHN_TYPE = TYPE_PREFIX + "PeerAuthentication"
REQUEST_AUTHN_TYPE = TYPE_PREFIX + "RequestAuthentication"
DEFAULTS_NAME = "turnout/policy-defaults"


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyResources:
    servers: tuple[tuple[str, typed_struct_pb2.TypedStruct], ...]
    """(name, resource), in name order."""
    workload_policies: tuple[tuple[str, typed_struct_pb2.TypedStruct], ...]
    defaults: typed_struct_pb2.TypedStruct
    peer_authentications: tuple[tuple[str, typed_struct_pb2.TypedStruct], ...] = ()
    request_authentications: tuple[tuple[str, typed_struct_pb2.TypedStruct], ...] = ()

    def by_name(self) -> dict[str, typed_struct_pb2.TypedStruct]:
        """Every resource by its xDS name (names are unique: each kind has its own prefix)."""
        return {
            **dict(self.servers),
            **dict(self.workload_policies),
            **dict(self.peer_authentications),
            **dict(self.request_authentications),
            DEFAULTS_NAME: self.defaults,
        }

    def plain(self) -> tuple[tuple[str, str, dict[str, Any]], ...]:
        """`by_name` as (name, type URL, value as JSON would carry it): what a proxy's
        `PolicyResources.of` reads without the wire (``mesh proxy -f``)."""
        return tuple(
            (name, ts.type_url, json_format.MessageToDict(ts.value))
            for name, ts in self.by_name().items()
        )

    def packed(self) -> dict[str, any_pb2.Any]:
        """`by_name` with each resource packed as ADS sends it (deterministic bytes)."""
        return {name: pack(r) for name, r in self.by_name().items()}

    def to_dict(self) -> dict[str, object]:
        """Plain data for golden files and `mesh`: each resource as JSON would carry it."""

        def plain(ts: typed_struct_pb2.TypedStruct) -> dict[str, object]:
            value = json_format.MessageToDict(ts.value)
            return {"type_url": ts.type_url, "value": value}

        return {
            "servers": [{"name": n, **plain(r)} for n, r in self.servers],
            "workload_policies": [{"name": n, **plain(r)} for n, r in self.workload_policies],
            "peer_authentications": [{"name": n, **plain(r)} for n, r in self.peer_authentications],
            "request_authentications": [
                {"name": n, **plain(r)} for n, r in self.request_authentications
            ],
            "defaults": {"name": DEFAULTS_NAME, **plain(self.defaults)},
        }


def struct_of(data: Mapping[str, object]) -> struct_pb2.Struct:
    """Plain data (`to_data` output: dicts, lists, str, int, bool) as a Struct."""
    value = struct_pb2.Struct()
    value.update(cast(Mapping[str, Any], data))
    return value


def typed_struct(type_url: str, node: object) -> typed_struct_pb2.TypedStruct:
    data = to_data(node)
    if not isinstance(data, dict):
        raise TypeError(f"cannot render {type(node).__name__} as a struct")
    return typed_struct_pb2.TypedStruct(type_url=type_url, value=struct_of(data))


def server_resource(server: InboundServer) -> typed_struct_pb2.TypedStruct:
    return typed_struct(INBOUND_SERVER_TYPE, server)


def workload_policy_resource(policy: WorkloadPolicy) -> typed_struct_pb2.TypedStruct:
    return typed_struct(WORKLOAD_POLICY_TYPE, policy)


def policy_resources(table: PolicyTable) -> PolicyResources:
    """Every resource of a policy table; equal tables give equal resources."""
    defaults = {
        "name": DEFAULTS_NAME,
        "cluster_default": table.cluster_default,
        "cluster_networks": to_data(table.cluster_networks),
        "namespace_defaults": to_data(table.namespace_defaults),
    }
    value = struct_of(defaults)
    return PolicyResources(
        servers=tuple(
            (s.name, server_resource(s)) for s in sorted(table.servers, key=lambda s: s.name)
        ),
        workload_policies=tuple(
            (p.name, workload_policy_resource(p))
            for p in sorted(table.workload_policies, key=lambda p: p.name)
        ),
        defaults=typed_struct_pb2.TypedStruct(type_url=DEFAULTS_TYPE, value=value),
        peer_authentications=tuple(
            (p.name, typed_struct(PEER_AUTHN_TYPE, p))
            for p in sorted(table.peer_authentications, key=lambda p: p.name)
        ),
        request_authentications=tuple(
            (r.name, typed_struct(REQUEST_AUTHN_TYPE, r))
            for r in sorted(table.request_authentications, key=lambda r: r.name)
        ),
    )
