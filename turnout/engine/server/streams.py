"""One ADS stream's protocol state (state of the world, v3): pure, no I/O and no clock.

```
DiscoveryRequest ─ on_request ─> per type_url `_TypeState`
   every request              resource_names replace the subscription (empty LDS/CDS/POLICY
                              = wildcard, "*" too), whatever its nonce
   no nonce                   a (re)subscription: answer it whatever we sent before
   nonce != last sent nonce   stale: not an ACK or NACK of anything (a newer response is on
                              its way). Same names: ignored. New names: the client changed
                              its subscription before it saw our latest response, so that
                              response answers the old names: the new set is due now, with a
                              fresh nonce (waiting for the ACK would wait for a client that
                              may itself wait for these very resources)
   nonce == last, no error    ACK (version == sent version) or a subscription change
   nonce == last, error       NACK: remembered with the client's reason; the rejected content
                              is not sent again for the same table, but once with each newer
                              table (a client that rejects a set rolls every type back, so
                              content it rejected only for another type's sake is what it
                              lacks now)
   nonce == last, either way  the response is no longer in flight

due(snapshot, view) ─> DiscoveryResponses, for each subscribed type in CDS, EDS, LDS, RDS, POLICY order
   (make before break) that
     - has no response in flight (one per type: a slow client only ever gets the newest), and
     - whose resources for this stream's subscription differ from what it was last sent
       (or was never answered), or were NACKed for an older table; other equal content is
       never re-sent, so a table change that leaves a type untouched for this client sends
       nothing of that type.
```

Each response carries the snapshot's version and a fresh nonce. A NACK does not clear what
was sent, which is what stops a resend loop: NACKed content is due again only with a newer
table, so at most once per table version.

`sync(version)` says, per type, whether the client runs what the server would send it now
(istioctl proxy-status's words): SYNCED (the last response was ACKed and the stream has
looked at the current table), STALE (a response in flight, NACKed, or a newer table not yet
looked at), NOT SENT (subscribed, nothing answered yet), IGNORED (never subscribed).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, json_format

from turnout.engine.server.snapshots import Snapshot, View
from turnout.engine.xds import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    LOAD_ASSIGNMENT_TYPE,
    ROUTE_CONFIGURATION_TYPE,
)
from turnout.engine.xds.policy import POLICY_TYPE_URL

log = logging.getLogger(__name__)

SEND_ORDER = (
    CLUSTER_TYPE,
    LOAD_ASSIGNMENT_TYPE,
    LISTENER_TYPE,
    ROUTE_CONFIGURATION_TYPE,
    POLICY_TYPE_URL,
)
"""Clusters and endpoints before the listeners and routes that point at them (make before
break, as the xDS spec's "eventual consistency considerations" advise); the authorization
policy (Turnout's TypedStructs, only to clients that subscribe to it) last."""

WILDCARD_TYPES = frozenset({LISTENER_TYPE, CLUSTER_TYPE, POLICY_TYPE_URL})
"""Types for which an empty first subscription means "everything" (legacy wildcard)."""

WILDCARD_NAME = "*"

_KINDS = {
    LISTENER_TYPE: "LDS",
    ROUTE_CONFIGURATION_TYPE: "RDS",
    CLUSTER_TYPE: "CDS",
    LOAD_ASSIGNMENT_TYPE: "EDS",
    POLICY_TYPE_URL: "POLICY",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    """A rejected response, as the client reported it."""

    type_url: str
    version: str
    """Version of the rejected response."""
    reason: str
    """`error_detail.message` (truncated)."""


SyncState = Literal["SYNCED", "STALE", "NOT SENT", "IGNORED"]
"""Where one type of a stream stands against the current table (`StreamState.sync`)."""

MAX_REASON_CHARS = 1_000
"""NACK reasons longer than this are cut in logs and status (foreign text)."""


@dataclass(slots=True)
class _TypeState:
    type_url: str
    names: frozenset[str] | None = frozenset()
    """Subscribed resource names; None = wildcard (every resource of the type)."""
    subscribed: bool = False
    sent: dict[str, any_pb2.Any] | None = None
    """Resources of the last response on this subscription, packed; None = not answered yet."""
    sent_version: str = ""
    nonce: str = ""
    """Nonce of the last response of this type; "" = none sent."""
    in_flight: bool = False
    """A response awaits its ACK or NACK."""
    acked_version: str | None = None
    nack: Nack | None = None
    """The last NACK; cleared by a later ACK."""


@dataclass(slots=True)
class RequestVerdict:
    """What one request did, for the server's logs."""

    kind: str
    """"subscribe", "ack", "nack", "update" (names changed, not an ACK), "stale-update" (names
    changed by a request with a stale nonce), "stale" (ignored), "unknown"."""
    nack: Nack | None = None


@dataclass(slots=True)
class StreamState:
    """Protocol state of one ADS stream."""

    peer: str
    node_id: str = ""
    namespace: str | None = None
    """Node metadata `namespace`: which consumer view this stream gets; None = producer only."""
    workload: str = ""
    pod: str = ""
    """Node metadata `pod` ("" = not sent)."""
    admin: str = ""
    """Node metadata `admin`: ``HOST:PORT`` of the proxy's admin port, where its /metrics
    is ("" = not sent, e.g. a proxyless client)."""
    labels: dict[str, str] = field(default_factory=dict)
    """Node metadata `labels`: the workload's pod labels (which policies select a proxyless
    gRPC server, `mesh bootstrap --label`)."""
    warned: set[str] = field(default_factory=set)
    """Server Listeners whose warning this stream has logged."""
    seen_version: str = ""
    """The table version `due` last looked at ("" = none yet)."""
    types: dict[str, _TypeState] = field(
        default_factory=lambda: {url: _TypeState(url) for url in SEND_ORDER}
    )
    _nonces: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # ---- requests

    def on_request(self, req: Any) -> RequestVerdict:
        if req.HasField("node") and not self.node_id:
            self._identify(req.node)
        t = self.types.get(req.type_url)
        if t is None:
            return RequestVerdict("unknown")
        names = frozenset(req.resource_names)
        first = not t.subscribed
        if WILDCARD_NAME in names or (
            not names and t.type_url in WILDCARD_TYPES and (first or t.names is None)
        ):
            new_names: frozenset[str] | None = None
        else:
            new_names = names
        changed = first or new_names != t.names
        t.names, t.subscribed = new_names, True
        if req.response_nonce and req.response_nonce != t.nonce:
            # The nonce says only that this is no ACK or NACK of our latest response; the
            # names still stand (xDS protocol), and a changed set is answered now.
            if not changed:
                return RequestVerdict("stale")
            t.in_flight = False
            return RequestVerdict("stale-update")
        if not req.response_nonce:
            # A new subscription (or a new stream's first request): always answer it.
            t.sent, t.in_flight = None, False
            return RequestVerdict("subscribe")
        t.in_flight = False
        if req.HasField("error_detail"):
            t.nack = Nack(
                type_url=t.type_url,
                version=t.sent_version,
                reason=str(req.error_detail.message)[:MAX_REASON_CHARS],
            )
            return RequestVerdict("nack", t.nack)
        if req.version_info == t.sent_version:
            t.acked_version, t.nack = t.sent_version, None
            return RequestVerdict("ack")
        return RequestVerdict("update")

    def _identify(self, node: Any) -> None:
        identify(self, node)

    def subscribed_names(self, type_url: str) -> frozenset[str]:
        """Names this stream subscribed to by name for `type_url` (none for a wildcard)."""
        t = self.types.get(type_url)
        return frozenset() if t is None or t.names is None else t.names

    # ---- responses

    def due(self, snapshot: Snapshot, view: View) -> list[Any]:
        """The responses this stream needs now (and marks them sent)."""
        out = []
        self.seen_version = snapshot.version_info
        for url in SEND_ORDER:
            t = self.types[url]
            if not t.subscribed or t.in_flight:
                continue
            available = view.get(url, {})
            if t.names is None:
                chosen = sorted(available)
            else:
                chosen = sorted(n for n in t.names if n in available)
            content = {n: available[n] for n in chosen}
            nacked_older = t.nack is not None and t.nack.version != snapshot.version_info
            if t.sent is not None and content == t.sent and not nacked_older:
                continue
            nonce = str(next(self._nonces))
            out.append(
                discovery_pb2.DiscoveryResponse(
                    version_info=snapshot.version_info,
                    type_url=url,
                    nonce=nonce,
                    resources=[available[n] for n in chosen],
                )
            )
            t.sent, t.sent_version, t.nonce, t.in_flight = (
                content,
                snapshot.version_info,
                nonce,
                True,
            )
        return out

    # ---- status

    def acked(self) -> dict[str, str]:
        """LDS/RDS/CDS/EDS/POLICY -> last ACKed version."""
        return {
            _KINDS[url]: t.acked_version
            for url, t in self.types.items()
            if t.acked_version is not None
        }

    def subscriptions(self) -> dict[str, tuple[str, ...]]:
        """LDS/RDS/CDS/EDS/POLICY -> subscribed names (``("*",)`` = wildcard), subscribed
        types only."""
        return {
            _KINDS[url]: (WILDCARD_NAME,) if t.names is None else tuple(sorted(t.names))
            for url, t in self.types.items()
            if t.subscribed
        }

    def sent(self) -> dict[str, str]:
        """LDS/RDS/CDS/EDS/POLICY -> version of the last response sent."""
        return {_KINDS[url]: t.sent_version for url, t in self.types.items() if t.sent_version}

    def sync(self, version: str) -> dict[str, SyncState]:
        """LDS/RDS/CDS/EDS/POLICY -> where the type stands against table `version` (the
        module docstring). A type whose content the newest table left unchanged is SYNCED at
        an older ACKed version: nothing of it is sent again."""
        out: dict[str, SyncState] = {}
        for url, t in self.types.items():
            state: SyncState
            if not t.subscribed:
                state = "IGNORED"
            elif t.sent is None:
                state = "NOT SENT"
            elif (
                t.in_flight
                or t.nack is not None
                or t.acked_version != t.sent_version
                or self.seen_version != version
            ):
                state = "STALE"
            else:
                state = "SYNCED"
            out[_KINDS[url]] = state
        return out

    def nacks(self) -> list[Nack]:
        return [t.nack for t in self.types.values() if t.nack is not None]


def identify(state: Any, node: Any) -> None:
    """Fill a stream state's node fields (`StreamState`, `DeltaStreamState`) from `node`."""
    state.node_id = str(node.id)
    meta = json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {}
    ns = meta.get("namespace")
    state.namespace = ns if isinstance(ns, str) and ns else None
    workload = meta.get("workload")
    state.workload = workload if isinstance(workload, str) else ""
    pod, admin = meta.get("pod"), meta.get("admin")
    state.pod = pod if isinstance(pod, str) else ""
    state.admin = admin if isinstance(admin, str) else ""
    labels = meta.get("labels")
    if isinstance(labels, dict):
        state.labels = {str(k): v for k, v in sorted(labels.items()) if isinstance(v, str)}


def kind_of(type_url: str) -> str:
    """LDS, RDS, CDS, EDS or POLICY (the type URL itself for anything else)."""
    return _KINDS.get(type_url, type_url)
