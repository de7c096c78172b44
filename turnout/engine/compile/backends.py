"""backendRefs (and mirror backendRefs) -> `ServiceTarget` or `InvalidBackend`.

Resolution follows HTTPROUTE-SEMANTICS §6 and §11: only core Services are backends
(anything else is `InvalidKind`); a missing Service or port is `BackendNotFound`; a
cross-namespace reference from a Gateway-attached route needs a ReferenceGrant in the target
namespace (`RefNotPermitted`), while mesh routes need none (GEP-1294). An invalid backend
keeps its weight: its share of requests answers 500.
"""

from __future__ import annotations

from dataclasses import dataclass

from turnout.engine import ir
from turnout.engine.compile.context import Ctx
from turnout.engine.config import INVALID_BACKEND_STATUS
from turnout.engine.diagnostics import SourcePos, warning
from turnout.engine.model.base import BackendObjectReference

GATEWAY_GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRef:
    """The route that holds a reference (for ReferenceGrant `from`)."""

    kind: str
    namespace: str
    name: str


def grant_allows(ctx: Ctx, *, route: RouteRef, to_ns: str, to_kind: str, to_name: str) -> bool:
    """Some ReferenceGrant in `to_ns` lets `route` reference core `to_kind`/`to_name`."""
    for loaded in ctx.index.grants.get(to_ns, ()):
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


def resolve_backend(
    ctx: Ctx,
    ref: BackendObjectReference,
    *,
    route: RouteRef,
    needs_grant: bool,
    grpc: bool,
    pos: SourcePos,
) -> ir.ServiceTarget | ir.InvalidBackend:
    """Resolve one reference; problems become warnings at `pos` and an `InvalidBackend`."""
    ns = ref.namespace or route.namespace
    written = f"{ns}/{ref.name}"
    if ref.group != "" or ref.kind != "Service":
        written = f"{ref.kind} {written}"

    def invalid(reason: str, message: str) -> ir.InvalidBackend:
        ctx.report(warning(reason, message, pos))
        return ir.InvalidBackend(
            status=INVALID_BACKEND_STATUS, reason=reason, message=message, ref=written
        )

    if ref.group != "" or ref.kind != "Service":
        group = ref.group or "core"
        return invalid("InvalidKind", f"unsupported backend kind {ref.kind} (group {group})")
    if (
        needs_grant
        and ns != route.namespace
        and not grant_allows(ctx, route=route, to_ns=ns, to_kind="Service", to_name=ref.name)
    ):
        return invalid(
            "RefNotPermitted",
            f"{route.kind} {route.namespace}/{route.name} may not reference Service "
            f"{ns}/{ref.name}: no ReferenceGrant in namespace {ns} allows it",
        )
    if ref.port is None:
        return invalid("BackendNotFound", f"Service {ns}/{ref.name}: port is required")
    svc = ctx.index.services.get((ns, ref.name))
    if svc is None:
        return invalid("BackendNotFound", f"Service {ns}/{ref.name} not found among the inputs")
    if svc.obj.spec.ports and all(p.port != ref.port for p in svc.obj.spec.ports):
        return invalid("BackendNotFound", f"Service {ns}/{ref.name} has no port {ref.port}")
    cluster = ctx.use_cluster(namespace=ns, service=ref.name, port=ref.port, grpc=grpc)
    return ir.ServiceTarget(cluster=cluster, namespace=ns, service=ref.name, port=ref.port)
