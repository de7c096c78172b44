"""backendRefs (and mirror backendRefs) -> `ServiceTarget` or `InvalidBackend`.

Resolution follows HTTPROUTE-SEMANTICS §6 and §11: only core Services are backends
(anything else is `InvalidKind`); a missing Service or port is `BackendNotFound`; a
cross-namespace reference from a Gateway-attached route needs a ReferenceGrant in the target
namespace (`RefNotPermitted`), while mesh routes need none (GEP-1294). An invalid backend
keeps its weight: its share of requests answers 500.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from turnout.engine import ir
from turnout.engine.compile.context import Ctx
from turnout.engine.compile.where import At, pos_of
from turnout.engine.config import INVALID_BACKEND_STATUS
from turnout.engine.diagnostics import Diagnostic, warning
from turnout.engine.identity.settings import DEFAULT_TRUST_DOMAIN
from turnout.engine.model.base import BackendObjectReference
from turnout.engine.model.core import ObjectReference

GATEWAY_GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRef:
    """The route that holds a reference (for ReferenceGrant `from`)."""

    kind: str
    namespace: str
    name: str


def grant_allows(ctx: Ctx, *, route: RouteRef, to_ns: str, to_kind: str, to_name: str) -> bool:
    """Some ReferenceGrant in `to_ns` lets `route` reference core `to_kind`/`to_name`."""
    for loaded in ctx.index.grants_in(to_ns):
        spec = loaded.obj.spec
        ok_from = any(
            f.group == GATEWAY_GROUP and f.kind == route.kind and f.namespace == route.namespace
            for f in spec.from_
        )
        ok_to = any(
            t.group == "" and t.kind == to_kind and (t.name is None or t.name == to_name)
            for t in spec.to
        )
        if ok_from and ok_to:
            return True
    return False


def pod_identity(ctx: Ctx, ns: str, ref: ObjectReference | None) -> str | None:
    """The identity of the Pod an endpoint names, from its service account (what its proxy
    gets a certificate for, Linkerd's destination rule): None when the Pod is unknown."""
    if ref is None or ref.kind != "Pod" or not ref.name:
        return None
    account = ctx.index.account(ref.namespace or ns, ref.name)
    if account is None:
        return None
    return f"{account}.{ref.namespace or ns}.serviceaccount.identity.{DEFAULT_TRUST_DOMAIN}"


def endpoints_of(
    ctx: Ctx, ns: str, service: str, port_name: str | None, port: int
) -> tuple[tuple[ir.Endpoint, ...], bool]:
    """The endpoints of Service port `port` (named `port_name`) from the EndpointSlices, and
    whether any slice of the Service was among the inputs at all (False: unknown)."""
    slices = ctx.index.slices_of(ns, service)
    if not slices:
        return (), False
    found: set[ir.Endpoint] = set()
    for loaded in slices:
        sl = loaded.obj
        if sl.address_type == "FQDN":
            continue  # not socket addresses (see report_fqdn_slices)
        annotated = sl.metadata.annotations.get(ir.IDENTITY_ANNOTATION) or None
        ports = [p.port for p in sl.ports if p.port is not None and (p.name or None) == port_name]
        if not ports and len(sl.ports) == 1 and sl.ports[0].port is not None:
            ports = [sl.ports[0].port]
        for ep in sl.endpoints:
            identity = annotated or pod_identity(ctx, ns, ep.target_ref)
            ready = ep.conditions.ready is not False
            for addr in ep.addresses:
                for p in ports:
                    found.add(
                        ir.Endpoint(
                            address=addr, port=p, ready=ready, zone=ep.zone, identity=identity
                        )
                    )
    ordered = sorted(found, key=lambda e: (e.zone or "", e.address, e.port))
    return tuple(ordered), True


def report_fqdn_slices(ctx: Ctx) -> None:
    """One `UnsupportedAddressType` warning per EndpointSlice of `addressType: FQDN`.

    Its addresses are host names, not socket addresses: EDS carries IPs only (Envoy and
    grpcio's xDS client both refuse a host name there), so the slice's endpoints are not
    served, as kube-proxy, Linkerd and Istio leave FQDN slices alone. The Service keeps its
    other (IPv4/IPv6) slices; with none, it has no endpoints (503). A Service meant to
    reach a host name is an `ExternalName` Service or a backend outside the mesh."""
    for slices in ctx.index.slices.values():
        for loaded in slices:
            sl = loaded.obj
            if sl.address_type != "FQDN":
                continue
            msg = (
                f"EndpointSlice {sl.namespace}/{sl.name} has addressType FQDN: its "
                f"{sum(len(e.addresses) for e in sl.endpoints)} host name address(es) are "
                "not served (EDS carries IP addresses only)"
            )
            ctx.report(warning("UnsupportedAddressType", msg, loaded.pos.child("addressType")))


class ReadyCheck(NamedTuple):
    """A backend that gets traffic: `report_not_ready` warns when its Service port has no
    ready endpoint. Recorded while compiling, checked in a pass of its own, so endpoint
    changes re-run the checks and never the route compile. A NamedTuple, as `SourcePos`:
    one per backend of every route, and tuples are the cheapest immutable object."""

    target: ir.ServiceTarget
    weight: int
    total: int
    pos: At


def check_ready(ctx: Ctx, target: ir.ServiceTarget, *, weight: int, total: int, pos: At) -> None:
    """Record the check (only backends that get traffic: a backend of weight 0, Flagger's
    idle canary scaled to zero, gets no requests, so it is not reported)."""
    if weight > 0:
        ctx.ready.append(ReadyCheck(target, weight, total, pos))


ReadyKey = tuple[str, str, int]


def ready_endpoints(ctx: Ctx, key: ReadyKey) -> tuple[bool, int]:
    """(any endpoint of Service port `key` is ready, how many endpoints it has)."""
    ns, service, port = key
    svc = ctx.index.service(ns, service)
    port_name = None
    if svc is not None:
        port_name = next((p.name for p in svc.obj.spec.ports if p.port == port), None)
    endpoints, _ = endpoints_of(ctx, ns, service, port_name, port)
    return any(e.ready for e in endpoints), len(endpoints)


def not_ready_warnings(ready: tuple[bool, int], checks: Iterable[ReadyCheck]) -> list[Diagnostic]:
    """`NoReadyEndpoints` for each of `checks` (all on one Service port, whose readiness
    is `ready`)."""
    ok, count = ready
    if ok:
        return []
    seen = f"{count} not ready" if count else "none"
    out: list[Diagnostic] = []
    for c in checks:
        t = c.target
        out.append(
            warning(
                "NoReadyEndpoints",
                f"Service {t.namespace}/{t.service} port {t.port} has no ready "
                f"endpoint ({seen}): the requests this backend gets (weight {c.weight} of "
                f"{c.total}) are answered 503 until its pods are ready",
                pos_of(c.pos),
            )
        )
    return out


def report_not_ready(ctx: Ctx, checks: Iterable[ReadyCheck]) -> None:
    """Warn (`NoReadyEndpoints`) for each check whose Service port has no ready endpoint;
    only where endpoints are tracked (the inputs hold EndpointSlices, as a cluster's do): a
    Service without any slice then has none."""
    if not ctx.index.slices:
        return
    by_port: dict[ReadyKey, list[ReadyCheck]] = {}
    for c in checks:
        by_port.setdefault((c.target.namespace, c.target.service, c.target.port), []).append(c)
    for key, group in by_port.items():
        ctx.diags.extend(not_ready_warnings(ready_endpoints(ctx, key), group))


def resolve_backend(
    ctx: Ctx,
    ref: BackendObjectReference,
    *,
    route: RouteRef,
    needs_grant: bool,
    grpc: bool,
    pos: At,
) -> ir.ServiceTarget | ir.InvalidBackend:
    """Resolve one reference; problems become warnings at `pos` and an `InvalidBackend`."""
    ns = ref.namespace or route.namespace
    name, port = ref.name, ref.port
    if ref.group != "" or ref.kind != "Service":
        group = ref.group or "core"
        return _invalid(
            ctx,
            pos,
            f"{ref.kind} {ns}/{name}",
            "InvalidKind",
            f"unsupported backend kind {ref.kind} (group {group})",
        )
    if (
        needs_grant
        and ns != route.namespace
        and not grant_allows(ctx, route=route, to_ns=ns, to_kind="Service", to_name=name)
    ):
        return _invalid(
            ctx,
            pos,
            f"{ns}/{name}",
            "RefNotPermitted",
            f"{route.kind} {route.namespace}/{route.name} may not reference Service "
            f"{ns}/{name}: no ReferenceGrant in namespace {ns} allows it",
        )
    if port is None:
        return _invalid(
            ctx, pos, f"{ns}/{name}", "BackendNotFound", f"Service {ns}/{name}: port is required"
        )
    svc = ctx.index.service(ns, name)
    if svc is None:
        return _invalid(
            ctx,
            pos,
            f"{ns}/{name}",
            "BackendNotFound",
            f"Service {ns}/{name} not found among the inputs",
        )
    ports = svc.obj.spec.ports
    if ports and all(p.port != port for p in ports):
        return _invalid(
            ctx,
            pos,
            f"{ns}/{name}",
            "BackendNotFound",
            f"Service {ns}/{name} has no port {port}",
        )
    cluster = ctx.use_cluster(namespace=ns, service=name, port=port, grpc=grpc)
    return ir.ServiceTarget(cluster=cluster, namespace=ns, service=name, port=port)


def _invalid(ctx: Ctx, pos: At, written: str, reason: str, message: str) -> ir.InvalidBackend:
    """Report `message` at `pos` as a warning; the backend `written` answers 500."""
    ctx.report(warning(reason, message, pos_of(pos)))
    return ir.InvalidBackend(
        status=INVALID_BACKEND_STATUS, reason=reason, message=message, ref=written
    )


ir.store_by_slot(RouteRef)  # built per route: the IR's faster __init__
