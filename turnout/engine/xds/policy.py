"""The policy IR as xDS resources: one Turnout-typed config per inbound server port.

```
PolicyTable --policy_resources--> PolicyResources
   InboundServer   -> TypedStruct turnout.dev/policy.v1alpha1.InboundServer   name server/<ns>/<name>
   WorkloadPolicy  -> TypedStruct turnout.dev/policy.v1alpha1.WorkloadPolicy  name istio/authorizationpolicy/...
   the defaults    -> TypedStruct turnout.dev/policy.v1alpha1.PolicyDefaults  name turnout/policy-defaults
```

There is no Envoy message for "who may call this port" in Turnout's own terms, so each
resource is an `xds.type.v3.TypedStruct` whose `type_url` names the Turnout type and whose
`value` is the IR node as `engine.render.to_data` renders it: snake_case fields, union members
tagged with ``type``, `None` and empty tuples left out (absent means the IR default). A Struct
carries numbers as doubles, so a reader turns `port`/`ports` back into ints. The proxy's
xDS client decodes these and implements `docs/policy.md` "The decision"; grpcio servers will
get gRFC A41 RBAC instead (`grpc_rbac.py`). Not served yet: the ADS server does not carry this type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from google.protobuf import json_format, struct_pb2
from xds.type.v3 import typed_struct_pb2

from turnout.engine.ir_policy import InboundServer, PolicyTable, WorkloadPolicy
from turnout.engine.render import to_data

TYPE_PREFIX = "turnout.dev/policy.v1alpha1."
INBOUND_SERVER_TYPE = TYPE_PREFIX + "InboundServer"
WORKLOAD_POLICY_TYPE = TYPE_PREFIX + "WorkloadPolicy"
DEFAULTS_TYPE = TYPE_PREFIX + "PolicyDefaults"
DEFAULTS_NAME = "turnout/policy-defaults"


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyResources:
    servers: tuple[tuple[str, typed_struct_pb2.TypedStruct], ...]
    """(name, resource), in name order."""
    workload_policies: tuple[tuple[str, typed_struct_pb2.TypedStruct], ...]
    defaults: typed_struct_pb2.TypedStruct

    def to_dict(self) -> dict[str, object]:
        """Plain data for golden files and `mesh`: each resource as JSON would carry it."""

        def plain(ts: typed_struct_pb2.TypedStruct) -> dict[str, object]:
            value = json_format.MessageToDict(ts.value)
            return {"type_url": ts.type_url, "value": value}

        return {
            "servers": [{"name": n, **plain(r)} for n, r in self.servers],
            "workload_policies": [{"name": n, **plain(r)} for n, r in self.workload_policies],
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
    )
