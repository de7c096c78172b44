"""The policy IR: who may call an inbound server, from either dialect, as frozen data.

```
PolicyTable
 ├── servers: InboundServer            a Linkerd Server: workload selector + port + protocol
 │     ├── default_policy               its accessPolicy (deny unless v1beta3 says otherwise)
 │     ├── authorizations: Authorization     server-level (ServerAuthorization, policies on
 │     │                                     the Server or its Namespace, the default policy's)
 │     └── routes: InboundRoute(name, authorizations)   HTTPRoutes/GRPCRoutes with the Server as parent
 ├── workload_policies: WorkloadPolicy  an Istio AuthorizationPolicy: namespace (None = mesh)
 │                                      + selector (None = every workload) + authorizations
 ├── namespace_defaults: NamespaceDefault   `config.linkerd.io/default-inbound-policy` on a Namespace
 └── cluster_default, cluster_networks  what a port with no Server falls back to

Authorization(action ALLOW|DENY|AUDIT, routes, peers (any-of), operations (any-of),
              conditions (all-of), failed: str | None)
 └── Peer(tls, identities, networks, namespaces, request principals, ... and their not-twins)
```

Linkerd's authorizations are ALLOW with one Peer each; Istio's rules keep their action and
their `to`/`when` parts. An authorization that cannot be honoured (it names an authentication
that does not exist, or a CUSTOM provider Turnout does not have) stays in the table with
`failed` set: a failed ALLOW never allows, a failed DENY still denies what its rule matches
(fail closed). How a request is decided is `engine.authorization.decide` and
`docs/policy.md`; the proxy implements the same rules from the same data.

Conventions as `engine.ir` (STYLE.md §2): frozen, slotted, keyword-only, tuples only, names
built from the source path (``server/shop/web-http``, ``serverauthorization/shop/web/0``).
Only the standard library (and `engine.ir`'s `SourceRef`) is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from turnout.engine.ir import Match, SourceRef, dataclasses_in, store_by_slot

DefaultPolicy = Literal[
    "all-unauthenticated",
    "all-authenticated",
    "cluster-unauthenticated",
    "cluster-authenticated",
    "deny",
    "audit",
]
Protocol = Literal["unknown", "HTTP/1", "HTTP/2", "gRPC", "opaque", "TLS"]
Action = Literal["ALLOW", "DENY", "AUDIT"]
TLSRequirement = Literal["any", "tls", "authenticated"]
"""What a peer's connection must be: `any` (plaintext too), `tls` (TLS without a verified
identity, Linkerd's `unauthenticatedTLS`), `authenticated` (mTLS with a client identity)."""
StringKind = Literal["exact", "prefix", "suffix", "present"]
LabelOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]


# --------------------------------------------------------------------------- matches


