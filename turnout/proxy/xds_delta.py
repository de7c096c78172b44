"""The ADS client's resources over delta (incremental) xDS: `DeltaXdsResources`.

```
DeltaDiscoveryResponse ─ on_response ─> that type's candidate {name: message}
   resources          decoded one by one; replace the named candidates (versions kept)
   removed_resources  leave the candidates
   then, as in state of the world (`XdsResources`): RDS/EDS names follow the candidate
   listeners and clusters (sent as resource_names_subscribe / _unsubscribe), and the set is
   built into a `RuntimeTable` once complete (or ACKed and waited for)
answers            one DeltaDiscoveryRequest per response, with its nonce: ACK, or NACK
                   (error_detail) when it does not decode or breaks the table
start_stream       "*" for LDS, CDS (and the policy); RDS/EDS by name; each first request
                   carries initial_resource_versions = the applied versions, so a reconnect
                   to an unchanged server gets nothing
```

The table build and its all-or-nothing rule are `XdsResources.settle`'s, unchanged; what
differs is how a response becomes a candidate set and how it is answered.

A NACK takes back only what the NACKed responses changed: a response ACKed while it waited
for a dependency stays a candidate, as the server counts it as ours (a delta server sends a
resource again only when its version changes), and the table keeps serving the last good set.
"""

from __future__ import annotations

import logging
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import code_pb2, status_pb2

from turnout.proxy import config
from turnout.proxy.errors import TableError
from turnout.proxy.xds_resources import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    POLICY_TYPE,
    Verdict,
    XdsResources,
    decode,
    decode_policy,
)

log = logging.getLogger(__name__)

WILDCARD = "*"


def delta_request(
    type_url: str,
    *,
    nonce: str = "",
    subscribe: tuple[str, ...] = (),
    unsubscribe: tuple[str, ...] = (),
    initial: dict[str, str] | None = None,
    error: str | None = None,
) -> Any:
    req = discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url,
        response_nonce=nonce,
        resource_names_subscribe=subscribe,
        resource_names_unsubscribe=unsubscribe,
        initial_resource_versions=initial or {},
    )
    if error is not None:
        req.error_detail.CopyFrom(
            status_pb2.Status(
                code=code_pb2.INVALID_ARGUMENT, message=error[: config.MAX_XDS_ERROR_DETAIL_CHARS]
            )
        )
    return req


