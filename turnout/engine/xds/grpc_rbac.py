"""The policy IR of one workload port -> gRFC A41 RBAC HTTP filters for a grpcio xDS server.

```
rbac_filters(table, namespace, labels, port)
   authorization.resolve -> InboundServer + the Istio WorkloadPolicies selecting the workload
   ├── DENY  filter  (only when something can deny): "no route" (a Server with routes and
   │                 a path none of them matches) + every Istio DENY rule (a failed one too)
   └── ALLOW filter  route-level (their route's paths AND their rule), server-level (unless an
                     Istio ALLOW policy selects a port no Server configures), Istio ALLOW rules;
                     failed ones are left out; no policy left = deny everything
Authorization(peers, operations, conditions) -> Policy{permissions: [AND(any op, port and
   path conditions)], principals: [AND(any peer, the other conditions)]}
```

This is Istio's shape for proxyless servers: a DENY filter before the ALLOW one, the router
after both. Identities become what gRPC checks (A41: URI SANs first): the SPIFFE URI
``spiffe://<domain>/ns/<ns>/sa/<sa>`` of an identity, exact, prefix or RE2 regex. gRPC cannot
see what a proxy sees after HTTP parsing in its own terms: a JWT (`request_principals`,
``request.auth.*``) never matches in an ALLOW rule and always matches in a DENY rule (fail
closed both ways; `docs/jwt.md` has the interceptor that checks tokens in the server process).
A `:method` is always POST and `:authority` is the channel's target, as A41 says; a
condition on a ``grpc-*`` header or ``:scheme`` (which gRPC would NACK) fails closed too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from envoy.config.core.v3 import address_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.rbac.v3.rbac_pb2 import Permission, Principal
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3 import path_pb2, regex_pb2, string_pb2
from google.protobuf import wrappers_pb2

from turnout.engine import ir
from turnout.engine.authorization import Workload, resolve, split_identity
from turnout.engine.ir_policy import (
    Authorization,
    Condition,
    ExactIdentity,
    IdentityMatch,
    IdentitySuffix,
    InboundServer,
    Network,
    Operation,
    Peer,
    PolicyTable,
    PrincipalMatch,
    ServiceAccountIdentity,
    StringMatch,
)
from turnout.engine.xds.wire import pack, re2_escape

RBAC_FILTER = "envoy.filters.http.rbac"
SPIFFE = "spiffe://"
_SEGMENT = "[^/]+"


# --------------------------------------------------------------------------- strings


def string_matcher(m: StringMatch) -> string_pb2.StringMatcher:
    if m.kind == "exact":
        return string_pb2.StringMatcher(exact=m.value)
    if m.kind == "prefix":
        return string_pb2.StringMatcher(prefix=m.value)
    if m.kind == "suffix":
        return string_pb2.StringMatcher(suffix=m.value)
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=".+"))


def _regex(pattern: str) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=pattern))


def _segment_pattern(m: StringMatch) -> str:
    """An RE2 pattern for one path segment (a namespace) that `m` matches."""
    v = re2_escape(m.value)
    return {"exact": v, "prefix": v + "[^/]*", "suffix": "[^/]*" + v}.get(m.kind, _SEGMENT)


def spiffe_uri(identity: str) -> str | None:
    """``spiffe://<domain>/ns/<ns>/sa/<sa>`` of a DNS-form identity (None: not one)."""
    parts = split_identity(identity)
    return f"{SPIFFE}{parts[2]}/ns/{parts[1]}/sa/{parts[0]}" if parts else None


def identity_uri_matcher(m: IdentityMatch) -> string_pb2.StringMatcher:
    """What the client's URI SAN must match for `m` (an impossible match if it cannot)."""
    if isinstance(m, ExactIdentity):
        uri = spiffe_uri(m.value)
        return string_pb2.StringMatcher(exact=uri) if uri else _regex("$^")
    if isinstance(m, ServiceAccountIdentity):
        domain = re2_escape(m.trust_domain) if m.trust_domain else _SEGMENT
        sa = re2_escape(m.name) if m.name else _SEGMENT
        if m.trust_domain and m.name:
            return string_pb2.StringMatcher(
                exact=f"{SPIFFE}{m.trust_domain}/ns/{m.namespace}/sa/{m.name}"
            )
        return _regex(f"spiffe://{domain}/ns/{re2_escape(m.namespace)}/sa/{sa}")
    if isinstance(m, PrincipalMatch):
        match = m.match
        if match.kind == "exact":
            return string_pb2.StringMatcher(exact=SPIFFE + match.value)
        if match.kind == "prefix":
            return string_pb2.StringMatcher(prefix=SPIFFE + match.value)
        if match.kind == "suffix":
            return string_pb2.StringMatcher(suffix=match.value)
        return string_pb2.StringMatcher(prefix=SPIFFE)
    return _suffix_matcher(m)