@dataclass(frozen=True, slots=True, kw_only=True)
class StringMatch:
    """Istio's string match: `exact`, `prefix` (``abc*``), `suffix` (``*abc``) or `present`
    (``*``: set and non-empty)."""

    kind: StringKind
    value: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Network:
    """A client network: `cidr` minus every `excluded` CIDR (normalised text, ``10.0.0.0/8``)."""

    cidr: str
    excluded: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ExactIdentity:
    """The client's mTLS identity (DNS form, ``web.shop.serviceaccount.identity.cluster.local``)
    equals `value`."""

    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentitySuffix:
    """The identity ends with `suffix` (Linkerd's ``*.shop.serviceaccount.identity...``; the
    suffix keeps its leading dot)."""

    suffix: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceAccountIdentity:
    """The identity is ``<name>.<namespace>.serviceaccount.identity.<domain>``."""

    namespace: str
    name: str | None = None
    """None: every ServiceAccount of the namespace."""
    trust_domain: str | None = None
    """None: any trust domain (Linkerd's refs); Istio principals name theirs."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PrincipalMatch:
    """Istio's principal (``<trust-domain>/ns/<ns>/sa/<sa>``, derived from the identity)
    matches a wildcard pattern."""

    match: StringMatch


IdentityMatch = ExactIdentity | IdentitySuffix | ServiceAccountIdentity | PrincipalMatch


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    """One kind of client. Every part that is set must hold (AND); within a part any value
    may match (OR); () means "no condition" and a `not_*` part must not match."""

    tls: TLSRequirement = "any"
    identities: tuple[IdentityMatch, ...] = ()
    """Any of these; () = any identity (with `tls: authenticated`, any authenticated client)."""
    not_identities: tuple[IdentityMatch, ...] = ()
    namespaces: tuple[StringMatch, ...] = ()
    """The client identity's namespace (Istio `namespaces`; needs mTLS)."""
    not_namespaces: tuple[StringMatch, ...] = ()
    networks: tuple[Network, ...] = ()
    """The connection's peer address is in any of these; () = any address."""
    not_networks: tuple[Network, ...] = ()
    request_principals: tuple[StringMatch, ...] = ()
    """JWT ``<iss>/<sub>`` (HTTP only; needs RequestAuthentication)."""
    not_request_principals: tuple[StringMatch, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """Istio's `to.operation` (HTTP-only except `ports`); parts AND, values OR."""

    hosts: tuple[StringMatch, ...] = ()
    not_hosts: tuple[StringMatch, ...] = ()
    ports: tuple[int, ...] = ()
    not_ports: tuple[int, ...] = ()
    methods: tuple[StringMatch, ...] = ()
    not_methods: tuple[StringMatch, ...] = ()
    paths: tuple[StringMatch, ...] = ()
    not_paths: tuple[StringMatch, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """Istio's `when`: attribute `key` matches any of `values` and none of `not_values`."""

    key: str
    """``source.ip``, ``request.headers[x-user]``, ``request.auth.claims[group]`` ..."""
    values: tuple[StringMatch, ...] = ()
    not_values: tuple[StringMatch, ...] = ()


# --------------------------------------------------------------------------- authorizations


@dataclass(frozen=True, slots=True, kw_only=True)
class Authorization:
    """One way to be allowed (or denied): the request matches when any peer, any operation
    and every condition match; () peers / operations = any."""

    name: str
    """Stable: ``serverauthorization/<ns>/<name>``, ``authorizationpolicy/<ns>/<name>``,
    ``istio/authorizationpolicy/<ns>/<name>/rule/<i>``, ``default/<policy>``."""
    source: SourceRef
    action: Action = "ALLOW"
    peers: tuple[Peer, ...] = ()
    operations: tuple[Operation, ...] = ()
    conditions: tuple[Condition, ...] = ()
    failed: str | None = None
    """Why it cannot be honoured (None: it can). A failed ALLOW never allows; a failed DENY
    (an Istio CUSTOM rule with no provider) still denies what its rule matches."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundRoute:
    """An HTTPRoute/GRPCRoute whose parent is the Server: its own authorizations, to which
    the server-level ones are added (a route policy only adds)."""

    name: str
    """``httproute/<ns>/<name>`` (also what a decision is asked for)."""
    source: SourceRef
    authorizations: tuple[Authorization, ...] = ()
    matches: tuple[Match, ...] = ()
    """The route's rule matches (any one selects the route; () = every request), in the
    route's rule order; a GRPCRoute's method matches are rendered as path matches
    (``/<service>/<method>`` exact, ``/<service>`` prefix, or a regex for a method-only or
    RegularExpression match)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelRequirement:
    key: str
    operator: LabelOperator
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadSelector:
    """Labels a workload must carry (all of `labels`, all `expressions`); empty = every one."""

    labels: tuple[tuple[str, str], ...] = ()
    """Sorted (key, value) pairs."""
    expressions: tuple[LabelRequirement, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundServer:
    """A port of the selected workloads and who may call it."""

    name: str
    """``server/<ns>/<name>``, or ``default/<ns>/<port>`` for a port with no Server."""
    source: SourceRef
    namespace: str
    selector: WorkloadSelector
    port: int | str
    """The port number, or a container port name."""
    protocol: Protocol = "unknown"
    """`opaque`/`TLS`: no HTTP, one decision per connection."""
    default_policy: DefaultPolicy = "deny"
    authorizations: tuple[Authorization, ...] = ()
    """Server-level, in name order, the default policy's last."""
    routes: tuple[InboundRoute, ...] = ()
    configured: bool = True
    """False: no Server selects the port; built from the namespace or cluster default."""

    @property
    def opaque(self) -> bool:
        return self.protocol in ("opaque", "TLS")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadPolicy:
    """An Istio AuthorizationPolicy's scope and its authorizations (one per rule)."""

    name: str
    """``istio/authorizationpolicy/<ns>/<name>``."""
    source: SourceRef
    namespace: str | None
    """None: mesh-wide (the policy lives in the root namespace)."""
    selector: WorkloadSelector | None
    """None: every workload of the namespace."""
    action: Action
    authorizations: tuple[Authorization, ...] = ()
    """() for an ALLOW policy: it allows nothing (``spec: {}``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NamespaceDefault:
    namespace: str
    policy: DefaultPolicy
    source: SourceRef


MtlsMode = Literal["STRICT", "PERMISSIVE", "DISABLE"]
"""Istio's PeerAuthentication modes; `UNSET` is kept as None (inherit from the parent scope)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerAuthn:
    """An Istio PeerAuthentication: the inbound mTLS mode of the workloads it selects.

    Precedence (Istio's): a policy with a selector beats its namespace's policy (no
    selector), which beats the mesh-wide one (root namespace, no selector); among equals the
    oldest (then `namespace/name`) wins. `mode` None (UNSET) inherits the next scope's mode;
    nothing anywhere means PERMISSIVE. `port_modes` (only with a selector) override the mode
    for those container ports."""

    name: str
    """``istio/peerauthentication/<ns>/<name>``."""
    source: SourceRef
    namespace: str | None
    """None: mesh-wide (the policy lives in the root namespace)."""
    selector: WorkloadSelector | None
    mode: MtlsMode | None = None
    port_modes: tuple[tuple[int, MtlsMode | None], ...] = ()
    """(port, mode) in port order; a None mode inherits the workload-level mode."""
    created: str = ""
    """`metadata.creationTimestamp` in UTC (``2024-01-02T03:04:05Z``, so strings compare in
    time order), "" when absent (counts as newest): the tie-break."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JwtLocation:
    """Where a token is read: a header (with an exact prefix, e.g. ``Bearer ``) or a query
    parameter."""

    header: str | None = None
    """Lower-cased header name."""
    prefix: str = ""
    param: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JwtRule:
    """One `jwtRules[]` entry of a RequestAuthentication."""

    issuer: str
    audiences: tuple[str, ...] = ()
    jwks_uri: str | None = None
    jwks: str | None = None
    """Inline JWKS JSON."""
    locations: tuple[JwtLocation, ...] = ()
    """() = the defaults: ``Authorization: Bearer`` then ``?access_token``."""
    output_payload_to_header: str | None = None
    output_claim_to_headers: tuple[tuple[str, str], ...] = ()
    """(header lower-cased, claim) pairs."""
    forward_original_token: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestAuthn:
    """An Istio RequestAuthentication: the JWT rules of the workloads it selects. Every
    RequestAuthentication that selects a workload (mesh-wide, its namespace's, its own)
    applies: their rules are combined."""

    name: str
    """``istio/requestauthentication/<ns>/<name>``."""
    source: SourceRef
    namespace: str | None
    """None: mesh-wide (root namespace)."""
    selector: WorkloadSelector | None
    rules: tuple[JwtRule, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyTable:
    servers: tuple[InboundServer, ...] = ()
    workload_policies: tuple[WorkloadPolicy, ...] = ()
    peer_authentications: tuple[PeerAuthn, ...] = ()
    request_authentications: tuple[RequestAuthn, ...] = ()
    namespace_defaults: tuple[NamespaceDefault, ...] = ()
    cluster_default: DefaultPolicy = "all-unauthenticated"
    cluster_networks: tuple[Network, ...] = ()


store_by_slot(*dataclasses_in(globals()))  # the IR's construction (`ir.store_by_slot`)
