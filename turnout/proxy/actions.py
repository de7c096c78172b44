"""What a matched route tells the proxy to do: the `Decision` and its parts.

```
Decision
 ├── route: RouteRef(name, rule, source)          None when nothing matched (404)
 ├── action: Forward | Redirect | DirectResponse
 │     Forward.backends: Backend(cluster, name, weight, invalid, header mutations,
 │                               host/path rewrite, redirect: its share answers it)
 │     Forward.pick(r)   cumulative weights, r in [0, total)
 ├── request_headers / response_headers: HeaderMutation     route level (backend level on Backend)
 ├── host_rewrite / path_rewrite, mirrors
 └── request_timeout_ms, per_try_timeout_ms, retry, fault, cors
```

Every `Decision` is built once per table update (routes.py) and returned as is by `decide()`,
so the per-request path allocates nothing for it; so are the proxy's own answers it may give
(`InvalidBackend.answer`, `DirectResponse.answer`, `Fault.abort`: `answers.Answer`). All of it is frozen, slotted data with int
durations (`*_ms`) and per-million fractions, no floats. This module does no matching and no
I/O; the functions that apply a decision to a request live in `filters.py`.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_right
from dataclasses import dataclass, field

from turnout.proxy.answers import Answer
from turnout.proxy.h2_call import GRPC_CODES
from turnout.proxy.mutations import NO_MUTATION, HeaderMutation, PathRewrite

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRef:
    """Which route matched, with the IR names from the route metadata."""

    name: str
    """xDS route name = IR `Match.name`, e.g. ``httproute/shop/web/rule/0/match/1``."""
    rule: str
    """IR `Rule.name`, e.g. ``httproute/shop/web/rule/0``."""
    source: str
    """``KIND/NS/NAME`` of the route object."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidBackend:
    """An unresolved backendRef: its share of traffic answers `status`."""

    status: int
    reason: str
    """Gateway API ResolvedRefs reason (BackendNotFound, RefNotPermitted ...)."""
    message: str
    ref: str = ""
    """The backendRef as written (``NS/NAME``); "" when the control plane did not say."""
    response: DirectResponse = field(init=False, repr=False, compare=False)
    """Derived: how the share is answered, `status` with ``l5d-proxy-error: invalid
    backend`` and the reason in the body."""
    answer: Answer = field(init=False, repr=False, compare=False)
    """Derived: `response.answer`."""

    def __post_init__(self) -> None:
        detail = f"{self.reason}: {self.message}" if self.message else self.reason
        response = DirectResponse(status=self.status, body=detail, cause="invalid backend")
        object.__setattr__(self, "response", response)
        object.__setattr__(self, "answer", response.answer)


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    """One weighted backend of a forwarding route."""

    cluster: str
    """Cluster name ``NS/NAME:PORT``; ``turnout/invalid`` for invalid backends."""
    name: str
    """IR `WeightedBackend.name`, e.g. ``httproute/shop/web/rule/0/backend/1``."""
    weight: int
    invalid: InvalidBackend | None = None
    """None = a real backend; otherwise answer `invalid.status` instead of forwarding."""
    request_headers: HeaderMutation = NO_MUTATION
    """Backend-level request header filter, applied after the route's."""
    response_headers: HeaderMutation = NO_MUTATION
    """Backend-level response header filter, applied after the route's."""
    host_rewrite: str | None = None
    """Backend-level host rewrite; wins over the route's; None = none."""
    path_rewrite: PathRewrite | None = None
    """Backend-level path rewrite; wins over the route's; None = none."""
    redirect: Redirect | None = None
    """Backend-level redirect: this backend's share is answered with it; None = forward."""
    abort: DirectResponse | None = None
    """A backend-level filter that must not be skipped and cannot be applied (an unresolved
    ExtensionRef: its ClusterWeight's 100% fault abort): the share answers it; None = none."""
    rewrites: bool = field(init=False, repr=False, compare=False)
    """Derived: a request filter changes requests sent to this backend."""
    local: DirectResponse | Redirect | None = field(init=False, repr=False, compare=False)
    """Derived: what answers this backend's share instead of an upstream: the invalid
    backend's response, else `abort`, else `redirect`; None = forward."""
    filters_response: bool = field(init=False, repr=False, compare=False)
    """Derived: a response header filter applies."""
    dst: tuple[str, str, int] = field(init=False, repr=False, compare=False)
    """Derived from `cluster`: (namespace, service, port), the metrics' ``dst_*`` labels."""

    def __post_init__(self) -> None:
        # worked out once per table, so the request path tests one flag
        rewrites = (
            bool(self.request_headers)
            or self.host_rewrite is not None
            or self.path_rewrite is not None
        )
        object.__setattr__(self, "rewrites", rewrites)
        local: DirectResponse | Redirect | None = self.redirect
        if self.invalid is not None or self.abort is not None:
            local = self.invalid.response if self.invalid is not None else self.abort
        object.__setattr__(self, "local", local)
        object.__setattr__(self, "filters_response", bool(self.response_headers))
        ns, _, rest = self.cluster.partition("/")
        svc, _, port = rest.partition(":")
        object.__setattr__(self, "dst", (ns, svc, int(port) if port.isdigit() else 0))


