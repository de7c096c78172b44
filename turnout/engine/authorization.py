"""Deciding one call against the policy IR: a pure function, no I/O, no clock.

```
decide(table, workload, port, client, route, request)
   resolve(table, workload, port) -> InboundServer (the Server selecting the port, or one
                                     built from the namespace/cluster default policy)
                                   + the Istio WorkloadPolicies that select the workload
   decide_server(server, policies, client, route, request):
     0. probe: a GET of one of the workload's probe paths on a port whose server has no
        routes (and is not opaque) -> allow, by default/probe (Linkerd's probe route)
     1. route: a server with routes and a route name it lacks -> deny (404: no route)
     2. DENY: any matching DENY authorization (Istio; a failed CUSTOM counts) -> deny
     3. AUDIT: matching AUDIT authorizations are noted, nothing else
     4. ALLOW: route-level, then server-level (Linkerd), then Istio ALLOW rules; the first
        match allows. A failed authorization never matches (fail closed). A port with no
        Server that an Istio ALLOW policy selects loses its default-policy authorizations.
     5. nothing matched -> deny, naming the failed authorizations that might have allowed
```

`request` None means a connection-level check (opaque/TCP ports, or before HTTP is known):
HTTP-only attributes (hosts, methods, paths, headers, JWT) then never match in an ALLOW rule
and always match in a DENY rule, as Istio does. `mesh routes explain` and the tests use this;
the proxy cannot import the engine, so it implements the same rules from `docs/policy.md`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from turnout.engine.ir import SourceRef
from turnout.engine.ir_policy import (
    Action,
    Authorization,
    Condition,
    DefaultPolicy,
    ExactIdentity,
    IdentityMatch,
    IdentitySuffix,
    InboundServer,
    Network,
    Operation,
    Peer,
    PeerAuthn,
    PolicyTable,
    PrincipalMatch,
    StringMatch,
    WorkloadPolicy,
    WorkloadSelector,
)

IDENTITY_INFIX = ".serviceaccount.identity."
PROBE = "default/probe"
"""What allows a kubelet probe (Linkerd's default ``probe`` authorization)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    namespace: str
    labels: tuple[tuple[str, str], ...] = ()
    port_names: tuple[tuple[str, int], ...] = ()
    """Container port names -> numbers (a Server may name its port)."""
    probes: tuple[tuple[int, str], ...] = ()
    """(port, path) of the pod's HTTP probes: the kubelet (plaintext, unmeshed) may GET them
    while the port's server has no routes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    identity: str | None
    """The verified mTLS identity (DNS form); None: plaintext, or TLS without one."""
    ip: str
    tls: bool = False
    """The connection is TLS (meshed), whether or not an identity was verified."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    method: str = "GET"
    path: str = "/"
    host: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    """Lower-cased names."""
    principal: str | None = None
    """The JWT's ``<iss>/<sub>`` (after RequestAuthentication); None: no token."""
    claims: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    allowed: bool
    decided_by: str | None
    """The authorization that allowed or denied; None when nothing matched."""
    server: str
    reason: str
    audited: tuple[str, ...] = ()
    """AUDIT authorizations (Istio) that matched; Linkerd's `audit` default allows as
    ``default/audit``."""


# --------------------------------------------------------------------------- defaults


def default_authorizations(
    policy: DefaultPolicy, *, networks: tuple[Network, ...], source: SourceRef
) -> tuple[Authorization, ...]:
    """The authorizations a default policy generates (SECURITY-REFERENCE §2.1)."""
    name = f"default/{policy}"
    peer = {
        "all-unauthenticated": Peer(),
        "all-authenticated": Peer(tls="authenticated"),
        "cluster-unauthenticated": Peer(networks=networks),
        "cluster-authenticated": Peer(tls="authenticated", networks=networks),
        "audit": Peer(),
    }.get(policy)
    if peer is None:  # deny
        return ()
    return (Authorization(name=name, source=source, peers=(peer,)),)


# --------------------------------------------------------------------------- resolution


def selects(selector: WorkloadSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics: every label and every expression holds."""
    if any(labels.get(k) != v for k, v in selector.labels):
        return False
    for req in selector.expressions:
        present = req.key in labels
        value = labels.get(req.key)
        ok = {
            "In": present and value in req.values,
            "NotIn": not present or value not in req.values,
            "Exists": present,
            "DoesNotExist": not present,
        }[req.operator]
        if not ok:
            return False
    return True


def resolve(
    table: PolicyTable, workload: Workload, port: int
) -> tuple[InboundServer, tuple[WorkloadPolicy, ...]]:
    """The server for `port` of `workload` and the Istio policies that select the workload."""
    labels = dict(workload.labels)
    names = dict(workload.port_names)
    server = next(
        (
            s
            for s in table.servers
            if s.namespace == workload.namespace
            and (s.port == port or (isinstance(s.port, str) and names.get(s.port) == port))
            and selects(s.selector, labels)
        ),
        None,
    )
    if server is None:
        server = default_server(table, workload.namespace, port)
    policies = tuple(
        p
        for p in table.workload_policies
        if p.namespace in (None, workload.namespace)
        and (p.selector is None or selects(p.selector, labels))
    )
    return server, policies


def default_server(table: PolicyTable, namespace: str, port: int) -> InboundServer:
    """A port no Server selects: the namespace's default policy, else the cluster's."""
    found = next((d for d in table.namespace_defaults if d.namespace == namespace), None)
    policy = found.policy if found else table.cluster_default
    source = found.source if found else SourceRef(kind="Default", namespace="", name=policy)
    return InboundServer(
        name=f"default/{namespace}/{port}",
        source=source,
        namespace=namespace,
        selector=WorkloadSelector(),
        port=port,
        default_policy=policy,
        configured=False,
        authorizations=default_authorizations(
            policy, networks=table.cluster_networks, source=source
        ),
    )


# --------------------------------------------------------------------------- the decision


def decide(
    table: PolicyTable,
    *,
    workload: Workload,
    port: int,
    client: Client,
    route: str | None = None,
    request: Request | None = None,
) -> Decision:
    server, policies = resolve(table, workload, port)
    if (
        request is not None
        and request.method == "GET"
        and not server.routes
        and not server.opaque
        and (port, request.path.split("?", 1)[0]) in workload.probes
    ):
        return Decision(
            allowed=True,
            decided_by=PROBE,
            server=server.name,
            reason=f"allowed by {PROBE} (a probe path of the pod; {server.name} has no routes)",
        )
    return decide_server(server, policies, client=client, route=route, request=request)


def decide_server(
    server: InboundServer,
    policies: tuple[WorkloadPolicy, ...] = (),
    *,
    client: Client,
    route: str | None = None,
    request: Request | None = None,
) -> Decision:
    """Allow or deny one call to `server` (see the module docstring for the order)."""
    linkerd = server.authorizations
    if route is not None and server.routes:
        found = next((r for r in server.routes if r.name == route), None)
        if found is None:
            return Decision(
                allowed=False,
                decided_by=None,
                server=server.name,
                reason=f"no route {route} on {server.name} (404)",
            )
        linkerd = (*found.authorizations, *linkerd)
    ctx = _Context(server=server, client=client, request=request)
    for policy in policies:
        if policy.action != "DENY":
            continue
        for authz in policy.authorizations:
            if _matches(authz, ctx, "DENY"):
                why = f" ({authz.failed})" if authz.failed else ""
                return Decision(
                    allowed=False,
                    decided_by=authz.name,
                    server=server.name,
                    reason=f"denied by {authz.name}{why}",
                )
    audited = tuple(
        a.name
        for p in policies
        if p.action == "AUDIT"
        for a in p.authorizations
        if _matches(a, ctx, "AUDIT")
    )
    allow_policies = [p for p in policies if p.action == "ALLOW"]
    if allow_policies and not server.configured:
        linkerd = ()  # Istio: once an ALLOW policy selects the workload, only matches allow
    candidates = [*linkerd, *(a for p in allow_policies for a in p.authorizations)]
    failed = [a for a in candidates if a.failed]
    for authz in candidates:
        if not authz.failed and _matches(authz, ctx, "ALLOW"):
            return Decision(
                allowed=True,
                decided_by=authz.name,
                server=server.name,
                reason=f"allowed by {authz.name}",
                audited=audited,
            )
    reason = f"no authorization on {server.name} allows the client"
    if failed:
        reason += "; failed closed: " + "; ".join(f"{a.name}: {a.failed}" for a in failed)
    return Decision(
        allowed=False, decided_by=None, server=server.name, reason=reason, audited=audited
    )


# --------------------------------------------------------------------------- matching


@dataclass(frozen=True, slots=True)
class _Context:
    server: InboundServer
    client: Client
    request: Request | None


def _matches(authz: Authorization, ctx: _Context, action: Action) -> bool:
    """Any peer, any operation, every condition (empty = no constraint)."""
    http_only = action == "DENY"  # what an HTTP-only attribute is worth without a request
    if authz.peers and not any(_peer(p, ctx, http_only) for p in authz.peers):
        return False
    if authz.operations and not any(_operation(o, ctx, http_only) for o in authz.operations):
        return False
    return all(_condition(c, ctx, http_only) for c in authz.conditions)


def string_matches(m: StringMatch, value: str | None) -> bool:
    if value is None:
        return False
    if m.kind == "exact":
        return value == m.value
    if m.kind == "prefix":
        return value.startswith(m.value)
    if m.kind == "suffix":
        return value.endswith(m.value)
    return value != ""


def _any(matches: tuple[StringMatch, ...], value: str | None) -> bool:
    return any(string_matches(m, value) for m in matches)


def split_identity(identity: str) -> tuple[str, str, str] | None:
    """(service account, namespace, trust domain) of a DNS-form identity, else None."""
    head, sep, domain = identity.partition(IDENTITY_INFIX)
    sa, dot, ns = head.partition(".")
    if not sep or not dot or not sa or not ns or "." in ns or not domain:
        return None
    return sa, ns, domain


def principal_of(identity: str | None) -> str | None:
    """Istio's principal ``<domain>/ns/<ns>/sa/<sa>`` of an identity (None: not one)."""
    parts = split_identity(identity) if identity else None
    return f"{parts[2]}/ns/{parts[1]}/sa/{parts[0]}" if parts else None


def identity_matches(m: IdentityMatch, identity: str) -> bool:
    if isinstance(m, ExactIdentity):
        return identity == m.value
    if isinstance(m, IdentitySuffix):
        return identity.endswith(m.suffix)
    if isinstance(m, PrincipalMatch):
        return string_matches(m.match, principal_of(identity))
    parts = split_identity(identity)
    if parts is None:
        return False
    sa, ns, domain = parts
    return (
        ns == m.namespace
        and m.name in (None, sa)
        and (m.trust_domain is None or m.trust_domain == domain)
    )


def in_networks(networks: tuple[Network, ...], ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for net in networks:
        try:
            if addr in ipaddress.ip_network(net.cidr, strict=False) and not any(
                addr in ipaddress.ip_network(e, strict=False) for e in net.excluded
            ):
                return True
        except ValueError:  # validation refuses these; never widen on one that slipped by
            continue
    return False


def _peer(peer: Peer, ctx: _Context, http_only: bool) -> bool:
    client = ctx.client
    identity = client.identity if client.tls else None
    if peer.tls == "tls" and not client.tls:
        return False
    if peer.tls == "authenticated" and identity is None:
        return False
    if peer.identities and not (
        identity is not None and any(identity_matches(m, identity) for m in peer.identities)
    ):
        return False
    if identity is not None and any(identity_matches(m, identity) for m in peer.not_identities):
        return False
    parts = split_identity(identity) if identity else None
    ns = parts[1] if parts else None
    if peer.namespaces and not _any(peer.namespaces, ns):
        return False
    if _any(peer.not_namespaces, ns):
        return False
    if peer.networks and not in_networks(peer.networks, client.ip):
        return False
    if peer.not_networks and in_networks(peer.not_networks, client.ip):
        return False
    if peer.request_principals or peer.not_request_principals:
        if ctx.request is None:
            return http_only
        principal = ctx.request.principal
        if peer.request_principals and not _any(peer.request_principals, principal):
            return False
        if _any(peer.not_request_principals, principal):
            return False
    return True


def _operation(op: Operation, ctx: _Context, http_only: bool) -> bool:
    port = ctx.server.port
    if op.ports and port not in op.ports:
        return False
    if op.not_ports and port in op.not_ports:
        return False
    http = (op.hosts, op.not_hosts, op.methods, op.not_methods, op.paths, op.not_paths)
    if not any(http):
        return True
    req = ctx.request
    if req is None:
        return http_only
    host = req.host.rsplit(":", 1)[0] if req.host.count(":") == 1 else req.host
    for wanted, unwanted, value in (
        (op.hosts, op.not_hosts, host),
        (op.methods, op.not_methods, req.method),
        (op.paths, op.not_paths, req.path.split("?", 1)[0]),
    ):
        if wanted and not _any(wanted, value):
            return False
        if _any(unwanted, value):
            return False
    return True


def _attribute(key: str, ctx: _Context) -> tuple[bool, str | None]:
    """(is it HTTP-only, its value) of a `when` key."""
    client, req = ctx.client, ctx.request
    identity = client.identity if client.tls else None
    if key == "source.namespace":
        parts = split_identity(identity) if identity else None
        return False, parts[1] if parts else None
    if key == "source.principal":
        return False, principal_of(identity)
    if key == "destination.port":
        return False, str(ctx.server.port)
    if req is None:
        return True, None
    if key.startswith("request.headers["):
        name = key.removeprefix("request.headers[").removesuffix("]").lower()
        return True, next((v for k, v in req.headers if k == name), None)
    if key == "request.auth.principal":
        return True, req.principal
    claims = dict(req.claims)
    if key in ("request.auth.audiences", "request.auth.presenter"):
        return True, claims.get("aud" if key.endswith("audiences") else "azp")
    name = key.removeprefix("request.auth.claims").strip("[]").replace("][", ".")
    return True, claims.get(name)


def _condition(cond: Condition, ctx: _Context, http_only: bool) -> bool:
    if cond.key in ("source.ip", "remote.ip"):
        ip = ctx.client.ip
        if cond.key == "remote.ip" and ctx.request is not None:
            forwarded = dict(ctx.request.headers).get("x-forwarded-for")
            ip = forwarded.split(",")[0].strip() if forwarded else ip
        nets = tuple(Network(cidr=v.value) for v in cond.values)
        nots = tuple(Network(cidr=v.value) for v in cond.not_values)
        return (not nets or in_networks(nets, ip)) and not (nots and in_networks(nots, ip))
    needs_http, value = _attribute(cond.key, ctx)
    if needs_http and ctx.request is None:
        return http_only
    if cond.values and not _any(cond.values, value):
        return False
    return not _any(cond.not_values, value)


# --------------------------------------------------------------------------- mTLS modes


def peer_mode(table: PolicyTable, namespace: str, labels: Mapping[str, str], port: int) -> str:
    """The inbound mTLS mode of a workload's port (Istio's PeerAuthentication precedence:
    workload > namespace > mesh, the oldest of a level; a port-level mode first; UNSET
    inherits; nothing: PERMISSIVE). The proxy resolves the same (`proxy/inbound_policy.py`)."""
    levels: list[list[PeerAuthn]] = [[], [], []]
    for pa in table.peer_authentications:
        if pa.namespace == namespace and pa.selector is not None and selects(pa.selector, labels):
            levels[0].append(pa)
        elif pa.namespace == namespace and pa.selector is None:
            levels[1].append(pa)
        elif pa.namespace is None and pa.selector is None:
            levels[2].append(pa)
    chosen = [min(lv, key=lambda p: (p.created or "~", p.name)) if lv else None for lv in levels]
    if chosen[0] is not None:
        for p, mode in chosen[0].port_modes:
            if p == port and mode is not None:
                return mode
    for level in chosen:
        if level is not None and level.mode is not None:
            return level.mode
    return "PERMISSIVE"
