"""One delta (incremental) ADS stream's protocol state: pure, no I/O and no clock.

```
DeltaDiscoveryRequest ─ on_request ─> per type_url `_DeltaType`
  first request of a type     initial_resource_versions seed `known` (a reconnect: what the
                              client has is not sent again); empty subscribe on LDS/CDS/POLICY
                              = legacy wildcard
  subscribe / unsubscribe     "*" turns the wildcard on / off; a legacy wildcard ends when the
                              client names resources without "*"; newly subscribed names are
                              `fresh`: answered at once, even while a response is in flight
  response_nonce in flight    no error_detail: ACK, `known` takes that response's versions
                              (removed names leave it); error_detail: NACK, `known` unchanged,
                              the rejected (name, version) pairs are not sent again for the
                              same table; either way the response is no longer in flight
  any other nonce             stale: only its subscription changes count

due(snapshot, built) ─> DeltaDiscoveryResponses, per type in CDS, EDS, LDS, RDS, POLICY order
  resources         names in scope whose version differs from `known` (scope: the explicit
                    names, plus every served name under a wildcard)
  removed_resources known names no longer served; an explicitly subscribed name that does
                    not exist, once (so a client does not wait for it); a wildcard
                    subscriber that has nothing is answered once even when nothing is served
  one response in flight per type (coalescing: a slow client gets the newest snapshot), plus
  one per subscription change; a stream whose `known` is the previous snapshot's view looks
  only at `snapshot.changes(ns)`, not at every name
```

A response is an `Encoded`: the body shared by every stream due the same names of the
same view (`encoded.py`, serialized once) and this stream's nonce. Versions are `engine.xds.cache` digests of each resource's bytes; `system_version_info` is
the snapshot's version, for logs and status only. Deliberately not here: server Listeners of
proxyless gRPC servers (grpcio speaks state of the world, `streams.py`), resource TTLs,
on-demand aliases.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from turnout.engine.server.encoded import Encoded, delta_body
from turnout.engine.server.snapshots import Built, Snapshot
from turnout.engine.server.streams import (
    _KINDS,
    MAX_REASON_CHARS,
    SEND_ORDER,
    WILDCARD_NAME,
    WILDCARD_TYPES,
    Nack,
    RequestVerdict,
    SyncState,
    identify,
)

ABSENT = ""
"""`known` value of a name the client was told does not exist."""


@dataclass(slots=True)
class _Sent:
    versions: dict[str, str]
    removed: tuple[str, ...]
    system_version: str
    complete: bool
    """The response answered every difference of the snapshot (not only fresh names)."""


@dataclass(slots=True)
class _DeltaType:
    type_url: str
    subscribed: bool = False
    wildcard: bool = False
    legacy: bool = False
    """Wildcard because the first request named nothing (ends when names are named)."""
    names: set[str] = field(default_factory=set)
    """Explicitly subscribed names."""
    known: dict[str, str] = field(default_factory=dict)
    """name -> version the client has (`ABSENT`: told it does not exist)."""
    fresh: set[str] = field(default_factory=set)
    """Subscribed since the last response: due even while one is in flight."""
    fresh_all: bool = False
    """The wildcard was just turned on (or a new stream): every name is fresh."""
    in_flight: dict[str, _Sent] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    rejected_for: str = ""
    """Snapshot version the rejected pairs hold for."""
    synced: str | None = None
    """Snapshot version whose view `known` equals for the whole scope; None = not known."""
    sent_version: str = ""
    acked_version: str | None = None
    nack: Nack | None = None
    answered: bool = False
    """A response of this type was sent on this stream (the first is sent even when empty)."""

    @property
    def owes_first_answer(self) -> bool:
        """A wildcard subscriber that has nothing and was never answered: told once, even
        with nothing to send, that nothing exists (an empty table), or it would wait for a
        first response forever (go-control-plane's rule too)."""
        return self.wildcard and not self.answered and not self.known

    def in_scope(self, name: str) -> bool:
        return self.wildcard or name in self.names


@dataclass(slots=True)
class DeltaStreamState:
    """Protocol state of one delta ADS stream (the same status methods as `StreamState`)."""

    peer: str
    node_id: str = ""
    namespace: str | None = None
    workload: str = ""
    pod: str = ""
    admin: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    seen_version: str = ""
    types: dict[str, _DeltaType] = field(
        default_factory=lambda: {url: _DeltaType(url) for url in SEND_ORDER}
    )
    _nonces: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # ---- requests

    def on_request(self, req: Any) -> RequestVerdict:
        if req.HasField("node") and not self.node_id:
            identify(self, req.node)
        t = self.types.get(req.type_url)
        if t is None:
            return RequestVerdict("unknown")
        kind = self._subscription(t, req)
        nonce = str(req.response_nonce)
        if not nonce:
            return RequestVerdict(kind)
        sent = t.in_flight.pop(nonce, None)
        if sent is None:
            return RequestVerdict("stale" if kind == "update" else "stale-update")
        # Older responses the client answered nothing for are not waited for any longer:
        # what they carried is not known, so the next look sends it again if still due.
        for older in [n for n in t.in_flight if int(n) < int(nonce)]:
            del t.in_flight[older]
            t.synced = None
        if req.HasField("error_detail"):
            t.synced = None
            if t.rejected_for != sent.system_version:
                t.rejected, t.rejected_for = {}, sent.system_version
            t.rejected.update(sent.versions)
            t.nack = Nack(
                type_url=t.type_url,
                version=sent.system_version,
                reason=str(req.error_detail.message)[:MAX_REASON_CHARS],
            )
            return RequestVerdict("nack", t.nack)
        for name, version in sent.versions.items():
            if t.in_scope(name):
                t.known[name] = version
        for name in sent.removed:
            if name in t.names:
                t.known[name] = ABSENT
            else:
                t.known.pop(name, None)
        t.acked_version, t.nack = sent.system_version, None
        if sent.complete and not t.in_flight and not t.fresh and not t.fresh_all:
            t.synced = sent.system_version
        return RequestVerdict("ack")

    def _subscription(self, t: _DeltaType, req: Any) -> str:
        subscribe = set(req.resource_names_subscribe)
        unsubscribe = set(req.resource_names_unsubscribe)
        first = not t.subscribed
        t.subscribed = True
        if first:
            t.known.update(dict(req.initial_resource_versions))
            t.fresh_all = True
            if not subscribe and t.type_url in WILDCARD_TYPES:
                t.wildcard = t.legacy = True
        elif not subscribe and not unsubscribe:
            return "update" if req.response_nonce else "subscribe"
        if WILDCARD_NAME in subscribe:
            if not t.wildcard:
                t.fresh_all = True
            t.wildcard, t.legacy = True, False
        elif subscribe and t.legacy:
            t.wildcard = t.legacy = False  # naming resources ends a legacy wildcard
            self._forget_unnamed(t, keep=subscribe)
        if WILDCARD_NAME in unsubscribe:
            t.wildcard = t.legacy = False
            self._forget_unnamed(t, keep=subscribe)
        new = (subscribe - {WILDCARD_NAME}) - t.names
        t.names |= new
        if not t.wildcard:
            t.fresh |= new
        for name in unsubscribe - {WILDCARD_NAME}:
            t.names.discard(name)
            t.fresh.discard(name)
            if not t.wildcard:
                t.known.pop(name, None)
        return "subscribe" if first else "update"

    @staticmethod
    def _forget_unnamed(t: _DeltaType, *, keep: set[str]) -> None:
        for name in [n for n in t.known if n not in t.names and n not in keep]:
            del t.known[name]
        t.synced = None

    # ---- responses

    def due(self, snapshot: Snapshot, built: Built) -> list[Encoded]:
        """The responses this stream needs now (and marks them in flight)."""
        out: list[Encoded] = []
        self.seen_version = version = snapshot.version_info
        changes: Mapping[str, frozenset[str]] | None = None
        looked = False
        for url in SEND_ORDER:
            t = self.types[url]
            if not t.subscribed:
                continue
            if t.rejected_for and t.rejected_for != version:
                t.rejected, t.rejected_for = {}, ""
            served = built.versions.get(url, {})
            if t.in_flight:
                if not t.fresh and not t.fresh_all:
                    continue
                names: Iterable[str] = self._scope(t, served) if t.fresh_all else set(t.fresh)
                complete = False
            elif t.synced == version and not t.fresh_all:
                if not t.fresh:
                    continue  # it has this snapshot's view already
                names, complete = set(t.fresh), True
            else:
                if not looked:
                    changes, looked = snapshot.changes(self.namespace), True
                prev = snapshot.previous
                if (
                    changes is not None
                    and prev is not None
                    and t.synced == prev.version_info
                    and not t.fresh_all
                ):
                    names = changes.get(url, frozenset()) | t.fresh
                    if not names and not t.owes_first_answer:
                        # The fan-out's common case: this type did not change, nothing due
                        # (what `_response` would conclude, without building its arguments).
                        if t.nack is None:
                            t.synced = version
                        continue
                else:
                    names = self._scope(t, served)
                complete = True
            response = self._response(t, url, names, served, built, version, complete)
            t.fresh.clear()
            t.fresh_all = False
            if response is not None:
                out.append(response)
            elif complete and not t.in_flight and t.nack is None:
                t.synced = version
        return out

    @staticmethod
    def _scope(t: _DeltaType, served: Mapping[str, str]) -> set[str]:
        names = set(t.names) | t.known.keys()
        if t.wildcard:
            names |= served.keys()
        return names

    def _response(
        self,
        t: _DeltaType,
        url: str,
        names: Iterable[str],
        served: Mapping[str, str],
        built: Built,
        version: str,
        complete: bool,
    ) -> Encoded | None:
        send: dict[str, str] = {}
        removed: list[str] = []
        for name in names:
            if not t.in_scope(name):
                continue
            v = served.get(name)
            k = t.known.get(name)
            if v is not None:
                if v != k and t.rejected.get(name) != v:
                    send[name] = v
            elif (k is None and name in t.names) or (k is not None and k != ABSENT):
                removed.append(name)  # gone, or subscribed by name and never existed
        if not send and not removed and not t.owes_first_answer:
            return None
        t.answered = True
        nonce = str(next(self._nonces))
        body, gone = delta_body(
            built.bodies,
            type_url=url,
            system_version=version,
            send=send,
            removed=removed,
            view=built.view[url],
        )
        response = Encoded(
            type_url=url,
            nonce=nonce,
            body=body,
            system_version_info=version,
            resource_count=len(send),
            removed_resources=gone,
        )
        t.in_flight[nonce] = _Sent(
            versions=send, removed=tuple(removed), system_version=version, complete=complete
        )
        t.sent_version = version
        t.synced = None
        return response

    def settled(self, type_url: str, version: str) -> bool:
        """Nothing of `type_url` is due against snapshot `version` and the stream has looked
        at it: after such an ACK the writer need not wake (types are due independently)."""
        t = self.types.get(type_url)
        return (
            t is not None
            and self.seen_version == version
            and t.synced == version
            and not t.in_flight
            and not t.fresh
            and not t.fresh_all
        )

    # ---- status (the same shapes as `StreamState`'s)

    def acked(self) -> dict[str, str]:
        return {
            _KINDS[url]: t.acked_version
            for url, t in self.types.items()
            if t.acked_version is not None
        }

    def subscriptions(self) -> dict[str, tuple[str, ...]]:
        return {
            _KINDS[url]: tuple(sorted(t.names | ({WILDCARD_NAME} if t.wildcard else set())))
            for url, t in self.types.items()
            if t.subscribed
        }

    def sent(self) -> dict[str, str]:
        return {_KINDS[url]: t.sent_version for url, t in self.types.items() if t.sent_version}

    def sync(self, version: str) -> dict[str, SyncState]:
        out: dict[str, SyncState] = {}
        for url, t in self.types.items():
            state: SyncState
            if not t.subscribed:
                state = "IGNORED"
            elif not t.sent_version and t.synced is None:
                state = "NOT SENT"
            elif t.in_flight or t.nack is not None or self.seen_version != version:
                state = "STALE"
            else:
                state = "SYNCED"
            out[_KINDS[url]] = state
        return out

    def nacks(self) -> list[Nack]:
        return [t.nack for t in self.types.values() if t.nack is not None]

    def subscribed_names(self, type_url: str) -> frozenset[str]:
        t = self.types.get(type_url)
        return frozenset() if t is None else frozenset(t.names)
