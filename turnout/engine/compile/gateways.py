"""Turnout's Gateways: which listeners are served, and each Gateway's status.

```
Gateway (class ours, or not among the inputs) ──evaluate_gateways──> ListenerState per listener
   protocol not HTTP/HTTPS ─────────────> Accepted=False UnsupportedProtocol
   HTTPS with tls.mode other than Terminate ──> Accepted=False UnsupportedValue
   HTTP and HTTPS on one port ──────────> Conflicted=True ProtocolConflict   (all of them)
   one port, protocol and hostname twice ──> Conflicted=True HostnameConflict (all of them)
   allowedRoutes.kinds ∩ {HTTPRoute, GRPCRoute} ──> supportedKinds; the rest: InvalidRouteKinds
   certificateRefs that do not resolve ──> ResolvedRefs=False InvalidCertificateRef/RefNotPermitted
   HTTPS with no usable certificate ──────> Programmed=False Invalid (handshakes refused)
routes accepted per listener (`Attachments`, filled by table.py) ──gateway_status──> GatewayStatus
```

"The implementation MUST NOT pick one conflicting Listener as the winner. ALL indistinct
Listeners must not be accepted" (GatewaySpec.Listeners, apis/v1/gateway_types.go): a
conflicted listener is not served, and neither is the one it conflicts with. attachedRoutes
"MUST be set for Listeners, even if the Accepted condition of an individual Listener is set to
False" and counts "Routes with the Accepted condition set to True" (ListenerStatus).
Deliberately not here: route attachment (`parents.py`), the served tables (`table.py`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from turnout.engine import ir
from turnout.engine.compile.certificates import listener_tls
from turnout.engine.compile.context import Ctx
from turnout.engine.compile.parents import GW_GROUP, HTTP_PROTOCOLS
from turnout.engine.diagnostics import warning
from turnout.engine.model import Gateway, Loaded
from turnout.engine.model.gateway import Listener

SERVED_KINDS = ("HTTPRoute", "GRPCRoute")
"""Route kinds an HTTP or HTTPS listener of Turnout serves."""

Problem = tuple[str, str]
"""(reason, message) of a condition that is not in its good state."""


@dataclass(slots=True)
class ListenerState:
    """What the compiler made of one `spec.listeners[index]` of a Gateway."""

    index: int
    listener: Listener
    kinds: tuple[ir.RouteGroupKind, ...] = ()
    unaccepted: Problem | None = None
    """Accepted=False: the protocol or a value is not supported."""
    conflict: Problem | None = None
    """Conflicted=True: indistinct from (or incompatible with) another listener on its port."""
    unresolved: list[Problem] = field(default_factory=list)
    """ResolvedRefs=False: route kinds and certificateRefs that do not resolve."""
    tls: ir.ListenerTLS | None = None

    @property
    def served(self) -> bool:
        """Part of the table: accepted and not conflicted."""
        return self.unaccepted is None and self.conflict is None

    @property
    def programmed(self) -> bool:
        """Served and able to answer (an HTTPS listener needs a certificate)."""
        return self.served and (self.tls is None or bool(self.tls.certificates))


@dataclass(slots=True)
class Attachments:
    """Routes accepted through each listener, each counted once per listener."""

    routes: defaultdict[tuple[str, str, str], set[tuple[str, str, str]]] = field(
        default_factory=lambda: defaultdict(set)
    )

    def add(self, gw: Gateway, listener: str, route: ir.SourceRef) -> None:
        key = (gw.namespace, gw.name, listener)
        self.routes[key].add((route.kind, route.namespace, route.name))

    def count(self, gw: Gateway, listener: str) -> int:
        return len(self.routes.get((gw.namespace, gw.name, listener), ()))


def evaluate_gateways(ctx: Ctx) -> dict[tuple[str, str], list[ListenerState]]:
    """Listener states of every Gateway Turnout serves, by (namespace, name), sorted."""
    out: dict[tuple[str, str], list[ListenerState]] = {}
    for key, gw in sorted(ctx.index.gateways.items()):
        ours = ctx.index.gateway_is_ours(gw.obj)
        if ours is False:
            continue
        if ours is None:
            msg = (
                f"GatewayClass {gw.obj.spec.gateway_class_name} not among the inputs; "
                "assuming the Gateway is Turnout's"
            )
            ctx.report(warning("GatewayClassNotFound", msg, gw.field("spec.gatewayClassName")))
        out[key] = _listeners(ctx, gw)
    return out


def _listeners(ctx: Ctx, gw: Loaded[Gateway]) -> list[ListenerState]:
    states = [ListenerState(index=i, listener=li) for i, li in enumerate(gw.obj.spec.listeners)]
    for st in states:
        li = st.listener
        st.kinds, bad_kinds = _kinds(li)
        if bad_kinds:
            msg = f"route kinds not supported on a {li.protocol} listener: {', '.join(bad_kinds)}"
            st.unresolved.append(("InvalidRouteKinds", msg))
        if li.protocol not in HTTP_PROTOCOLS:
            msg = f"protocol {li.protocol} is not supported (Turnout serves HTTP and HTTPS)"
            st.unaccepted = ("UnsupportedProtocol", msg)
        elif li.protocol == "HTTPS" and li.tls is not None and li.tls.mode != "Terminate":
            msg = "an HTTPS listener terminates TLS (tls.mode Terminate); it is left out"
            ctx.report(
                warning("UnsupportedValue", msg, gw.field(f"spec.listeners[{st.index}].tls.mode"))
            )
            st.unaccepted = ("UnsupportedValue", msg)
        elif li.protocol == "HTTPS":
            st.tls, problems = listener_tls(ctx, gw, st.index, li.tls)
            st.unresolved.extend(problems)
    _mark_conflicts(ctx, gw, [st for st in states if st.unaccepted is None])
    return states


def _kinds(li: Listener) -> tuple[tuple[ir.RouteGroupKind, ...], list[str]]:
    """supportedKinds, and the `allowedRoutes.kinds` left out of them ("If kinds are
    specified in Spec that are not supported, they MUST NOT appear in this list")."""
    served = SERVED_KINDS if li.protocol in HTTP_PROTOCOLS else ()
    wanted = [(k.group, k.kind) for k in li.allowed_routes.kinds]
    if not li.allowed_routes.kinds:
        wanted = [(GW_GROUP, k) for k in served]
    kinds: list[ir.RouteGroupKind] = []
    bad: list[str] = []
    for group, kind in dict.fromkeys(wanted):
        if group == GW_GROUP and kind in served:
            kinds.append(ir.RouteGroupKind(group=group, kind=kind))
        else:
            bad.append(f"{group}/{kind}" if group else kind)
    return tuple(kinds), bad


def _mark_conflicts(ctx: Ctx, gw: Loaded[Gateway], states: list[ListenerState]) -> None:
    """Conflicted listeners among the accepted ones: a port is either HTTP or HTTPS, and on
    one port a (protocol, hostname) pair names one listener ("each listener in a set MUST
    have a unique combination of Port, Protocol, and, if supported by the protocol,
    Hostname")."""
    by_port: defaultdict[int, list[ListenerState]] = defaultdict(list)
    for st in states:
        by_port[st.listener.port].append(st)
    for port, group in by_port.items():
        names = ", ".join(st.listener.name for st in group)
        if len({st.listener.protocol for st in group}) > 1:
            msg = (
                f"port {port} has both HTTP and HTTPS listeners ({names}); a port is either, "
                "so none of them is served"
            )
            for st in group:
                _conflict(ctx, gw, st, ("ProtocolConflict", msg), "protocol")
            continue
        by_host: defaultdict[str, list[ListenerState]] = defaultdict(list)
        for st in group:
            by_host[st.listener.hostname or ""].append(st)
        for host, same in by_host.items():
            if len(same) < 2:
                continue
            names = ", ".join(st.listener.name for st in same)
            msg = (
                f"listeners {names} share port {port} and hostname {host or '(any)'}; "
                "none of them is served"
            )
            for st in same:
                _conflict(ctx, gw, st, ("HostnameConflict", msg), "hostname")


def _conflict(ctx: Ctx, gw: Loaded[Gateway], st: ListenerState, problem: Problem, fld: str) -> None:
    st.conflict = problem
    path = f"spec.listeners[{st.index}]"
    if fld == "protocol" or st.listener.hostname is not None:
        path += f".{fld}"
    ctx.report(warning(problem[0], problem[1], gw.field(path)))


def gateway_status(
    gw: Gateway, states: list[ListenerState], attached: Attachments
) -> ir.GatewayStatus:
    gen = gw.generation
    listeners = tuple(_listener_status(gw, st, attached) for st in states)
    invalid = [st.listener.name for st in states if not st.served]
    served = [st.listener.name for st in states if st.served]
    if not invalid:
        accepted = _cond("Accepted", True, "Accepted", "gateway accepted", gen)
    else:
        msg = f"listeners not valid: {', '.join(invalid)}"
        msg += f"; served: {', '.join(served)}" if served else "; no listener is served"
        accepted = _cond("Accepted", bool(served), "ListenersNotValid", msg, gen)
    if any(st.programmed for st in states):
        programmed = _cond("Programmed", True, "Programmed", "gateway programmed", gen)
    else:
        msg = "no listener can be served"
        programmed = _cond("Programmed", False, "Invalid", msg, gen)
    return ir.GatewayStatus(
        gateway=ir.SourceRef(kind="Gateway", namespace=gw.namespace, name=gw.name),
        generation=gen,
        conditions=(accepted, programmed),
        listeners=listeners,
    )


def _listener_status(gw: Gateway, st: ListenerState, attached: Attachments) -> ir.ListenerStatus:
    gen = gw.generation
    if st.unaccepted is not None:
        accepted = _cond("Accepted", False, *st.unaccepted, gen)
    elif st.conflict is not None:
        accepted = _cond("Accepted", False, *st.conflict, gen)
    else:
        accepted = _cond("Accepted", True, "Accepted", "listener accepted", gen)
    if st.programmed:
        programmed = _cond("Programmed", True, "Programmed", "listener programmed", gen)
    else:
        why = st.unaccepted or st.conflict
        msg = why[1] if why else "no usable certificate: every TLS handshake is refused"
        programmed = _cond("Programmed", False, "Invalid", msg, gen)
    if st.unresolved:
        reason = st.unresolved[0][0]
        msg = "; ".join(m for _, m in st.unresolved)
        resolved = _cond("ResolvedRefs", False, reason, msg, gen)
    else:
        resolved = _cond("ResolvedRefs", True, "ResolvedRefs", "all references resolved", gen)
    if st.conflict is not None:
        conflicted = _cond("Conflicted", True, *st.conflict, gen)
    else:
        conflicted = _cond("Conflicted", False, "NoConflicts", "no conflicts", gen)
    return ir.ListenerStatus(
        name=st.listener.name,
        supported_kinds=st.kinds,
        attached_routes=attached.count(gw, st.listener.name),
        conditions=(accepted, programmed, resolved, conflicted),
    )


def _cond(type_: str, ok: bool, reason: str, message: str, gen: int) -> ir.Condition:
    return ir.Condition(
        type=type_,
        status="True" if ok else "False",
        reason=reason,
        message=message,
        observed_generation=gen,
    )
