"""Linkerd's `policy.linkerd.io` kinds -> `InboundServer`s of the policy IR.

```
Server (any version)          -> InboundServer(selector, port, protocol, default_policy)
  server-level authorizations  = ServerAuthorizations selecting it (by name or label selector)
                               + AuthorizationPolicies targeting it
                               + AuthorizationPolicies targeting its Namespace
                               + its accessPolicy's default authorization (last)
  routes                       = HTTPRoutes/GRPCRoutes whose parentRef is the Server, each with
                                 the AuthorizationPolicies targeting that route and its rule
                                 matches (engine.compile.matches, as for routing)
AuthorizationPolicy           -> one ALLOW Authorization with one Peer: the AND of its
                                 MeshTLSAuthentication / ServiceAccount (identity) and its
                                 NetworkAuthentication (networks); a missing authentication
                                 marks it `failed` (fail closed) and warns
Namespace annotation          -> NamespaceDefault (config.linkerd.io/default-inbound-policy)
```

Semantics: SECURITY-REFERENCE §2 (`policy-controller/k8s/index/src/inbound/index.rs`). Pure:
the same snapshot always yields the same servers, in `namespace/name` order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast, get_args

from turnout.engine.authorization import default_authorizations, selects
from turnout.engine.compile.matches import grpc_match, http_match
from turnout.engine.config import DEFAULT_POLICY_ANNOTATION
from turnout.engine.diagnostics import Diagnostic, warning
from turnout.engine.ir import Match, SourceRef
from turnout.engine.ir_policy import (
    Authorization,
    DefaultPolicy,
    ExactIdentity,
    IdentityMatch,
    IdentitySuffix,
    InboundRoute,
    InboundServer,
    LabelOperator,
    LabelRequirement,
    NamespaceDefault,
    Network,
    Peer,
    ServiceAccountIdentity,
    TLSRequirement,
    WorkloadSelector,
)
from turnout.engine.model import GRPCRoute, HTTPRoute, Loaded, Namespace, Resources
from turnout.engine.model.authz import (
    LINKERD_POLICY_GROUP,
    LinkerdAuthorizationPolicy,
    MeshTLSAuthentication,
    NetworkAuthentication,
    ServerAuthorization,
    ServerV1beta1,
)
from turnout.engine.model.authz import Network as ModelNetwork
from turnout.engine.model.base import LabelSelector
from turnout.engine.model.grpcroute import GRPCRouteMatch, GRPCRouteRule
from turnout.engine.model.httproute import HTTPRouteMatch, HTTPRouteRule

ROUTE_GROUPS = ("gateway.networking.k8s.io", LINKERD_POLICY_GROUP)
DEFAULT_POLICIES: tuple[str, ...] = get_args(DefaultPolicy)

Key = tuple[str, str]


@dataclass
class LinkerdIndex:
    """The snapshot's Linkerd objects by (namespace, name)."""

    servers: list[Loaded[ServerV1beta1]] = field(default_factory=list)
    server_authorizations: list[Loaded[ServerAuthorization]] = field(default_factory=list)
    policies: list[Loaded[LinkerdAuthorizationPolicy]] = field(default_factory=list)
    meshtls: dict[Key, MeshTLSAuthentication] = field(default_factory=dict)
    networks: dict[Key, NetworkAuthentication] = field(default_factory=dict)
    routes: list[Loaded[HTTPRoute] | Loaded[GRPCRoute]] = field(default_factory=list)

    @classmethod
    def of(cls, resources: Resources) -> LinkerdIndex:
        def key(o: Loaded[ServerV1beta1] | Loaded[LinkerdAuthorizationPolicy]) -> Key:
            return o.obj.namespace, o.obj.name

        return cls(
            servers=sorted(resources.of(ServerV1beta1), key=key),
            server_authorizations=sorted(
                resources.of(ServerAuthorization), key=lambda o: (o.obj.namespace, o.obj.name)
            ),
            policies=sorted(resources.of(LinkerdAuthorizationPolicy), key=key),
            meshtls={
                (o.obj.namespace, o.obj.name): o.obj for o in resources.of(MeshTLSAuthentication)
            },
            networks={
                (o.obj.namespace, o.obj.name): o.obj for o in resources.of(NetworkAuthentication)
            },
            routes=sorted(
                [*resources.of(HTTPRoute), *resources.of(GRPCRoute)],
                key=lambda o: (o.obj.namespace, o.obj.name, o.obj.kind),
            ),
        )