@dataclass(frozen=True, slots=True, kw_only=True)
class Forward:
    """Forward to one of `backends`, chosen by weight."""

    backends: tuple[Backend, ...]
    cumulative: tuple[int, ...]
    """Running sums of the weights; the last is `total`."""
    total: int
    """Sum of the weights, > 0."""
    clusters: frozenset[str] = field(init=False, repr=False, compare=False)
    """Derived: the backends' clusters (`Call.begin_plain` asks whether one is HTTP/2)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "clusters", frozenset(b.cluster for b in self.backends))

    @classmethod
    def of(cls, backends: tuple[Backend, ...]) -> Forward:
        running = 0
        sums = []
        for b in backends:
            running += b.weight
            sums.append(running)
        return cls(backends=backends, cumulative=tuple(sums), total=running)

    def pick(self, r: int) -> Backend:
        """The backend owning ticket `r`, 0 <= r < total; zero weights own no ticket."""
        if not 0 <= r < self.total:
            raise ValueError(f"r must be in [0, {self.total}), got {r}")
        return self.backends[bisect_right(self.cumulative, r)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Redirect:
    """Answer with a redirect; see `filters.redirect_location`."""

    status: int
    """301, 302, 303, 307 or 308."""
    scheme: str | None = None
    """None = the request's scheme."""
    host: str | None = None
    """None = the request's host without its port."""
    port: int | None = None
    """None = no port in Location (xDS ``port_redirect: 0``)."""
    path: PathRewrite | None = None
    """None = the request path unchanged."""
    strip_query: bool = False
    """False = keep the request's query string (the common behaviour, §7.2)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectResponse:
    """Answer `status` without calling a backend. In docs/xds.md every direct response is
    one of the proxy's own answers (an unusable rule or filter, no route), so it carries
    ``l5d-proxy-error`` (`answers.py`)."""

    status: int
    body: str = ""
    """The detail: an ErrorResponse's message; "" for a rule without a usable backend."""
    cause: str = field(default="", compare=False)
    """The ``l5d-proxy-error`` value; "": ``no backends`` when `body` is empty, else
    ``invalid filter`` (what the control plane sends a direct response for)."""
    answer: Answer = field(init=False, repr=False, compare=False)
    """Derived: status, headers and body, built once per table."""

    def __post_init__(self) -> None:
        cause = self.cause or ("invalid filter" if self.body else "no backends")
        object.__setattr__(self, "answer", Answer(self.status, cause, detail=self.body))