def _suffix_matcher(m: IdentitySuffix) -> string_pb2.StringMatcher:
    """Linkerd's ``*.<ns>.serviceaccount.identity.<domain>`` (or a shorter suffix) as a URI
    pattern: ``<sa>.<ns>.serviceaccount.identity.<domain>`` ends with the suffix."""
    infix = ".serviceaccount.identity."
    suffix = m.suffix
    head, sep, domain = suffix.partition(infix)
    if sep and head.startswith(".") and "." not in head[1:] and head[1:]:
        return string_pb2.StringMatcher(prefix=f"{SPIFFE}{domain}/ns/{head[1:]}/sa/")
    if sep and head == "":
        return _regex(f"spiffe://{re2_escape(domain)}/ns/{_SEGMENT}/sa/{_SEGMENT}")
    if suffix.startswith(".") and infix.strip(".") not in suffix:
        # a suffix of the trust domain only: any service account of a domain ending so
        domain_pattern = f"([^/]*\\.)?{re2_escape(suffix[1:])}"
        return _regex(f"spiffe://{domain_pattern}/ns/{_SEGMENT}/sa/{_SEGMENT}")
    return _regex("$^")  # a suffix no SPIFFE form can end with: never matches


# --------------------------------------------------------------------------- principals


def _or_ids(ids: list[Principal]) -> Principal:
    return ids[0] if len(ids) == 1 else Principal(or_ids=Principal.Set(ids=ids))


def _and_ids(ids: list[Principal]) -> Principal:
    if not ids:
        return Principal(any=True)
    return ids[0] if len(ids) == 1 else Principal(and_ids=Principal.Set(ids=ids))


def _not_id(p: Principal) -> Principal:
    return Principal(not_id=p)


def _authenticated(matcher: string_pb2.StringMatcher | None) -> Principal:
    if matcher is None:
        return Principal(authenticated=Principal.Authenticated())
    return Principal(authenticated=Principal.Authenticated(principal_name=matcher))


def cidr_range(cidr: str) -> address_pb2.CidrRange:
    prefix, _, length = cidr.partition("/")
    bits = int(length) if length else (128 if ":" in prefix else 32)
    return address_pb2.CidrRange(
        address_prefix=prefix, prefix_len=wrappers_pb2.UInt32Value(value=bits)
    )


def network_principal(net: Network) -> Principal:
    inside = Principal(direct_remote_ip=cidr_range(net.cidr))
    if not net.excluded:
        return inside
    excluded = _or_ids([Principal(direct_remote_ip=cidr_range(e)) for e in net.excluded])
    return _and_ids([inside, _not_id(excluded)])


_NEVER = _not_id(Principal(any=True))


def peer_principal(peer: Peer, *, deny: bool) -> Principal:
    """One Peer as a Principal (every part ANDed); `deny` picks the fail-closed value of
    what gRPC cannot see (JWT principals)."""
    ids: list[Principal] = []
    if peer.tls == "tls":
        ids.append(_authenticated(None))
    if peer.tls == "authenticated" and not peer.identities:
        ids.append(_authenticated(string_pb2.StringMatcher(prefix=SPIFFE)))
    if peer.identities:
        ids.append(_or_ids([_authenticated(identity_uri_matcher(m)) for m in peer.identities]))
    if peer.not_identities:
        matched = _or_ids([_authenticated(identity_uri_matcher(m)) for m in peer.not_identities])
        ids.append(_not_id(matched))
    if peer.namespaces:
        ids.append(_or_ids([_namespace(m) for m in peer.namespaces]))
    if peer.not_namespaces:
        ids.append(_not_id(_or_ids([_namespace(m) for m in peer.not_namespaces])))
    if peer.networks:
        ids.append(_or_ids([network_principal(n) for n in peer.networks]))
    if peer.not_networks:
        ids.append(_not_id(_or_ids([network_principal(n) for n in peer.not_networks])))
    if peer.request_principals or peer.not_request_principals:
        ids.append(Principal(any=True) if deny else _NEVER)
    return _and_ids(ids)


