"""`XdsResources`: the four xDS resource lists one client is served, and their wire views.

Data flow: `translator.translate` fills an `XdsResources` (each tuple sorted by name); the ADS
server (to come) asks for `by_type_url()` or `packed()` to answer a discovery request of one
type; golden tests and `mesh` render `to_dict()` as YAML.

It deliberately knows nothing of versions, nonces or which node asked: that is
`engine.server`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

from turnout.engine.xds.wire import TYPE_PREFIX, pack

LISTENER_TYPE = TYPE_PREFIX + "envoy.config.listener.v3.Listener"
ROUTE_CONFIGURATION_TYPE = TYPE_PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
LOAD_ASSIGNMENT_TYPE = TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"

TYPE_URLS = (LISTENER_TYPE, ROUTE_CONFIGURATION_TYPE, CLUSTER_TYPE, LOAD_ASSIGNMENT_TYPE)
"""Every type we serve, in the order an xDS client needs them (LDS, RDS, CDS, EDS)."""


def resource_name(message: Message) -> str:
    """The xDS name of a resource (`cluster_name` for a ClusterLoadAssignment)."""
    if isinstance(message, endpoint_pb2.ClusterLoadAssignment):
        return str(message.cluster_name)
    return str(getattr(message, "name"))  # noqa: B009 (envoy messages have no stubs)


@dataclass(frozen=True, slots=True, kw_only=True)
class XdsResources:
    """What one client is served; every tuple is sorted by resource name."""

    listeners: tuple[listener_pb2.Listener, ...] = ()
    route_configs: tuple[route_pb2.RouteConfiguration, ...] = ()
    clusters: tuple[cluster_pb2.Cluster, ...] = ()
    load_assignments: tuple[endpoint_pb2.ClusterLoadAssignment, ...] = ()

    def by_type_url(self) -> dict[str, dict[str, Message]]:
        """`{type_url: {name: message}}` for every served type (empty maps included)."""
        lists: tuple[tuple[Message, ...], ...] = (
            self.listeners,
            self.route_configs,
            self.clusters,
            self.load_assignments,
        )
        return {
            url: {resource_name(m): m for m in messages}
            for url, messages in zip(TYPE_URLS, lists, strict=True)
        }

    def packed(self) -> dict[str, dict[str, any_pb2.Any]]:
        """Like `by_type_url`, with every message packed in an `Any` (as ADS sends them)."""
        return {
            url: {name: pack(m) for name, m in named.items()}
            for url, named in self.by_type_url().items()
        }

    def to_dict(self) -> dict[str, list[dict[str, object]]]:
        """JSON-shaped view (proto field names, no defaults) for YAML rendering."""
        return {
            "listeners": [_as_dict(m) for m in self.listeners],
            "route_configs": [_as_dict(m) for m in self.route_configs],
            "clusters": [_as_dict(m) for m in self.clusters],
            "load_assignments": [_as_dict(m) for m in self.load_assignments],
        }


REDACTED = "[redacted]"


def _as_dict(message: Message) -> dict[str, object]:
    """`MessageToDict` with proto field names; fields at their default value are omitted
    (so `lb_policy: ROUND_ROBIN`, enum value 0, does not appear)."""
    return _plain(json_format.MessageToDict(message, preserving_proto_field_name=True))


def _plain(value: dict[str, object]) -> dict[str, object]:
    # MessageToDict returns OrderedDicts for unpacked `Any`s; YAML dumpers want plain dicts.
    # A listener's private keys are never rendered (a TlsCertificate's `private_key`).
    return {k: REDACTED if k == "private_key" else _plain_value(v) for k, v in value.items()}


def _plain_value(value: object) -> object:
    if isinstance(value, dict):
        return _plain(value)
    if isinstance(value, list):
        return [_plain_value(v) for v in value]
    return value
