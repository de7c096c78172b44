"""The IR: frozen, hashable routing tables, the one contract between compile and everything after.

```
RouteTable
 ├── parents: ServiceParent | GatewayParent        one per Service port / Gateway port
 │     └── VirtualHost(domains, rules)             producer, per-consumer-namespace, or per hostname
 │           └── Rule(matches, filters, backends, timeouts, retry, fault)   tie-break order
 │                 └── WeightedBackend(weight, target: ServiceTarget | InvalidBackend, filters)
 └── clusters: Cluster(service port, endpoints, retry budget)
RouteStatus, GatewayStatus(listeners: ListenerStatus)   what the sources write back
```

Rules inside a virtual host are kept in Gateway API *tie-break* order (oldest route first, then
`namespace/name`, then rule index). Which match wins a request is decided by
`match_precedence()` first and that order second; `engine.xds` flattens matches in exactly that
order, and the proxy's runtime table reproduces it with an index.

Conventions (STYLE.md §2): frozen slotted keyword-only dataclasses, tuples only, no floats
(weights are ints, fractions are per-million ints, durations are `*_ms` ints), every default
resolved by the compiler, invalid parts kept and marked (`InvalidBackend`, `ErrorResponse`).
Regexes are pattern strings here; the compiler has checked they compile and the proxy compiles
them once per table update. Only the standard library is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

PER_MILLION = 1_000_000
"""Denominator of every `*_per_million` field (100% == 1_000_000)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRef:
    """The user object (and part of it) an IR node came from."""

    kind: str
    """Kubernetes kind: HTTPRoute, GRPCRoute, TrafficSplit, Service, Gateway, FaultInjection ..."""
    namespace: str
    name: str
    section: str | None = None
    """Part of the object, e.g. ``rule/0`` or ``rule/0/backend/1``; None = the whole object."""


# --------------------------------------------------------------------------- matches


@dataclass(frozen=True, slots=True, kw_only=True)
class ExactPath:
    """Byte-for-byte, case-sensitive path equality (query string excluded)."""

    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefixPath:
    """Element-wise prefix: `value` (trailing "/" removed unless it is "/") equals the path or
    is followed in it by "/"."""

    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RegexPath:
    """Full match of the whole path against an RE2-compatible pattern."""

    pattern: str


PathMatch = ExactPath | PrefixPath | RegexPath

