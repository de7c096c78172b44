"""The ADS client's resources: what it holds, what it asks for, and its verdicts.

```
per response, in `XdsResources.on_response`, with no I/O and no clock:
  DiscoveryResponse ─decode─> candidate resources of its type (not applied yet)
      ├─ cannot decode: NACK it at once (previous version, its nonce, error_detail)
      ├─ LDS changed: RDS names = listeners' rds names ─┐ widen/narrow: send a DiscoveryRequest
      ├─ CDS changed: EDS names = cluster names ────────┘ with the new resource_names and
      │                                                   that type's latest nonce
      └─ every named RouteConfiguration / Cluster / ClusterLoadAssignment present?
            no  ─> ACK the response now, apply nothing yet (wait); after
                   `dependency_timeout_ms`, `settle(force=True)` builds with what is there
            yes ─> RuntimeTable.from_xds(all candidates)
                     ok         ─> ACK what is unanswered; the Verdict carries the table
                     TableError ─> NACK every response not applied yet (previous version,
                                   latest nonce, error_detail = the TableError text);
                                   candidates revert to the last applied set; the last good
                                   table keeps serving
```

Why a waiting response is ACKed, not held: in the state of the world protocol a server sends
the next response of a type once the last one is answered, and it may ignore a request whose
nonce is stale (one sent before that type's latest response arrived). A subscription change
made when, say, CDS arrives races the EDS response already on its way; only the answer to that
EDS response (which carries the new names) is sure to be heard. Holding it until the new
endpoints arrive would wait for something the server was never told to send. A table is still
all or nothing: the ACK says "received and subscribed", the table is built once the set is
complete, exactly as a cluster warms until its endpoints arrive.

Subscriptions: Listeners and Clusters are wildcards (empty `resource_names`), RouteConfigurations
and ClusterLoadAssignments are named by the candidate listeners and clusters. A response whose
content equals the applied set is ACKed without rebuilding (the Verdict has no table).

Each call returns a `Verdict`: the DiscoveryRequests to send (ACKs, NACKs, subscription
changes) in order, and a new table if one was built. The stream, its timers and the
callback are `xds_client.py`'s. Not here: the delta protocol, per-resource validation before
the set is complete (a response that breaks the table is NACKed when the table is built),
resource TTLs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2
from xds.type.v3 import typed_struct_pb2

from turnout.proxy import config
from turnout.proxy.errors import TableError
from turnout.proxy.inbound_policy import DEFAULTS, PolicyResources
from turnout.proxy.table import RouteMemo, RuntimeTable

log = logging.getLogger(__name__)

TYPE_PREFIX = "type.googleapis.com/"
LISTENER_TYPE = TYPE_PREFIX + "envoy.config.listener.v3.Listener"
ROUTE_CONFIGURATION_TYPE = TYPE_PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
LOAD_ASSIGNMENT_TYPE = TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
TYPE_URLS = (LISTENER_TYPE, ROUTE_CONFIGURATION_TYPE, CLUSTER_TYPE, LOAD_ASSIGNMENT_TYPE)
"""The four types we subscribe to, in request order (LDS, RDS, CDS, EDS); the proxy does not
import `turnout.engine`, so these repeat `turnout.engine.xds`'s constants."""

_MESSAGES: dict[str, Any] = {
    LISTENER_TYPE: listener_pb2.Listener,
    ROUTE_CONFIGURATION_TYPE: route_pb2.RouteConfiguration,
    CLUSTER_TYPE: cluster_pb2.Cluster,
    LOAD_ASSIGNMENT_TYPE: endpoint_pb2.ClusterLoadAssignment,
}
_KINDS = {
    LISTENER_TYPE: "Listener",
    ROUTE_CONFIGURATION_TYPE: "RouteConfiguration",
    CLUSTER_TYPE: "Cluster",
    LOAD_ASSIGNMENT_TYPE: "ClusterLoadAssignment",
}
_WILDCARD = frozenset({LISTENER_TYPE, CLUSTER_TYPE})
POLICY_TYPE = TYPE_PREFIX + "xds.type.v3.TypedStruct"
"""Turnout's policy resources (docs/policy.md "Served over xDS"): a wildcard subscription of
its own, applied apart from the table (a policy update never waits for, or blocks, routes)."""
DEFAULTS_NAME = "turnout/policy-defaults"