def _namespace(m: StringMatch) -> Principal:
    pattern = f"spiffe://{_SEGMENT}/ns/{_segment_pattern(m)}/sa/{_SEGMENT}"
    return _authenticated(_regex(pattern))


# --------------------------------------------------------------------------- permissions


def _or_rules(rules: list[Permission]) -> Permission:
    return rules[0] if len(rules) == 1 else Permission(or_rules=Permission.Set(rules=rules))


def _and_rules(rules: list[Permission]) -> Permission:
    if not rules:
        return Permission(any=True)
    return rules[0] if len(rules) == 1 else Permission(and_rules=Permission.Set(rules=rules))


def _header(name: str, m: StringMatch) -> Permission:
    return Permission(header=rc.HeaderMatcher(name=name, string_match=string_matcher(m)))


def _path(matcher: string_pb2.StringMatcher) -> Permission:
    return Permission(url_path=path_pb2.PathMatcher(path=matcher))


PermissionOf = Callable[[StringMatch], Permission]


def _header_permission(name: str) -> PermissionOf:
    def to_rule(m: StringMatch) -> Permission:
        return _header(name, m)

    return to_rule


def _path_permission(m: StringMatch) -> Permission:
    return _path(string_matcher(m))


def operation_permission(op: Operation) -> Permission:
    rules: list[Permission] = []
    parts: tuple[tuple[tuple[StringMatch, ...], tuple[StringMatch, ...], PermissionOf], ...] = (
        (op.hosts, op.not_hosts, _header_permission(":authority")),
        (op.methods, op.not_methods, _header_permission(":method")),
        (op.paths, op.not_paths, _path_permission),
    )
    for wanted, unwanted, to_rule in parts:
        if wanted:
            rules.append(_or_rules([to_rule(m) for m in wanted]))
        if unwanted:
            rules.append(Permission(not_rule=_or_rules([to_rule(m) for m in unwanted])))
    if op.ports:
        rules.append(_or_rules([Permission(destination_port=p) for p in op.ports]))
    if op.not_ports:
        ports = _or_rules([Permission(destination_port=p) for p in op.not_ports])
        rules.append(Permission(not_rule=ports))
    return _and_rules(rules)


def route_permission(matches: tuple[ir.Match, ...]) -> Permission:
    """Requests a route's matches select, by path (gRPC calls are always POST; header and
    query matches of the route are not part of selecting it here)."""
    if not matches:
        return Permission(any=True)
    rules = []
    for m in matches:
        path = m.path
        if isinstance(path, ir.ExactPath):
            matcher = string_pb2.StringMatcher(exact=path.value)
        elif isinstance(path, ir.PrefixPath):
            matcher = string_pb2.StringMatcher(prefix=path.value)
        else:
            matcher = _regex(path.pattern)
        rules.append(_path(matcher))
    return _or_rules(rules)


# --------------------------------------------------------------------------- conditions


def _principal_part(wanted: list[Principal], unwanted: list[Principal]) -> Principal:
    parts = [_or_ids(wanted)] if wanted else []
    if unwanted:
        parts.append(_not_id(_or_ids(unwanted)))
    return _and_ids(parts)


def _condition_parts(cond: Condition, *, deny: bool) -> tuple[Principal | None, Permission | None]:
    """A `when` condition as a principal part or a permission part."""
    key = cond.key
    if key in ("source.ip", "remote.ip"):
        kind = "direct_remote_ip" if key == "source.ip" else "remote_ip"
        wanted = [Principal(**{kind: cidr_range(v.value)}) for v in cond.values]
        unwanted = [Principal(**{kind: cidr_range(v.value)}) for v in cond.not_values]
        return _principal_part(wanted, unwanted), None
    if key == "destination.port":
        rules = []
        if cond.values:
            rules.append(
                _or_rules([Permission(destination_port=int(v.value)) for v in cond.values])
            )
        if cond.not_values:
            ports = _or_rules([Permission(destination_port=int(v.value)) for v in cond.not_values])
            rules.append(Permission(not_rule=ports))
        return None, _and_rules(rules)
    to_id: Callable[[StringMatch], Principal]
    if key == "source.principal":
        to_id = _principal_value
    elif key == "source.namespace":
        to_id = _namespace
    elif key.startswith("request.headers["):
        name = key.removeprefix("request.headers[").removesuffix("]").lower()
        if name.startswith("grpc-") or name == ":scheme":  # A41: such a matcher is a NACK
            return (Principal(any=True) if deny else _NEVER), None
        to_id = _header_principal(name)
    else:  # request.auth.*: a JWT gRPC never sees
        return (Principal(any=True) if deny else _NEVER), None
    return _principal_part(
        [to_id(v) for v in cond.values], [to_id(v) for v in cond.not_values]
    ), None