def selector_from(sel: LabelSelector | None) -> WorkloadSelector:
    if sel is None:
        return WorkloadSelector()
    return WorkloadSelector(
        labels=tuple(sorted(sel.match_labels.items())),
        expressions=tuple(
            LabelRequirement(
                key=e.key,
                operator=cast(LabelOperator, e.operator),
                values=tuple(e.values),
            )
            for e in sel.match_expressions
        ),
    )


def networks_from(networks: Sequence[ModelNetwork] | None) -> tuple[Network, ...]:
    return tuple(Network(cidr=n.cidr, excluded=tuple(n.except_)) for n in networks or ())


def identities_from(texts: Sequence[str]) -> tuple[IdentityMatch, ...] | None:
    """Linkerd identity strings; None when one is ``*`` (any authenticated client)."""
    out: list[IdentityMatch] = []
    for text in texts:
        if text == "*":
            return None
        if text.startswith("*."):
            out.append(IdentitySuffix(suffix=text[1:]))
        else:
            out.append(ExactIdentity(value=text))
    return tuple(out)


def linkerd_servers(
    resources: Resources,
    diagnostics: list[Diagnostic],
    *,
    cluster_networks: tuple[Network, ...],
) -> tuple[InboundServer, ...]:
    """Every Server, with its authorizations and inbound routes."""
    index = LinkerdIndex.of(resources)
    compiled = {
        (p.obj.namespace, p.obj.name): policy_authorization(p, index, diagnostics)
        for p in index.policies
    }
    servers = [
        server_from(s, index, compiled, cluster_networks=cluster_networks) for s in index.servers
    ]
    _report_unused(index, servers, diagnostics)
    return tuple(servers)


def server_from(
    loaded: Loaded[ServerV1beta1],
    index: LinkerdIndex,
    compiled: dict[Key, Authorization],
    *,
    cluster_networks: tuple[Network, ...],
) -> InboundServer:
    srv = loaded.obj
    ns, name = srv.namespace, srv.name
    source = SourceRef(kind="Server", namespace=ns, name=name)
    authz = [
        saz_authorization(s.obj)
        for s in index.server_authorizations
        if s.obj.namespace == ns and _saz_selects(s.obj, srv)
    ]
    for p in index.policies:
        t = p.obj.spec.target_ref
        if p.obj.namespace != ns:
            continue
        if (t.kind == "Server" and t.name == name) or (t.kind == "Namespace" and t.name == ns):
            authz.append(compiled[(ns, p.obj.name)])
    default = default_authorizations(srv.access_policy, networks=cluster_networks, source=source)
    return InboundServer(
        name=f"server/{ns}/{name}",
        source=source,
        namespace=ns,
        selector=selector_from(srv.selector),
        port=srv.spec.port,
        protocol=srv.spec.proxy_protocol,
        default_policy=srv.access_policy,
        authorizations=(*sorted(authz, key=lambda a: a.name), *default),
        routes=tuple(_routes_of(srv, index, compiled)),
    )


def _saz_selects(saz: ServerAuthorization, srv: ServerV1beta1) -> bool:
    target = saz.spec.server
    if target.name is not None:
        return target.name == srv.name
    return target.selector is not None and selects(
        selector_from(target.selector), srv.metadata.labels
    )


