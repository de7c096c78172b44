"""One request through the offline mesh: the same path live traffic takes, in-process.

```
manifests --compile_files--> RouteTable --translate(client ns)--> xDS --from_xds--> RuntimeTable
request ---------------------------------------------------------------> decide() / explain()
decision --apply_request_filters / apply_response_filters / redirect_location--> outcome
```

`OfflineMesh` builds one runtime table per client namespace on demand (consumer routes make
views differ) and answers `send(via, request)` with a `RequestOutcome`: the matched route,
the client's status, and for every backend with a non-zero weight the request as that
backend sees it. Offline, a Service without EndpointSlices is assumed to answer 200; one
whose EndpointSlices list no ready endpoint answers 503.

A via names the parent: `parse_via_ref` reads ``--via`` (the grammar is the contract format's,
`engine.model.contract.parse_via_text`), `resolve_via` finds it among the table's parents and
the manifests' Service and Gateway listener ports, defaulting a port that is the only one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from turnout.cli.errors import ViaError
from turnout.engine import ir
from turnout.engine.compile.table import service_authority
from turnout.engine.diagnostics import Diagnostic
from turnout.engine.model import Gateway, Resources, Service
from turnout.engine.model.contract import ViaRef, parse_via_text
from turnout.engine.pipeline import compile_files
from turnout.engine.xds import translate
from turnout.proxy import (
    Backend,
    Decision,
    DirectResponse,
    Explanation,
    Forward,
    Redirect,
    RequestInfo,
    RuntimeTable,
    UpstreamRequest,
    apply_request_filters,
    apply_response_filters,
    redirect_location,
)

ASSUMED_BACKEND_STATUS = 200
"""What a backend answers offline (no real app behind it)."""

NO_ENDPOINTS_STATUS = 503
"""A valid Service with no ready endpoints (Gateway API: SHOULD answer 503)."""

VIA_SHOWN = 8
"""How many parents a "no such parent" message lists before it says how many there are."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Via:
    kind: Literal["Service", "Gateway"]
    namespace: str
    name: str
    port: int
    from_namespace: str | None = None

    @property
    def listener(self) -> str:
        if self.kind == "Service":
            return service_authority(self.namespace, self.name, self.port)
        return f"gateway/{self.namespace}/{self.name}:{self.port}"

    @property
    def parent(self) -> str:
        return f"{self.kind.lower()}/{self.namespace}/{self.name}:{self.port}"


def parse_via_ref(text: str, *, namespace: str | None = None) -> ViaRef:
    """``--via`` (see `parse_via_text`); `namespace` is ``-n`` (None: not given)."""
    try:
        return parse_via_text(text, namespace=namespace)
    except ValueError as exc:
        raise ViaError(f"--via: {exc}") from exc


def parse_via(text: str, *, from_namespace: str | None = None) -> Via:
    """A via with its port (``service/NS/NAME:PORT``), for callers without a table to pick
    one from; `resolve_via` is the general path."""
    ref = parse_via_ref(text)
    if ref.port is None:
        raise ViaError(f"--via: name the port ({ref.shown}:PORT), got {text!r}")
    return Via(
        kind=ref.kind,
        namespace=ref.namespace,
        name=ref.name,
        port=ref.port,
        from_namespace=from_namespace,
    )


def parent_names(table: ir.RouteTable, resources: Resources | None = None) -> list[str]:
    """Every parent a via may name: the table's, plus (with the manifests' objects) every
    Service port and Gateway listener port, HTTP or not: a Gateway whose only listener is TLS
    is in the manifests, and a request through it finds no HTTP route (404)."""
    names = {p.name for p in table.parents}
    for o in resources.objects if resources is not None else ():
        obj, ns = o.obj, o.obj.metadata.namespace
        if isinstance(obj, Service):
            names.update(f"service/{ns}/{obj.name}:{p.port}" for p in obj.spec.ports)
        elif isinstance(obj, Gateway):
            names.update(f"gateway/{ns}/{obj.name}:{li.port}" for li in obj.spec.listeners)
    return sorted(names)