def rds_names(listener: Any) -> set[str]:
    """RouteConfiguration names a Listener's connection managers ask for (best effort: what
    does not parse is reported by `RuntimeTable.from_xds`)."""
    if listener.HasField("api_listener"):
        anys = [listener.api_listener.api_listener]
    else:
        anys = [
            f.typed_config
            for chain in listener.filter_chains
            for f in chain.filters
            if f.name == config.HCM_FILTER
        ]
    out = set()
    for packed in anys:
        hcm = http_connection_manager_pb2.HttpConnectionManager()
        with contextlib.suppress(DecodeError):
            if packed.Unpack(hcm) and hcm.WhichOneof("route_specifier") == "rds":
                out.add(hcm.rds.route_config_name)
    return out


def route_clusters(route_configs: Iterable[Any]) -> set[str]:
    """Cluster names the routes forward or mirror to."""
    out: set[str] = set()
    for rc in route_configs:
        for vh in rc.virtual_hosts:
            for r in vh.routes:
                if r.WhichOneof("action") != "route":
                    continue
                spec = r.route.WhichOneof("cluster_specifier")
                if spec == "cluster":
                    out.add(r.route.cluster)
                elif spec == "weighted_clusters":
                    out.update(c.name for c in r.route.weighted_clusters.clusters)
                out.update(m.cluster for m in r.route.request_mirror_policies)
    return out


def decode(response: Any) -> dict[str, Any]:
    """name -> message of a response's resources, or `TableError`."""
    kind = _KINDS[response.type_url]
    out: dict[str, Any] = {}
    for i, packed in enumerate(response.resources):
        where = f'DiscoveryResponse {kind} "{response.version_info}"'
        if packed.type_url != response.type_url:
            raise TableError(where, f"resources[{i}].type_url", f"not a {kind}: {packed.type_url}")
        message = _MESSAGES[response.type_url]()
        try:
            packed.Unpack(message)
        except DecodeError as exc:
            raise TableError(where, f"resources[{i}]", f"cannot decode: {exc}") from exc
        name = message.cluster_name if response.type_url == LOAD_ASSIGNMENT_TYPE else message.name
        if name in out:
            raise TableError(f'{kind} "{name}"', "name", "duplicate in one response")
        out[name] = message
    return out


def decode_policy(response: Any) -> PolicyResources:
    """The policy resources of a response, or `TableError` naming the bad one."""
    where = f'DiscoveryResponse TypedStruct "{response.version_info}"'
    out: dict[str, tuple[str, Any]] = {}
    for i, packed in enumerate(response.resources):
        if packed.type_url != POLICY_TYPE:
            raise TableError(
                where, f"resources[{i}].type_url", f"not a TypedStruct: {packed.type_url}"
            )
        ts = typed_struct_pb2.TypedStruct()
        try:
            packed.Unpack(ts)
        except DecodeError as exc:
            raise TableError(where, f"resources[{i}]", f"cannot decode: {exc}") from exc
        value = json_format.MessageToDict(ts.value)
        name = value.get("name") or (DEFAULTS_NAME if ts.type_url == DEFAULTS else "")
        if not name:
            raise TableError(where, f"resources[{i}].value.name", "missing")
        if name in out:
            raise TableError(f'policy "{name}"', "name", "duplicate in one response")
        out[name] = (ts.type_url, value)
    return PolicyResources.of(out)


@dataclass(slots=True)
class TypeState:
    type_url: str
    names: frozenset[str] | None
    """Subscription: None = wildcard (LDS, CDS), else the names wanted (RDS, EDS)."""
    accepted: dict[str, Any] = field(default_factory=dict)
    """Resources of the current table."""
    accepted_version: str | None = None
    """Version of the resources in the current table; None = never applied."""
    acked_version: str = ""
    """Version last ACKed on this stream (what requests carry as `version_info`); starts a
    stream as `accepted_version`."""
    candidate: dict[str, Any] = field(default_factory=dict)
    """Latest received view, what the next build uses."""
    nonce: str = ""
    """Nonce of the latest response of this stream."""
    pending: str | None = None
    """Version of the latest response not yet ACKed or NACKed; None = none."""
    unapplied: str | None = None
    """Version of the latest response whose resources are not in the table yet (waiting for
    dependencies, ACKed or not); None = the candidate is applied or reverted."""
    sent_names: frozenset[str] | None = None
    """Subscription last sent on this stream; None = nothing sent yet."""

    def request(self, *, version: str, error: str | None = None) -> Any:
        req = discovery_pb2.DiscoveryRequest(
            version_info=version,
            type_url=self.type_url,
            response_nonce=self.nonce,
            resource_names=sorted(self.names or ()),
        )
        if error is not None:
            req.error_detail.CopyFrom(
                status_pb2.Status(
                    code=code_pb2.INVALID_ARGUMENT,
                    message=error[: config.MAX_XDS_ERROR_DETAIL_CHARS],
                )
            )
        return req