def _routes_of(
    srv: ServerV1beta1, index: LinkerdIndex, compiled: dict[Key, Authorization]
) -> list[InboundRoute]:
    out: list[InboundRoute] = []
    for r in index.routes:
        route = r.obj
        if route.namespace != srv.namespace or not any(
            p.kind == "Server"
            and p.group == LINKERD_POLICY_GROUP
            and p.name == srv.name
            and (p.namespace or route.namespace) == srv.namespace
            for p in route.spec.parent_refs
        ):
            continue
        authz = [
            compiled[(route.namespace, p.obj.name)]
            for p in index.policies
            if p.obj.namespace == route.namespace
            and p.obj.spec.target_ref.kind == route.kind
            and p.obj.spec.target_ref.group in ROUTE_GROUPS
            and p.obj.spec.target_ref.name == route.name
        ]
        name = f"{route.kind.lower()}/{route.namespace}/{route.name}"
        matches = route_matches(r, name=name)
        if matches is None:
            continue
        out.append(
            InboundRoute(
                name=name,
                source=SourceRef(kind=route.kind, namespace=route.namespace, name=route.name),
                authorizations=tuple(authz),
                matches=matches,
            )
        )
    return out


def route_matches(
    loaded: Loaded[HTTPRoute] | Loaded[GRPCRoute], *, name: str
) -> tuple[Match, ...] | None:
    """The route's rule matches as the route compiler builds them (``<name>/rule/<i>/match/<k>``;
    a rule without matches matches every request; a GRPCRoute method becomes a path match).
    None when none is valid (a bad regex, which the route compiler reports): the route is left
    out, so its requests are denied rather than every request matching it."""
    out: list[Match] = []
    for i, rule in enumerate(loaded.obj.spec.rules):
        rule_pos = loaded.field(f"spec.rules[{i}]")
        if isinstance(rule, HTTPRouteRule):
            for k, m in enumerate(rule.matches or [HTTPRouteMatch()]):
                got, _ = http_match(
                    m, name=f"{name}/rule/{i}/match/{k}", pos=rule_pos.child(f"matches[{k}]")
                )
                out.extend([got] if got else [])
        elif isinstance(rule, GRPCRouteRule):
            for k, gm in enumerate(rule.matches or [GRPCRouteMatch()]):
                got, _ = grpc_match(
                    gm, name=f"{name}/rule/{i}/match/{k}", pos=rule_pos.child(f"matches[{k}]")
                )
                out.extend([got] if got else [])
    if not out and loaded.obj.spec.rules:
        return None
    return tuple(out)


def saz_authorization(saz: ServerAuthorization) -> Authorization:
    """A ServerAuthorization: one Peer (its networks AND its client kind)."""
    client = saz.spec.client
    networks = networks_from(client.networks)
    tls: TLSRequirement = "any"
    identities: tuple[IdentityMatch, ...] = ()
    if client.mesh_tls is not None:
        mtls = client.mesh_tls
        if mtls.unauthenticated_tls:
            tls = "tls"
        else:
            tls = "authenticated"
            named = identities_from(mtls.identities)
            accounts = tuple(
                ServiceAccountIdentity(namespace=a.namespace or saz.namespace, name=a.name)
                for a in mtls.service_accounts
            )
            identities = () if named is None else (*named, *accounts)
    return Authorization(
        name=f"serverauthorization/{saz.namespace}/{saz.name}",
        source=SourceRef(kind="ServerAuthorization", namespace=saz.namespace, name=saz.name),
        peers=(Peer(tls=tls, identities=identities, networks=networks),),
    )


def policy_authorization(
    loaded: Loaded[LinkerdAuthorizationPolicy], index: LinkerdIndex, diags: list[Diagnostic]
) -> Authorization:
    """An AuthorizationPolicy: every required authentication must hold (one AND-ed Peer)."""
    pol = loaded.obj
    ns = pol.namespace
    tls: TLSRequirement = "any"
    identities: tuple[IdentityMatch, ...] = ()
    networks: tuple[Network, ...] = ()
    missing: list[str] = []
    for i, ref in enumerate(pol.spec.required_authentication_refs):
        key = (ref.namespace or ns, ref.name)
        if ref.kind == "ServiceAccount":
            tls = "authenticated"
            identities = (ServiceAccountIdentity(namespace=key[0], name=ref.name),)
        elif ref.kind == "MeshTLSAuthentication":
            authn = index.meshtls.get(key)
            if authn is None:
                missing.append(f"MeshTLSAuthentication {key[0]}/{key[1]}")
                _missing(loaded, i, missing[-1], diags)
                continue
            tls = "authenticated"
            identities = meshtls_identities(authn)
        elif ref.kind == "NetworkAuthentication":
            net = index.networks.get(key)
            if net is None:
                missing.append(f"NetworkAuthentication {key[0]}/{key[1]}")
                _missing(loaded, i, missing[-1], diags)
                continue
            networks = networks_from(net.spec.networks)
    failed = f"{', '.join(missing)} not found" if missing else None
    return Authorization(
        name=f"authorizationpolicy/{ns}/{pol.name}",
        source=SourceRef(kind="AuthorizationPolicy", namespace=ns, name=pol.name),
        peers=() if failed else (Peer(tls=tls, identities=identities, networks=networks),),
        failed=failed,
    )