def resolve_via(
    ref: ViaRef,
    table: ir.RouteTable,
    *,
    resources: Resources | None = None,
    from_namespace: str | None = None,
) -> Via:
    """The parent `ref` names (`parent_names`): its port defaults when the Service has one
    port (a Gateway one listener port); ViaError when there is no such parent, or more than
    one port to choose from."""
    known = parent_names(table, resources)
    prefix = f"{ref.shown}:"
    ports = sorted(int(n.removeprefix(prefix)) for n in known if n.startswith(prefix))
    port = ref.port
    if port is None and len(ports) == 1:
        port = ports[0]
    elif port is None and ports:
        listed = ", ".join(map(str, ports))
        raise ViaError(f"{ref.shown} has ports {listed}: name one ({ref.shown}:PORT)")
    if port is None or port not in ports:
        shown = ref.shown if port is None else f"{ref.shown}:{port}"
        same = [n for n in known if n.startswith(f"{ref.kind.lower()}/")]
        listed = ", ".join(same[:VIA_SHOWN]) or "none"
        if len(same) > VIA_SHOWN:
            listed += f", ... ({len(same)} in all)"
        raise ViaError(f"no parent {shown} in the manifests ({ref.kind.lower()}s: {listed})")
    return Via(
        kind=ref.kind,
        namespace=ref.namespace,
        name=ref.name,
        port=port,
        from_namespace=from_namespace,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()

    def info(self) -> tuple[RequestInfo, str]:
        """(RequestInfo, scheme)."""
        parts = urlsplit(self.url)
        if not parts.scheme or not parts.netloc:
            raise ValueError(f"url must be absolute (http://HOST/PATH), got {self.url!r}")
        info = RequestInfo(
            method=self.method.upper(),
            authority=parts.netloc,
            path=parts.path or "/",
            query=parts.query,
            headers=self.headers,
        )
        return info, parts.scheme


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendOutcome:
    backend: Backend
    service: str | None
    """``NS/NAME`` of the Service; None for an invalid backend."""
    ref: str
    """The backendRef as written (``NS/NAME``), for valid and invalid backends alike."""
    weight: int
    status: int
    upstream: UpstreamRequest | None
    """The request as the backend sees it; None when it never reaches a backend."""
    response_headers: tuple[tuple[str, str], ...]
    note: str = ""
    redirect: str | None = None
    """Location when this backend's own RequestRedirect answers its share; else None."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestOutcome:
    via: Via
    explanation: Explanation
    decision: Decision
    status: int | None
    """The client's status when it does not depend on the backend picked; else None."""
    statuses: tuple[int, ...]
    """Every status the client can get (one per non-zero backend, or one)."""
    redirect: str | None = None
    backends: tuple[BackendOutcome, ...] = ()
    """Every backend of the matched rule, in order (zero weights included)."""
    response_headers: tuple[tuple[str, str], ...] = ()
    """Headers the filters set on a response when no backend is involved."""

    @property
    def live_backends(self) -> tuple[BackendOutcome, ...]:
        return tuple(b for b in self.backends if b.weight > 0)


def runtime_table(table: ir.RouteTable, *, client_namespace: str | None) -> RuntimeTable:
    """The runtime table a proxy in `client_namespace` builds from this IR table's xDS."""
    res = translate(table, client_namespace=client_namespace)
    return RuntimeTable.from_xds(
        res.listeners,
        res.route_configs,
        clusters=res.clusters,
        load_assignments=res.load_assignments,
    )


def offline_runtime(
    files: Sequence[str], *, namespace: str
) -> tuple[RuntimeTable, list[Diagnostic]]:
    """Compile manifests and build the runtime table a proxy in `namespace` would get."""
    compiled = compile_files(files)
    table = runtime_table(compiled.result.table, client_namespace=namespace)
    return table, list(compiled.diagnostics)


@dataclass(slots=True)
class OfflineMesh:
    table: ir.RouteTable
    _runtimes: dict[str | None, RuntimeTable] = field(default_factory=dict)

    def runtime(self, client_namespace: str | None) -> RuntimeTable:
        rt = self._runtimes.get(client_namespace)
        if rt is None:
            rt = self._runtimes[client_namespace] = runtime_table(
                self.table, client_namespace=client_namespace
            )
        return rt

    def send(self, via: Via, request: Request) -> RequestOutcome:
        info, scheme = request.info()
        rt = self.runtime(via.from_namespace)
        explanation = rt.explain(info, listener=via.listener)
        decision = explanation.winner
        action = decision.action
        if isinstance(action, Redirect | DirectResponse):
            location = (
                redirect_location(decision, info, scheme) if isinstance(action, Redirect) else None
            )
            return RequestOutcome(
                via=via,
                explanation=explanation,
                decision=decision,
                status=action.status,
                statuses=(action.status,),
                redirect=location,
                response_headers=apply_response_filters(decision, None, action.status, ()),
            )
        assert isinstance(action, Forward)
        outcomes = tuple(self._backend(decision, b, info, scheme) for b in action.backends)
        statuses = tuple(sorted({b.status for b in outcomes if b.weight > 0}))
        locations = {b.redirect for b in outcomes if b.weight > 0}
        return RequestOutcome(
            via=via,
            explanation=explanation,
            decision=decision,
            status=statuses[0] if len(statuses) == 1 else None,
            statuses=statuses,
            redirect=locations.pop() if len(locations) == 1 else None,
            backends=outcomes,
        )

    def _backend(
        self, decision: Decision, backend: Backend, info: RequestInfo, scheme: str
    ) -> BackendOutcome:
        fault = decision.fault
        if backend.invalid is not None:
            status = backend.invalid.status
            headers = apply_response_filters(decision, backend, status, ())
            return BackendOutcome(
                backend=backend,
                service=None,
                ref=backend.invalid.ref or backend.name,
                weight=backend.weight,
                status=status,
                upstream=None,
                response_headers=headers,
                note=f"{backend.invalid.reason}: {backend.invalid.message}",
            )
        cluster = self.table.cluster(backend.cluster)
        service = f"{cluster.namespace}/{cluster.service}" if cluster else backend.cluster
        local = backend.local  # a filter that cannot be applied, or the backend's redirect
        if local is not None:
            location = (
                redirect_location(decision, info, scheme, backend) if backend.redirect else None
            )
            why = "a backend filter cannot be applied"
            return BackendOutcome(
                backend=backend,
                service=service,
                ref=service,
                weight=backend.weight,
                status=local.status,
                upstream=None,
                response_headers=apply_response_filters(decision, backend, local.status, ()),
                note=f"redirected to {location}" if location else f"answered by the proxy: {why}",
                redirect=location,
            )
        status, note = ASSUMED_BACKEND_STATUS, "assumed to answer 200 (offline)"
        if cluster is not None and cluster.endpoints_known:
            if any(e.ready for e in cluster.endpoints):
                note = "answers with the backend's status"
            else:
                status, note = NO_ENDPOINTS_STATUS, "no ready endpoints"
        if fault is not None and fault.abort_per_million >= 1_000_000:
            status = fault.abort_http_status or 200
            note = "aborted by fault injection"
        upstream = apply_request_filters(decision, info, backend)
        headers = apply_response_filters(decision, backend, status, ())
        return BackendOutcome(
            backend=backend,
            service=service,
            ref=service,
            weight=backend.weight,
            status=status,
            upstream=upstream,
            response_headers=headers,
            note=note,
        )