@dataclass(slots=True)
class Verdict:
    requests: list[Any] = field(default_factory=list)
    """DiscoveryRequests to send, in order."""
    table: RuntimeTable | None = None
    """A new table to hand to `on_table`."""
    error: str | None = None
    """The NACK reason when the update was rejected."""
    waiting: list[str] = field(default_factory=list)
    """Dependencies still missing (what was received waits for them, ACKed)."""
    policy: PolicyResources | None = None
    """New policy resources to hand to `on_policy`."""
    acks: int = 0
    nacks: int = 0


class XdsResources:
    """Resources, subscriptions and verdicts of the ADS session: pure, no I/O and no clock."""

    def __init__(self, *, policy: bool = False) -> None:
        self.types = {
            url: TypeState(url, None if url in _WILDCARD else frozenset()) for url in TYPE_URLS
        }
        self.policy = TypeState(POLICY_TYPE, None) if policy else None
        """The policy subscription (inbound proxies); None: not asked for."""
        self.policy_version: str | None = None
        self.table: RuntimeTable | None = None
        self.table_version: str | None = None
        self.last_version = ""
        """Version of the latest response, the one `on_table` reports."""
        self.memo: RouteMemo = {}
        """Compiled RouteConfigurations of the last table, by message (`from_xds`): a
        RouteConfiguration whose message was not replaced is not compiled again."""

    def start_stream(self) -> list[Any]:
        """Forget what an old stream left pending; the first requests of a new stream carry
        the applied versions, so a server may skip what we already have."""
        for t in self.types.values():
            t.candidate, t.nonce, t.sent_names = dict(t.accepted), "", None
            t.pending, t.unapplied, t.acked_version = None, None, t.accepted_version or ""
        lds, cds = self.types[LISTENER_TYPE], self.types[CLUSTER_TYPE]
        wildcards = [t.request(version=t.acked_version) for t in (lds, cds)]
        if self.policy is not None:
            p = self.policy
            p.nonce, p.pending, p.acked_version = "", None, self.policy_version or ""
            wildcards.append(p.request(version=p.acked_version))
        return wildcards + self._resubscribe()

    def on_policy(self, response: Any) -> Verdict:
        """A policy response: applied at once (or NACKed, the last good policy kept)."""
        p = self.policy
        assert p is not None
        p.nonce = response.nonce
        try:
            resources = decode_policy(response)
        except TableError as exc:
            error = str(exc)
            return Verdict(
                requests=[p.request(version=self.policy_version or "", error=error)],
                error=error,
                nacks=1,
            )
        self.policy_version = p.acked_version = response.version_info
        return Verdict(requests=[p.request(version=p.acked_version)], policy=resources, acks=1)

    def on_response(self, response: Any) -> Verdict:
        if self.policy is not None and response.type_url == POLICY_TYPE:
            return self.on_policy(response)
        t = self._responding(response)
        if t is None:
            return Verdict()
        try:
            resources = decode(response)
        except TableError as exc:
            error = str(exc)
            return Verdict(
                requests=[t.request(version=t.accepted_version or "", error=error)],
                error=error,
                nacks=1,
            )
        if t.names is None:
            t.candidate = resources
        else:
            t.candidate.update((k, v) for k, v in resources.items() if k in t.names)
        return self._candidate_changed(t, response.version_info)

    def _responding(self, response: Any) -> TypeState | None:
        """The state of the type `response` answers (its nonce noted); None, logged, for a
        type never asked for."""
        t = self.types.get(response.type_url)
        if t is None:
            log.warning("xds response of a type never asked for type_url=%s", response.type_url)
            return None
        t.nonce = response.nonce
        return t

    def _candidate_changed(self, t: TypeState, version: str) -> Verdict:
        """`t`'s candidate took a response of `version`: resubscribe RDS/EDS to match, then
        apply what is complete."""
        t.pending = t.unapplied = version
        self.last_version = version
        requests = self._resubscribe()
        verdict = self.settle(force=False)
        verdict.requests[:0] = requests
        return verdict

    def _resubscribe(self) -> list[Any]:
        """Point RDS at the candidate listeners' route configs and EDS at the candidate
        clusters; a request for each subscription that changed (with that type's latest
        nonce: the newest response we have of it)."""
        out = []
        for t, names in self._wanted():
            if names != t.names:
                log.debug("xds subscription type_url=%s names=%s", t.type_url, sorted(names))
                t.names = names
                t.candidate = {k: v for k, v in t.candidate.items() if k in names}
            # An empty first request would read as a wildcard: only send "none" to narrow.
            if names != t.sent_names and (names or t.sent_names):
                t.sent_names = names
                out.append(t.request(version=t.acked_version))
        return out

    def _wanted(self) -> tuple[tuple[TypeState, frozenset[str]], ...]:
        """RDS and EDS with the names they should be subscribed to now: the candidate
        listeners' route configs and the candidate clusters."""
        rds_names_now = frozenset(
            n for lst in self.types[LISTENER_TYPE].candidate.values() for n in rds_names(lst)
        )
        return (
            (self.types[ROUTE_CONFIGURATION_TYPE], rds_names_now),
            (self.types[LOAD_ASSIGNMENT_TYPE], frozenset(self.types[CLUSTER_TYPE].candidate)),
        )

    def waiting(self) -> bool:
        """Some received resources are not applied yet (they wait for their dependencies)."""
        return any(t.unapplied is not None for t in self.types.values())

    def missing(self) -> list[str]:
        """What the candidate set still lacks, as `Kind "name"`."""
        lds, rds, cds, eds = (self.types[url] for url in TYPE_URLS)
        out = [
            f"{_KINDS[t.type_url]}s (first response)"
            for t in (lds, cds)
            if t.unapplied is None and t.accepted_version is None
        ]
        assert rds.names is not None and eds.names is not None
        out += [f'RouteConfiguration "{n}"' for n in sorted(rds.names - rds.candidate.keys())]
        routed = route_clusters(rds.candidate.values()) - {config.INVALID_CLUSTER}
        out += [f'Cluster "{n}"' for n in sorted(routed - cds.candidate.keys())]
        out += [f'ClusterLoadAssignment "{n}"' for n in sorted(eds.names - eds.candidate.keys())]
        return out

    def settle(self, *, force: bool) -> Verdict:
        """Apply the received resources once the candidate set is complete (or, with `force`,
        as it is: a missing dependency then NACKs; the first LDS and CDS responses are always
        waited for, an empty table is no table). While incomplete, every response is ACKed
        anyway: the answer is what tells the server our subscription (module docstring)."""
        unapplied = [t for t in self.types.values() if t.unapplied is not None]
        if not unapplied:
            return Verdict()
        missing = self.missing()
        first = [m for m in missing if m.endswith("(first response)")]
        if first or (missing and not force):
            requests = self._answer()
            return Verdict(requests=requests, waiting=missing, acks=len(requests))
        if self.table is not None and all(t.candidate == t.accepted for t in self.types.values()):
            requests = self._accept()
            return Verdict(requests=requests, acks=len(requests))
        lds, rds, cds, eds = (self.types[url].candidate.values() for url in TYPE_URLS)
        try:
            table = RuntimeTable.from_xds(
                lds, rds, clusters=cds, load_assignments=eds, memo=self.memo
            )
        except TableError as exc:
            return self._reject(str(exc))
        except Exception as exc:  # a bug in from_xds must not end the stream: NACK, keep serving
            log.error("runtime table build failed version=%s", self.last_version, exc_info=True)
            return self._reject(f"internal error: {exc!r}")
        self.table, self.table_version = table, self.last_version
        requests = self._accept()
        return Verdict(requests=requests, table=table, acks=len(requests))

    def _answer(self) -> list[Any]:
        """ACK every unanswered response (received, not applied yet)."""
        out = []
        for t in self.types.values():
            if t.pending is not None:
                t.acked_version, t.pending = t.pending, None
                out.append(t.request(version=t.acked_version))
        return out

    def _accept(self) -> list[Any]:
        """The candidates are the table now: ACK what is still unanswered."""
        for t in self.types.values():
            t.accepted = dict(t.candidate)
            if t.unapplied is not None:
                t.accepted_version, t.unapplied = t.unapplied, None
        return self._answer()

    def _reject(self, error: str) -> Verdict:
        """NACK every response not applied (one already ACKed while it waited too, with the
        latest nonce: a server that has sent a newer one since ignores it) and go back to the
        applied set."""
        out = []
        for t in self.types.values():
            if t.unapplied is None:
                continue
            t.pending = t.unapplied = None
            t.acked_version = t.accepted_version or ""
            out.append(t.request(version=t.acked_version, error=error))
        for t in self.types.values():
            t.candidate = dict(t.accepted)
        nacks = len(out)
        out += self._resubscribe()
        return Verdict(requests=out, error=error, nacks=nacks)