class DeltaXdsResources(XdsResources):
    """`XdsResources` fed by delta responses (pure, no I/O and no clock)."""

    def __init__(self, *, policy: bool = False) -> None:
        super().__init__(policy=policy)
        self._unanswered: dict[str, list[str]] = {}
        """type_url -> nonces of responses not ACKed or NACKed yet, oldest first."""
        self._undo: dict[str, dict[str, tuple[Any, str | None]]] = {}
        """nonce -> name -> (message, version) before that unanswered response (None: it
        was not there): what a NACK puts back, so the candidates stay what the server
        believes we have (it keeps its `known` on a NACK, and what was ACKed stays)."""
        self._candidate_versions: dict[str, dict[str, str]] = {}
        self._accepted_versions: dict[str, dict[str, str]] = {}
        self._policy_resources: dict[str, Any] = {}
        self._policy_versions: dict[str, str] = {}

    def start_stream(self) -> list[Any]:
        self._unanswered, self._undo = {}, {}
        for t in self.types.values():
            t.candidate, t.nonce, t.sent_names = dict(t.accepted), "", None
            t.pending, t.unapplied, t.acked_version = None, None, t.accepted_version or ""
            self._candidate_versions[t.type_url] = dict(self._accepted_versions.get(t.type_url, {}))
        out = [
            delta_request(url, subscribe=(WILDCARD,), initial=self._accepted_versions.get(url, {}))
            for url in (LISTENER_TYPE, CLUSTER_TYPE)
        ]
        if self.policy is not None:
            self.policy.nonce, self.policy.pending = "", None
            out.append(
                delta_request(POLICY_TYPE, subscribe=(WILDCARD,), initial=self._policy_versions)
            )
        return out + self._resubscribe()

    # ---- responses

    def on_response(self, response: Any) -> Verdict:
        if self.policy is not None and response.type_url == POLICY_TYPE:
            return self._on_policy(response)
        t = self._responding(response)
        if t is None:
            return Verdict()
        try:
            added = self._decode(response)
        except TableError as exc:
            error = str(exc)
            req = delta_request(t.type_url, nonce=response.nonce, error=error)
            return Verdict(requests=[req], error=error, nacks=1)
        versions = self._candidate_versions.setdefault(t.type_url, {})
        undo = self._undo[response.nonce] = {}
        for name in response.removed_resources:
            undo.setdefault(name, (t.candidate.pop(name, None), versions.pop(name, None)))
        for name, (message, version) in added.items():
            if t.names is None or name in t.names:
                undo.setdefault(name, (t.candidate.get(name), versions.get(name)))
                t.candidate[name], versions[name] = message, version
        self._unanswered.setdefault(t.type_url, []).append(response.nonce)
        return self._candidate_changed(t, response.system_version_info)

    @staticmethod
    def _decode(response: Any) -> dict[str, tuple[Any, str]]:
        """name -> (message, version) of a delta response's resources, or `TableError`."""
        sotw = discovery_pb2.DiscoveryResponse(
            version_info=response.system_version_info,
            type_url=response.type_url,
            resources=[r.resource for r in response.resources],
        )
        messages = decode(sotw)
        versions = {r.name: r.version for r in response.resources}
        return {name: (m, versions.get(name, "")) for name, m in messages.items()}

    def _on_policy(self, response: Any) -> Verdict:
        p = self.policy
        assert p is not None
        resources = dict(self._policy_resources)
        versions = dict(self._policy_versions)
        for name in response.removed_resources:
            resources.pop(name, None)
            versions.pop(name, None)
        for r in response.resources:
            resources[r.name], versions[r.name] = r.resource, r.version
        sotw = discovery_pb2.DiscoveryResponse(
            version_info=response.system_version_info,
            type_url=POLICY_TYPE,
            resources=[resources[n] for n in sorted(resources)],
        )
        try:
            decoded = decode_policy(sotw)
        except TableError as exc:
            error = str(exc)
            req = delta_request(POLICY_TYPE, nonce=response.nonce, error=error)
            return Verdict(requests=[req], error=error, nacks=1)
        self._policy_resources, self._policy_versions = resources, versions
        self.policy_version = p.acked_version = response.system_version_info
        return Verdict(
            requests=[delta_request(POLICY_TYPE, nonce=response.nonce)], policy=decoded, acks=1
        )

    # ---- subscriptions and answers (the hooks `settle` calls)

    def _resubscribe(self) -> list[Any]:
        out = []
        for t, names in self._wanted():
            if names != t.names:
                t.names = names
                t.candidate = {k: v for k, v in t.candidate.items() if k in names}
                versions = self._candidate_versions.get(t.type_url, {})
                self._candidate_versions[t.type_url] = {
                    k: v for k, v in versions.items() if k in names
                }
            sent = t.sent_names
            if sent is None:
                if names:  # an empty first request would read as a wildcard
                    accepted = self._accepted_versions.get(t.type_url, {})
                    out.append(
                        delta_request(
                            t.type_url,
                            subscribe=tuple(sorted(names)),
                            initial={n: v for n, v in accepted.items() if n in names},
                        )
                    )
                    t.sent_names = names
            elif names != sent:
                out.append(
                    delta_request(
                        t.type_url,
                        subscribe=tuple(sorted(names - sent)),
                        unsubscribe=tuple(sorted(sent - names)),
                    )
                )
                t.sent_names = names
        return out

    def _answer(self) -> list[Any]:
        out = []
        for t in self.types.values():
            if t.pending is not None:
                t.acked_version, t.pending = t.pending, None
            for n in self._unanswered.pop(t.type_url, []):
                self._undo.pop(n, None)
                out.append(delta_request(t.type_url, nonce=n))
        return out

    def _accept(self) -> list[Any]:
        for t in self.types.values():
            t.accepted = dict(t.candidate)
            self._accepted_versions[t.type_url] = dict(self._candidate_versions.get(t.type_url, {}))
            if t.unapplied is not None:
                t.accepted_version, t.unapplied = t.unapplied, None
        return self._answer()

    def _reject(self, error: str) -> Verdict:
        """NACK the unanswered responses and take back what they changed; what was ACKed
        while it waited stays a candidate (the server counts it as ours)."""
        out = []
        for t in self.types.values():
            nonces = self._unanswered.pop(t.type_url, [])
            if t.unapplied is None and not nonces:
                continue
            t.pending = t.unapplied = None
            t.acked_version = t.accepted_version or ""
            versions = self._candidate_versions.setdefault(t.type_url, {})
            for n in reversed(nonces):
                for name, (message, version) in self._undo.pop(n, {}).items():
                    if message is None:
                        t.candidate.pop(name, None)
                        versions.pop(name, None)
                    else:
                        t.candidate[name] = message
                        versions[name] = version or ""
            out += [delta_request(t.type_url, nonce=n, error=error) for n in nonces]
        nacks = len(out)
        out += self._resubscribe()
        return Verdict(requests=out, error=error, nacks=nacks)