MatchKind = Literal["Exact", "RegularExpression"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderMatch:
    """One header condition; `name` is lower-cased (header names are case-insensitive)."""

    name: str
    kind: MatchKind
    value: str
    """Exact value (case-sensitive) or a regex pattern matched against the whole value."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryMatch:
    """One query-parameter condition; names are case-sensitive; the first request value counts."""

    name: str
    kind: MatchKind
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    """All conditions must hold (AND). A rule matches if any of its matches does (OR)."""

    name: str
    """Stable id, e.g. ``httproute/shop/web/rule/0/match/1``."""
    path: PathMatch
    headers: tuple[HeaderMatch, ...] = ()
    query: tuple[QueryMatch, ...] = ()
    method: str | None = None
    """Upper-case HTTP method, None = any method."""


PATH_KIND_RANK = {"ExactPath": 3, "PrefixPath": 2, "RegexPath": 1}


def match_precedence(match: Match) -> tuple[int, int, int, int, int]:
    """Gateway API precedence of a match; larger wins, ties go to the earlier rule.

    "precedence must be given to the match having: Exact path match; Prefix path match with
    largest number of characters; Method match; Largest number of header matches; Largest
    number of query param matches" (HTTPRouteRule, apis/v1/httproute_types.go). Regex paths
    rank below Exact and PathPrefix (implementation-specific; Linkerd's order), longer first.
    """
    path = match.path
    length = len(path.pattern) if isinstance(path, RegexPath) else len(path.value)
    return (
        PATH_KIND_RANK[type(path).__name__],
        length,
        1 if match.method is not None else 0,
        len(match.headers),
        len(match.query),
    )


# --------------------------------------------------------------------------- filters


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    name: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderModifier:
    """`set` replaces every value, `add` appends (joined with ","), `remove` deletes; names are
    compared case-insensitively and kept in the user's case for `set`/`add`."""

    set: tuple[Header, ...] = ()
    add: tuple[Header, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestHeaderFilter:
    """Modify request headers before forwarding (and before later mirrors)."""

    modifier: HeaderModifier


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseHeaderFilter:
    """Modify the backend's response headers before they reach the client."""

    modifier: HeaderModifier


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaceFullPath:
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplacePrefix:
    """Replace the matched `prefix` (trailing "/" removed) with `replacement` (trailing "/"
    removed); an empty result becomes "/" (HTTPROUTE-SEMANTICS §7.4)."""

    prefix: str
    replacement: str


PathRewrite = ReplaceFullPath | ReplacePrefix


@dataclass(frozen=True, slots=True, kw_only=True)
class RedirectFilter:
    """Answer with a redirect; no backend is called."""

    status_code: int
    scheme: str | None = None
    """"http"/"https"; None = the request's scheme."""
    hostname: str | None = None
    """None = the request's host without port."""
    port: int | None = None
    """Resolved by the compiler: the filter's port, else the scheme's well-known port when
    the filter sets a scheme, else the listener (mesh: Service) port. None = omit from
    Location (80 with http, 443 with https)."""
    path: PathRewrite | None = None
    """None = the request path unchanged."""


@dataclass(frozen=True, slots=True, kw_only=True)
class URLRewriteFilter:
    hostname: str | None = None
    """Host header sent upstream; None = unchanged."""
    path: PathRewrite | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MirrorFilter:
    """Send a copy to one endpoint of `backend` and ignore its answer."""

    name: str
    backend: ServiceTarget | InvalidBackend
    per_million: int
    """Probability that a request is mirrored, in millionths (1_000_000 = always)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CorsFilter:
    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age_s: int = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorResponse:
    """Answer with `status` instead of forwarding: an ExtensionRef that cannot be resolved
    must not be skipped (Gateway API §7.8)."""

    status: int
    message: str


Filter = (
    RequestHeaderFilter
    | ResponseHeaderFilter
    | RedirectFilter
    | URLRewriteFilter
    | MirrorFilter
    | CorsFilter
    | ErrorResponse
)


# --------------------------------------------------------------------------- policies


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    request_ms: int | None = None
    """Deadline for the whole exchange including retries; None = no deadline ("0s")."""
    backend_request_ms: int | None = None
    """Deadline for each upstream try; None = no per-try deadline."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """GEP-1731 retry: `attempts` retries after the first try."""

    attempts: int
    codes: tuple[int, ...]
    """HTTP statuses that trigger a retry; connection errors always do."""
    backoff_ms: int
    """Minimum wait before each retry (the proxy adds exponential growth and jitter)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultDelay:
    duration_ms: int
    per_million: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultAbort:
    per_million: int
    http_status: int | None = None
    grpc_status: int | None = None
    """Exactly one of `http_status` and `grpc_status` is set."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultInjection:
    """From a `FaultInjection` (policy.turnout.dev) referenced by an ExtensionRef filter."""

    name: str
    source: SourceRef
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBudget:
    """Retries allowed on top of requests (GEP-3388 retryConstraint, Linkerd's budget)."""

    percent: int
    interval_ms: int
    min_retry_count: int
    min_retry_interval_ms: int


# --------------------------------------------------------------------------- backends


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceTarget:
    """A resolved Service port; `cluster` names the `Cluster` in `RouteTable.clusters`."""

    cluster: str
    namespace: str
    service: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidBackend:
    """An unresolved backendRef: it keeps its weight and its share answers `status`."""

    status: int
    reason: str
    """Gateway API ResolvedRefs reason: BackendNotFound, RefNotPermitted, InvalidKind ..."""
    message: str
    ref: str = ""
    """The reference as written, defaults applied: ``NS/NAME`` for a Service, ``Kind NS/NAME``
    for anything else; what `mesh test` weights and `mesh routes` show for this share."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightedBackend:
    name: str
    """``httproute/shop/web/rule/0/backend/1``."""
    source: SourceRef
    weight: int
    target: ServiceTarget | InvalidBackend
    filters: tuple[Filter, ...] = ()
    """backendRef-level filters, run only when this backend is picked."""


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    name: str
    """``httproute/shop/web/rule/0`` (``.../rule/<name>`` is not used: indices are stable)."""
    source: SourceRef
    matches: tuple[Match, ...]
    filters: tuple[Filter, ...] = ()
    """Rule-level filters in the user's order."""
    backends: tuple[WeightedBackend, ...] = ()
    timeouts: Timeouts = Timeouts()
    retry: RetryPolicy | None = None
    """None = no retries."""
    fault: FaultInjection | None = None
    section_name: str | None = None
    """The rule's `name` (GEP-995), if any."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    """Host names served, exact or ``*.suffix``; ``("*",)`` = any host."""
    rules: tuple[Rule, ...]
    """In tie-break order (route creationTimestamp, namespace/name, rule index)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerView:
    """Consumer routes of one client namespace; they replace the producer routes for it."""

    namespace: str
    vhost: VirtualHost


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceParent:
    """A Service port as a mesh (GAMMA) parent."""

    name: str
    """``service/<ns>/<name>:<port>``."""
    namespace: str
    service: str
    port: int
    port_name: str | None
    authority: str
    """``<name>.<ns>.svc.cluster.local:<port>``: the xDS listener name and `xds:///` target."""
    producer: VirtualHost
    """Producer routes, or a default rule to the Service itself when no route attaches."""
    consumers: tuple[ConsumerView, ...] = ()
    addresses: tuple[str, ...] = ()
    """The Service's cluster IPs (`clusterIP`, then the rest of `clusterIPs`): a client that
    connects to one of them at `port` is sending to this parent; empty for a headless
    Service or one whose manifest has none yet."""
    opaque_cluster: str | None = None
    """The port is marked opaque (``config.linkerd.io/opaque-ports`` on the Service or its
    Namespace): a transparent client proxy forwards its bytes untouched, no detection, no
    routes, to an endpoint of this cluster, the Service's own ``NS/NAME:PORT``
    (docs/capture.md). None: not opaque."""


REDACTED = {"redact": True}
"""Field metadata: renders print ``[redacted]`` for the value (private keys)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificatePair:
    """One certificate of an HTTPS listener, from a `kubernetes.io/tls` Secret."""

    source: SourceRef
    """The Secret."""
    chain_pem: str
    """The leaf first, then its intermediates (`tls.crt`)."""
    key_pem: str = field(metadata=REDACTED, repr=False)
    """The private key (`tls.key`); never rendered."""
    names: tuple[str, ...] = ()
    """The leaf's DNS names (subjectAltName), for readers."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerTLS:
    """TLS termination on a listener (`tls.mode: Terminate`)."""

    certificates: tuple[CertificatePair, ...] = ()
    """The refs that resolved, in `certificateRefs` order; empty: every handshake is refused."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    name: str
    hostname: str | None
    protocol: str
    tls: ListenerTLS | None = None
    """Set on HTTPS listeners."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayParent:
    """All HTTP listeners of one Gateway that share a port."""

    name: str
    """``gateway/<ns>/<name>:<port>``."""
    namespace: str
    gateway: str
    port: int
    listeners: tuple[Listener, ...]
    vhosts: tuple[VirtualHost, ...]
    """One per served hostname, most specific first; a request uses the first that matches."""


Parent = ServiceParent | GatewayParent


IDENTITY_ANNOTATION = "identity.turnout.dev/name"
"""EndpointSlice annotation: the identity (``<sa>.<ns>.serviceaccount.identity.<domain>``)
every endpoint of the slice serves mesh TLS as (docs/xds.md "Endpoint identities")."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    address: str
    port: int
    ready: bool = True
    zone: str | None = None
    identity: str | None = None
    """The workload identity its proxy serves mesh TLS as (the EndpointSlice annotation
    `IDENTITY_ANNOTATION`); None: not meshed, plaintext."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Cluster:
    """One Service port that traffic can be sent to."""

    name: str
    """``<ns>/<name>:<port>``."""
    namespace: str
    service: str
    port: int
    protocol: Literal["http1", "h2c", "grpc"] = "http1"
    endpoints: tuple[Endpoint, ...] = ()
    endpoints_known: bool = False
    """False when no EndpointSlice was given (offline): the backend is assumed to answer."""
    retry_budget: RetryBudget


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteTable:
    parents: tuple[Parent, ...] = ()
    """Sorted by name."""
    clusters: tuple[Cluster, ...] = ()
    """Sorted by name."""

    def parent(self, name: str) -> Parent | None:
        for p in self.parents:
            if p.name == name:
                return p
        return None

    def cluster(self, name: str) -> Cluster | None:
        for c in self.clusters:
            if c.name == name:
                return c
        return None


# --------------------------------------------------------------------------- status


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    observed_generation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ParentRefKey:
    """A `parentRefs[]` entry with defaults applied (as echoed in `status.parents[].parentRef`)."""

    group: str
    kind: str
    namespace: str
    name: str
    section_name: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ParentStatus:
    parent_ref: ParentRefKey
    controller_name: str
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteStatus:
    """`status.parents` that Turnout owns for one route (other controllers' entries untouched)."""

    route: SourceRef
    generation: int
    parents: tuple[ParentStatus, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteGroupKind:
    group: str
    kind: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerStatus:
    """`status.listeners[]` of one `spec.listeners[]` entry (same `name`)."""

    name: str
    supported_kinds: tuple[RouteGroupKind, ...]
    """The route kinds this listener admits and Turnout serves on its protocol."""
    attached_routes: int
    """Routes accepted through this listener (a route counts once per listener)."""
    conditions: tuple[Condition, ...]
    """Accepted, Programmed, ResolvedRefs, Conflicted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayStatus:
    """The `status` of one Gateway of Turnout's GatewayClass (or of an unknown class)."""

    gateway: SourceRef
    generation: int
    conditions: tuple[Condition, ...]
    """Accepted, Programmed."""
    listeners: tuple[ListenerStatus, ...]
    """In `spec.listeners` order."""


# --------------------------------------------------------------------------- construction


def store_by_slot(*classes: type) -> None:
    """Give each of these frozen, slotted dataclasses an ``__init__`` that stores each
    field through its slot descriptor.

    A frozen dataclass's own ``__init__`` stores each field with ``object.__setattr__``;
    the slot's ``__set__`` does the same store for ~12 % fewer instructions of a whole
    compile (10k routes build ~20 IR nodes each). The classes stay what `@dataclass` made
    them: frozen (assignment after construction raises), slotted, with the same defaults
    and the same positional and keyword-only parameters; `dataclasses.replace` goes
    through this ``__init__`` too. Only plain defaults are supported (no default factories,
    InitVars or ``__post_init__``): anything else raises here, at import. The compiler's
    per-route records use it too (`compile.units`)."""
    for cls in classes:
        setattr(cls, "__init__", _slot_init(cls))  # noqa: B010 (a method is replaced)


def dataclasses_in(namespace: Mapping[str, object]) -> list[type]:
    """The dataclasses a module (its globals) defines itself."""
    module = namespace["__name__"]
    return [
        cls
        for cls in namespace.values()
        if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == module
    ]


def _slot_init(cls: type) -> object:
    names: dict[str, object] = {}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING or not f.init:
            raise TypeError(f"{cls.__name__}.{f.name}: store_by_slot supports plain fields")
        names[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        param = f.name
        if f.default is not dataclasses.MISSING:
            names[f"_default_{f.name}"] = f.default
            param = f"{f.name}=_default_{f.name}"
        (keyword if f.kw_only else positional).append(param)
        body.append(f"    _set_{f.name}(self, {f.name})")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: store_by_slot does not call __post_init__")
    params = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    source = f"def __init__({params}):\n" + "\n".join(body or ["    pass"])
    exec(source, names)  # what `dataclasses` itself does to build an __init__
    init = names["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    return init


store_by_slot(*dataclasses_in(globals()))