def _header_principal(name: str) -> Callable[[StringMatch], Principal]:
    def to_id(m: StringMatch) -> Principal:
        return Principal(header=rc.HeaderMatcher(name=name, string_match=string_matcher(m)))

    return to_id


def _principal_value(m: StringMatch) -> Principal:
    return _authenticated(identity_uri_matcher(PrincipalMatch(match=m)))


# --------------------------------------------------------------------------- policies


def authorization_policy(
    authz: Authorization, *, deny: bool, within: Permission | None = None
) -> rbac_pb2.Policy:
    """Any peer AND any operation AND every condition; `within` narrows the permission (a
    route's paths)."""
    principals: list[Principal] = []
    permissions: list[Permission] = [] if within is None else [within]
    if authz.peers:
        principals.append(_or_ids([peer_principal(p, deny=deny) for p in authz.peers]))
    if authz.operations:
        permissions.append(_or_rules([operation_permission(o) for o in authz.operations]))
    for cond in authz.conditions:
        principal, permission = _condition_parts(cond, deny=deny)
        if principal is not None:
            principals.append(principal)
        if permission is not None:
            permissions.append(permission)
    return rbac_pb2.Policy(permissions=[_and_rules(permissions)], principals=[_and_ids(principals)])


def allow_policies(
    server: InboundServer, istio_allow: Iterable[Authorization], *, istio_selected: bool
) -> dict[str, rbac_pb2.Policy]:
    out: dict[str, rbac_pb2.Policy] = {}
    for route in server.routes:
        within = route_permission(route.matches)
        for authz in route.authorizations:
            if not authz.failed:
                out[f"{route.name}:{authz.name}"] = authorization_policy(
                    authz, deny=False, within=within
                )
    if server.configured or not istio_selected:
        for authz in server.authorizations:
            if not authz.failed:
                out[authz.name] = authorization_policy(authz, deny=False)
    for authz in istio_allow:
        if not authz.failed:
            out[authz.name] = authorization_policy(authz, deny=False)
    return out


def rbac_filters(
    table: PolicyTable, *, namespace: str, labels: Mapping[str, str], port: int
) -> list[hcm_pb2.HttpFilter]:
    """The RBAC filters (DENY first when there is one, then ALLOW) for `port` of the workload
    in `namespace` with `labels`; the router goes after them."""
    workload = Workload(namespace=namespace, labels=tuple(sorted(labels.items())))
    server, policies = resolve(table, workload, port)
    deny: dict[str, rbac_pb2.Policy] = {}
    if server.routes:
        routes = _or_rules([route_permission(r.matches) for r in server.routes])
        deny[f"{server.name}:no-route"] = rbac_pb2.Policy(
            permissions=[Permission(not_rule=routes)], principals=[Principal(any=True)]
        )
    for policy in policies:
        if policy.action == "DENY":
            for authz in policy.authorizations:
                deny[authz.name] = authorization_policy(authz, deny=True)
    istio_allow = [a for p in policies if p.action == "ALLOW" for a in p.authorizations]
    selected = any(p.action == "ALLOW" for p in policies)
    allow = allow_policies(server, istio_allow, istio_selected=selected)
    filters = []
    if deny:
        filters.append(_filter(f"{RBAC_FILTER}.deny", rbac_pb2.RBAC.Action.DENY, deny))
    filters.append(_filter(RBAC_FILTER, rbac_pb2.RBAC.Action.ALLOW, allow))
    return filters


def _filter(
    name: str, action: rbac_pb2.RBAC.Action.ValueType, policies: dict[str, rbac_pb2.Policy]
) -> hcm_pb2.HttpFilter:
    config = rbac_filter_pb2.RBAC(rules=rbac_pb2.RBAC(action=action, policies=policies))
    return hcm_pb2.HttpFilter(name=name, typed_config=pack(config))