Action = Forward | Redirect | DirectResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class Mirror:
    """Send a copy of the request to `cluster` with probability `per_million` / 1e6."""

    cluster: str
    per_million: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    attempts: int
    """Retries after the first try (GEP-1731 `attempts`), >= 1."""
    retry_on: frozenset[str]
    """Envoy `retry_on` tokens, e.g. connect-failure, reset, retriable-status-codes."""
    codes: frozenset[int]
    """Statuses retried when `retry_on` holds ``retriable-status-codes``."""
    backoff_base_ms: int
    """Minimum wait before a retry; the proxy grows it exponentially with jitter."""
    backoff_max_ms: int
    """Cap of the wait."""
    grpc_codes: frozenset[int] = field(init=False, repr=False, compare=False)
    """Derived: the gRPC status codes `retry_on` names (``unavailable``, ``internal``...),
    retried on a trailers-only gRPC response (`h2_call.GRPC_CODES`)."""

    def __post_init__(self) -> None:
        codes = frozenset(GRPC_CODES[n] for n in self.retry_on if n in GRPC_CODES)
        object.__setattr__(self, "grpc_codes", codes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """Per-route fault injection (the `HTTPFault` per-filter config)."""

    delay_ms: int = 0
    delay_per_million: int = 0
    """Probability of the delay in millionths; 0 = never."""
    abort_http_status: int | None = None
    abort_grpc_status: int | None = None
    """At most one of the two abort statuses is set; both None = no abort."""
    abort_per_million: int = 0
    abort: Answer | None = field(init=False, repr=False, compare=False)
    """Derived: the answer of an abort (``l5d-proxy-error: fault injected``); None: none."""

    def __post_init__(self) -> None:
        abort = None
        if self.abort_grpc_status is not None:
            abort = Answer(200, "fault injected", grpc_status=self.abort_grpc_status)
        elif self.abort_per_million:
            abort = Answer(self.abort_http_status or 500, "fault injected")
        object.__setattr__(self, "abort", abort)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cors:
    """CORS policy of a route (Gateway API §7.6), origins compiled to full-match regexes."""

    allow_origins: tuple[re.Pattern[str], ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_s: int | None = None
    """None = header not sent."""
    allow_credentials: bool = False
    any_origin: bool = field(init=False, repr=False, compare=False)
    """Derived: allowOrigins has `*` (a pattern matching everything)."""
    methods_value: str | None = field(init=False, repr=False, compare=False)
    """Access-Control-Allow-Methods of a preflight; None: echo the request's
    Access-Control-Request-Method (a `*` with credentials: the spec forbids sending `*`)."""
    headers_value: str | None = field(init=False, repr=False, compare=False)
    """Access-Control-Allow-Headers; None: echo Access-Control-Request-Headers (likewise)."""
    expose_value: str = field(init=False, repr=False, compare=False)
    """Access-Control-Expose-Headers ("": none); with credentials, never `*`."""

    def __post_init__(self) -> None:
        # joined once per table, so the request path only copies them
        creds = self.allow_credentials
        object.__setattr__(self, "any_origin", any(p.pattern == ".*" for p in self.allow_origins))
        for name, values in (
            ("methods_value", self.allow_methods),
            ("headers_value", self.allow_headers),
        ):
            object.__setattr__(self, name, None if creds and "*" in values else ", ".join(values))
        exposed = [h for h in self.expose_headers if not (creds and h == "*")]
        object.__setattr__(self, "expose_value", ", ".join(exposed))


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Everything the proxy needs to serve a request that reached one route."""

    route: RouteRef | None
    """None = nothing matched (the action is then a 404 `DirectResponse`)."""
    action: Action
    request_headers: HeaderMutation = NO_MUTATION
    response_headers: HeaderMutation = NO_MUTATION
    host_rewrite: str | None = None
    """Host sent upstream; None = unchanged (a backend's own rewrite wins)."""
    path_rewrite: PathRewrite | None = None
    """None = path unchanged."""
    mirrors: tuple[Mirror, ...] = ()
    request_timeout_ms: int | None = None
    """Deadline of the whole exchange including retries; None = no deadline."""
    per_try_timeout_ms: int | None = None
    """Deadline of each upstream try; None = none."""
    retry: RetryPolicy | None = None
    """None = no retries."""
    fault: Fault | None = None
    cors: Cors | None = None
    rewrites: bool = field(init=False, repr=False, compare=False)
    """Derived: a route-level request filter (headers, host, path) changes the request."""
    filters_response: bool = field(init=False, repr=False, compare=False)
    """Derived: a route-level response header filter applies."""
    plain: bool = field(init=False, repr=False, compare=False)
    """Derived: forwarded as it came to any of its backends, no fault, CORS, mirror, retry
    or filter on the way (`Call.begin_plain`: the request path's short cut)."""

    def __post_init__(self) -> None:
        # worked out once per table, so the request path tests one flag
        rewrites = (
            bool(self.request_headers)
            or self.host_rewrite is not None
            or self.path_rewrite is not None
        )
        object.__setattr__(self, "rewrites", rewrites)
        object.__setattr__(self, "filters_response", bool(self.response_headers))
        action = self.action
        plain = (
            type(action) is Forward
            and not rewrites
            and not self.filters_response
            and not self.mirrors
            and self.retry is None
            and self.fault is None
            and self.cors is None
            and all(
                b.local is None and not b.rewrites and not b.filters_response
                for b in action.backends
            )
        )
        object.__setattr__(self, "plain", plain)