def meshtls_identities(authn: MeshTLSAuthentication) -> tuple[IdentityMatch, ...]:
    """Its identities (() = any authenticated client)."""
    if authn.spec.identities is not None:
        return identities_from(authn.spec.identities) or ()
    out: list[IdentityMatch] = []
    for ref in authn.spec.identity_refs or []:
        if ref.kind == "ServiceAccount":
            ns = ref.namespace or authn.namespace
            out.append(ServiceAccountIdentity(namespace=ns, name=ref.name))
        elif ref.name is None:  # every Namespace: any authenticated client
            return ()
        else:
            out.append(ServiceAccountIdentity(namespace=ref.name))
    return tuple(out)


def _missing(
    loaded: Loaded[LinkerdAuthorizationPolicy], i: int, what: str, diags: list[Diagnostic]
) -> None:
    msg = f"{what} not found: the policy authorizes nothing until it exists (fail closed)"
    diags.append(
        warning(
            "AuthenticationNotFound", msg, loaded.field(f"spec.requiredAuthenticationRefs[{i}]")
        )
    )


def namespace_defaults(
    resources: Resources, diagnostics: list[Diagnostic]
) -> tuple[NamespaceDefault, ...]:
    """`config.linkerd.io/default-inbound-policy` of every Namespace that sets it."""
    out: list[NamespaceDefault] = []
    for o in sorted(resources.of(Namespace), key=lambda o: o.obj.name):
        value = o.obj.metadata.annotations.get(DEFAULT_POLICY_ANNOTATION)
        if value is None:
            continue
        if value not in DEFAULT_POLICIES:
            msg = (
                f'Unsupported value: "{value}": supported values: '
                + ", ".join(f'"{p}"' for p in DEFAULT_POLICIES)
                + "; the cluster default applies"
            )
            pos = o.field(f"metadata.annotations[{DEFAULT_POLICY_ANNOTATION}]")
            diagnostics.append(warning("UnsupportedValue", msg, pos))
            continue
        out.append(
            NamespaceDefault(
                namespace=o.obj.name,
                policy=cast(DefaultPolicy, value),
                source=SourceRef(kind="Namespace", namespace="", name=o.obj.name),
            )
        )
    return tuple(out)


def _report_unused(
    index: LinkerdIndex, servers: list[InboundServer], diags: list[Diagnostic]
) -> None:
    """Policies and ServerAuthorizations that reach no Server (they authorize nothing)."""
    used = {a.name for s in servers for a in s.authorizations}
    used |= {a.name for s in servers for r in s.routes for a in r.authorizations}
    for s in index.server_authorizations:
        if f"serverauthorization/{s.obj.namespace}/{s.obj.name}" not in used:
            msg = "selects no Server in its namespace; it authorizes nothing"
            diags.append(warning("ServerNotFound", msg, s.field("spec.server")))
    for p in index.policies:
        t = p.obj.spec.target_ref
        if f"authorizationpolicy/{p.obj.namespace}/{p.obj.name}" not in used:
            msg = f"targetRef {t.kind} {p.obj.namespace}/{t.name} is not a Server (or a route of one) in the snapshot; the policy authorizes nothing"
            diags.append(warning("TargetNotFound", msg, p.field("spec.targetRef")))
