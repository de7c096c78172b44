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
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from turnout.cli.errors import ViaError
from turnout.engine import ir
from turnout.engine.compile.table import service_authority
from turnout.engine.diagnostics import Diagnostic
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

_VIA = re.compile(r"^(service|gateway)/([^/]+)/([^/:]+):(\d+)$")


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


def parse_via(text: str, *, from_namespace: str | None = None) -> Via:
    """``service/NS/NAME:PORT`` or ``gateway/NS/NAME:PORT``."""
    m = _VIA.match(text)
    if m is None:
        raise ViaError(f"--via must be service/NS/NAME:PORT or gateway/NS/NAME:PORT, got {text!r}")
    kind: Literal["Service", "Gateway"] = "Service" if m.group(1) == "service" else "Gateway"
    return Via(
        kind=kind,
        namespace=m.group(2),
        name=m.group(3),
        port=int(m.group(4)),
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
        outcomes = tuple(self._backend(decision, b, info) for b in action.backends)
        statuses = tuple(sorted({b.status for b in outcomes if b.weight > 0}))
        return RequestOutcome(
            via=via,
            explanation=explanation,
            decision=decision,
            status=statuses[0] if len(statuses) == 1 else None,
            statuses=statuses,
            backends=outcomes,
        )

    def _backend(self, decision: Decision, backend: Backend, info: RequestInfo) -> BackendOutcome:
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
