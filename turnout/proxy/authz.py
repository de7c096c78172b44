"""Inbound authorization: the policy of one server port, compiled once per policy update,
then one check per request (HTTP) or per connection (opaque ports, and HTTP ports whose
rules read nothing of the request).

```
policy resources (docs/policy.md "Served over xDS") ─ inbound_policy.resolve ─► the port's
  server + Istio policies ─ PortPolicy.build ─► compiled rules:
     DENY rules, AUDIT rules, ALLOW candidates (route's, server's, Istio's), in decision order
     exact-identity ALLOW rules also indexed by identity (1,000 ServerAuthorizations: one
     dict lookup, not 1,000 tests)
check(caller, request | None, route) ─► Verdict(allowed, authz labels, reason)
```

The rules are the engine's (`docs/policy.md` "The decision"): DENY first, then the first
matching ALLOW among the route's and the server's authorizations and the Istio ALLOW rules;
a failed authorization never allows, a failed DENY still denies; a port with no Server that
an Istio ALLOW policy selects loses its default authorization; nothing matched denies.
Without a request (an opaque port), HTTP-only attributes never match in ALLOW rules and
always match in DENY rules. The proxy cannot import the engine: this is the same contract
implemented for the request path (compiled matchers, an identity index), and
`tests/contracts/test_authz_contract.py` holds both to the same answers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

IDENTITY_INFIX = ".serviceaccount.identity."

Data = Mapping[str, Any]
StrPred = Callable[[str | None], bool]
IpNet = ipaddress.IPv4Network | ipaddress.IPv6Network


# --------------------------------------------------------------------------- the caller


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as the connection says; built once per connection."""

    ip: str
    tls: bool = False
    identity: str | None = None
    """The verified client identity (DNS form); None: plaintext, or TLS without one."""
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    namespace: str | None = None
    principal: str | None = None
    """Istio's ``<domain>/ns/<ns>/sa/<sa>``."""
    account: str | None = None
    """``<ns>/<sa>``."""

    @classmethod
    def of(cls, ip: str, *, tls: bool, identity: str | None) -> Caller:
        identity = (identity or None) if tls else None
        parts = split_identity(identity) if identity else None
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
            address = ipaddress.ip_address(ip)
        except ValueError:
            address = None
        return cls(
            ip=ip,
            tls=tls,
            identity=identity,
            address=address,
            namespace=parts[1] if parts else None,
            principal=f"{parts[2]}/ns/{parts[1]}/sa/{parts[0]}" if parts else None,
            account=f"{parts[1]}/{parts[0]}" if parts else None,
        )


@dataclass(frozen=True, slots=True)
class Req:
    """The HTTP attributes a rule may read."""

    method: str
    path: str
    host: str
    headers: Mapping[str, str]
    """Lower-cased names, the first value of each."""
    principal: str | None = None
    """The JWT's ``<iss>/<sub>``."""
    claims: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    """Flattened claims (nested keys joined with ``.``): strings, or a list claim's strings
    (a match on any one of them holds, as Istio's)."""


def split_identity(identity: str) -> tuple[str, str, str] | None:
    head, sep, domain = identity.partition(IDENTITY_INFIX)
    sa, dot, ns = head.partition(".")
    if not sep or not dot or not sa or not ns or "." in ns or not domain:
        return None
    return sa, ns, domain


# --------------------------------------------------------------------------- matchers


def str_pred(matches: Sequence[Data]) -> StrPred | None:
    """Istio string matches (any of) as one predicate; None when there are none."""
    if not matches:
        return None
    exact = frozenset(m.get("value", "") for m in matches if m.get("kind") == "exact")
    prefixes = tuple(m.get("value", "") for m in matches if m.get("kind") == "prefix")
    suffixes = tuple(m.get("value", "") for m in matches if m.get("kind") == "suffix")
    present = any(m.get("kind") == "present" for m in matches)

    def pred(value: str | None) -> bool:
        if value is None:
            return False
        return (
            value in exact
            or (present and value != "")
            or value.startswith(prefixes)
            or value.endswith(suffixes)
        )

    return pred


def identity_pred(matches: Sequence[Data]) -> Callable[[Caller], bool] | None:
    if not matches:
        return None
    exact = frozenset(m["value"] for m in matches if m.get("type") == "ExactIdentity")
    suffixes = tuple(m["suffix"] for m in matches if m.get("type") == "IdentitySuffix")
    accounts = tuple(
        (m["namespace"], m.get("name"), m.get("trust_domain"))
        for m in matches
        if m.get("type") == "ServiceAccountIdentity"
    )
    principal = str_pred([m["match"] for m in matches if m.get("type") == "PrincipalMatch"])

    def pred(c: Caller) -> bool:
        ident = c.identity
        if ident is None:
            return False
        if ident in exact or (suffixes and ident.endswith(suffixes)):
            return True
        if accounts:
            parts = split_identity(ident)
            if parts is not None:
                sa, ns, domain = parts
                for a_ns, a_name, a_domain in accounts:
                    if a_ns == ns and a_name in (None, sa) and a_domain in (None, domain):
                        return True
        return principal is not None and principal(c.principal)

    return pred


def networks_of(data: Sequence[Data]) -> tuple[tuple[IpNet, tuple[IpNet, ...]], ...]:
    out = []
    for n in data:
        try:
            net = ipaddress.ip_network(n["cidr"], strict=False)
            excluded = tuple(ipaddress.ip_network(e, strict=False) for e in n.get("excluded", ()))
        except ValueError:
            continue  # validation refuses these; never widen on one that slipped by
        out.append((net, excluded))
    return tuple(out)


def in_networks(nets: tuple[tuple[IpNet, tuple[IpNet, ...]], ...], c: Caller) -> bool:
    addr = c.address
    if addr is None:
        return False
    return any(addr in net and not any(addr in e for e in ex) for net, ex in nets)


class Peer:
    """A compiled `Peer`: every part that is set must hold."""

    __slots__ = (
        "identities",
        "namespaces",
        "networks",
        "not_identities",
        "not_namespaces",
        "not_networks",
        "not_principals",
        "principals",
        "tls",
    )

    def __init__(self, d: Data) -> None:
        self.tls: str = d.get("tls", "any")
        self.identities = identity_pred(d.get("identities", ()))
        self.not_identities = identity_pred(d.get("not_identities", ()))
        self.namespaces = str_pred(d.get("namespaces", ()))
        self.not_namespaces = str_pred(d.get("not_namespaces", ()))
        self.networks = networks_of(d.get("networks", ()))
        self.not_networks = networks_of(d.get("not_networks", ()))
        self.principals = str_pred(d.get("request_principals", ()))
        self.not_principals = str_pred(d.get("not_request_principals", ()))

    @property
    def http(self) -> bool:
        return self.principals is not None or self.not_principals is not None

    @property
    def unconditional(self) -> bool:
        """Any client at all matches."""
        return self.tls == "any" and not any(getattr(self, s) for s in self.__slots__ if s != "tls")

    def __call__(self, c: Caller, req: Req | None, http_only: bool) -> bool:
        if self.tls == "tls" and not c.tls:
            return False
        if self.tls == "authenticated" and c.identity is None:
            return False
        if self.identities is not None and not self.identities(c):
            return False
        if self.not_identities is not None and self.not_identities(c):
            return False
        if self.namespaces is not None and not self.namespaces(c.namespace):
            return False
        if self.not_namespaces is not None and self.not_namespaces(c.namespace):
            return False
        if self.networks and not in_networks(self.networks, c):
            return False
        if self.not_networks and in_networks(self.not_networks, c):
            return False
        if self.http:
            if req is None:
                return http_only
            if self.principals is not None and not self.principals(req.principal):
                return False
            if self.not_principals is not None and self.not_principals(req.principal):
                return False
        return True


class Operation:
    """A compiled Istio `to.operation`."""

    __slots__ = ("fields", "not_ports", "ports")

    def __init__(self, d: Data) -> None:
        self.ports = frozenset(int(p) for p in d.get("ports", ()))
        self.not_ports = frozenset(int(p) for p in d.get("not_ports", ()))
        self.fields = tuple(
            (attr, str_pred(d.get(f, ())), str_pred(d.get(f"not_{f}", ())))
            for attr, f in (("host", "hosts"), ("method", "methods"), ("path", "paths"))
            if d.get(f) or d.get(f"not_{f}")
        )

    def __call__(self, port: int, req: Req | None, http_only: bool) -> bool:
        if self.ports and port not in self.ports:
            return False
        if port in self.not_ports:
            return False
        if not self.fields:
            return True
        if req is None:
            return http_only
        for attr, wanted, unwanted in self.fields:
            value = _host(req.host) if attr == "host" else getattr(req, attr)
            if wanted is not None and not wanted(value):
                return False
            if unwanted is not None and unwanted(value):
                return False
        return True


def _host(host: str) -> str:
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Condition:
    """A compiled Istio `when` entry."""

    __slots__ = ("key", "nets", "not_nets", "not_values", "values")

    def __init__(self, d: Data) -> None:
        self.key: str = d["key"]
        values, not_values = d.get("values", ()), d.get("not_values", ())
        self.values = str_pred(values)
        self.not_values = str_pred(not_values)
        Nets = tuple[tuple[IpNet, tuple[IpNet, ...]], ...]
        self.nets: Nets = ()
        self.not_nets: Nets = ()
        if self.key in ("source.ip", "remote.ip"):
            self.nets = networks_of([{"cidr": v.get("value", "")} for v in values])
            self.not_nets = networks_of([{"cidr": v.get("value", "")} for v in not_values])

    @property
    def http(self) -> bool:
        return self.key.startswith("request.") or self.key == "remote.ip"

    def __call__(self, c: Caller, port: int, req: Req | None, http_only: bool) -> bool:
        if self.key in ("source.ip", "remote.ip"):
            if self.key == "remote.ip" and req is not None and "x-forwarded-for" in req.headers:
                first = req.headers["x-forwarded-for"].split(",")[0].strip()
                c = Caller.of(first, tls=False, identity=None)
            ok = not self.nets or in_networks(self.nets, c)
            return ok and not (self.not_nets and in_networks(self.not_nets, c))
        value: str | None
        if self.key == "source.namespace":
            value = c.namespace
        elif self.key == "source.principal":
            value = c.principal
        elif self.key == "destination.port":
            value = str(port)
        elif req is None:
            return http_only
        else:
            found = _request_attribute(self.key, req)
            if isinstance(found, tuple):
                ok = self.values is None or any(self.values(v) for v in found)
                return ok and not (
                    self.not_values is not None and any(self.not_values(v) for v in found)
                )
            value = found
        if self.values is not None and not self.values(value):
            return False
        return not (self.not_values is not None and self.not_values(value))


def _request_attribute(key: str, req: Req) -> str | tuple[str, ...] | None:
    if key.startswith("request.headers["):
        return req.headers.get(key.removeprefix("request.headers[").removesuffix("]").lower())
    if key == "request.auth.principal":
        return req.principal
    if key.startswith("request.auth.") and not req.claims:
        return None
    if key == "request.auth.audiences":
        return req.claims.get("aud")
    if key == "request.auth.presenter":
        return req.claims.get("azp")
    return req.claims.get(key.removeprefix("request.auth.claims").strip("[]").replace("][", "."))


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthzLabels:
    """Linkerd's ``authz_group``, ``authz_kind``, ``authz_name`` of an authorization."""

    group: str
    kind: str
    name: str


def authz_labels(d: Data) -> AuthzLabels:
    name = d["name"]
    if name.startswith("default/"):
        return AuthzLabels(group="", kind="default", name=name.removeprefix("default/"))
    source = d.get("source", {})
    kind = str(source.get("kind", "")).lower()
    group = "security.istio.io" if name.startswith("istio/") else "policy.linkerd.io"
    return AuthzLabels(group=group, kind=kind, name=str(source.get("name", name)))


class Rule:
    """One compiled authorization."""

    __slots__ = (
        "action",
        "conditions",
        "exact_identity",
        "failed",
        "http",
        "keys",
        "labels",
        "name",
        "operations",
        "peers",
    )

    def __init__(self, d: Data) -> None:
        self.name: str = d["name"]
        self.action: str = d.get("action", "ALLOW")
        self.failed: str | None = d.get("failed")
        self.peers = tuple(Peer(p) for p in d.get("peers", ()))
        self.operations = tuple(Operation(o) for o in d.get("operations", ()))
        self.conditions = tuple(Condition(c) for c in d.get("conditions", ()))
        self.labels = authz_labels(d)
        self.http = (
            any(p.http for p in self.peers)
            or any(o.fields for o in self.operations)
            or any(c.http for c in self.conditions)
        )
        self.keys = _identity_keys(d)
        """("id", identity) / ("pr", principal) / ("sa", "ns/sa") values one of which the
        client must have;
        None: any client may match."""
        self.exact_identity = _only_exact_identity(d)
        """The one identity this rule allows and nothing else asked of the client (the
        shape of a ServerAuthorization / MeshTLSAuthentication naming one account)."""

    def matches(self, c: Caller, port: int, req: Req | None) -> bool:
        http_only = self.action == "DENY"
        if self.peers and not any(p(c, req, http_only) for p in self.peers):
            return False
        if self.operations and not any(o(port, req, http_only) for o in self.operations):
            return False
        return all(cond(c, port, req, http_only) for cond in self.conditions)


def _identity_keys(d: Data) -> frozenset[tuple[str, str]] | None:
    """The exact identities or principals (one of which) every peer of the rule needs."""
    peers = d.get("peers", ())
    if not peers:
        return None
    keys: set[tuple[str, str]] = set()
    for peer in peers:
        ids = peer.get("identities", ())
        if not ids:
            return None
        for m in ids:
            if m.get("type") == "ExactIdentity":
                keys.add(("id", str(m["value"])))
            elif m.get("type") == "ServiceAccountIdentity" and m.get("name"):
                keys.add(("sa", f"{m['namespace']}/{m['name']}"))
            elif m.get("type") == "PrincipalMatch" and m["match"].get("kind") == "exact":
                keys.add(("pr", str(m["match"].get("value", ""))))
            else:
                return None
    return frozenset(keys)


def _only_exact_identity(d: Data) -> str | None:
    peers = d.get("peers", ())
    if d.get("operations") or d.get("conditions") or len(peers) != 1 or d.get("failed"):
        return None
    peer = peers[0]
    if set(peer) - {"tls", "identities"} or peer.get("tls") not in (None, "authenticated"):
        return None
    ids = peer.get("identities", ())
    if len(ids) == 1 and ids[0].get("type") == "ExactIdentity":
        return str(ids[0]["value"])
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    allowed: bool
    authz: AuthzLabels | None
    """The authorization that allowed (or, for a DENY rule, denied); None: nothing matched."""
    reason: str
    decided_by: str | None = None
    """Its IR name (``serverauthorization/shop/web/0``), what `mesh routes explain` says."""
    audited: tuple[str, ...] = ()


def _position(pair: tuple[int, Rule]) -> int:
    return pair[0]


class Candidates:
    """ALLOW rules in decision order, indexed by the client identity they need.

    A rule that asks only for one exact identity (a ServerAuthorization naming one account)
    is answered by a dict lookup; a rule that needs the identity or the Istio principal to
    be one of a few exact values (and more: paths, methods) is only tested for such a
    client; the rest are scanned. The first matching rule in decision order wins, as if
    every rule were tested in turn."""

    __slots__ = ("by_identity", "failed", "keyed", "ordered", "rules")

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.ordered = tuple(rules)
        self.failed = tuple(r for r in rules if r.failed)
        self.by_identity: dict[str, int] = {}
        keyed: dict[tuple[str, str], list[tuple[int, Rule]]] = {}
        scan: list[tuple[int, Rule]] = []
        for i, r in enumerate(rules):
            if r.failed:
                continue
            if r.exact_identity is not None:
                self.by_identity.setdefault(r.exact_identity, i)
            elif r.keys is not None:
                for key in r.keys:
                    keyed.setdefault(key, []).append((i, r))
            else:
                scan.append((i, r))
        self.rules = tuple(scan)
        # each key's rules merged with the scanned ones once, in decision order: a client
        # that hits one key (the usual case) walks a ready list
        self.keyed = {k: tuple(sorted((*scan, *v), key=_position)) for k, v in keyed.items()}

    def first(self, c: Caller, port: int, req: Req | None) -> Rule | None:
        hit = self.by_identity.get(c.identity, -1) if c.identity else -1
        found = self.rules
        if self.keyed and c.identity is not None:
            hits = [
                merged
                for key in (("id", c.identity), ("pr", c.principal), ("sa", c.account))
                if (merged := self.keyed.get(key)) is not None  # type: ignore[arg-type]
            ]
            if len(hits) == 1:
                found = hits[0]
            elif hits:  # rules keyed by two forms of the same identity: merge them
                found = tuple(sorted({p for h in hits for p in h}, key=_position))
        for i, r in found:
            if hit >= 0 and i > hit:
                break
            if r.matches(c, port, req):
                return r
        return self.ordered[hit] if hit >= 0 else None


class Decider:
    """The rules of one server port for one route (or for connections: route None)."""

    __slots__ = ("allow", "audit", "deny", "http", "port", "server")

    def __init__(
        self,
        *,
        server: str,
        port: int,
        deny: Sequence[Rule],
        audit: Sequence[Rule],
        allow: Sequence[Rule],
    ) -> None:
        self.server, self.port = server, port
        self.deny, self.audit = tuple(deny), tuple(audit)
        self.allow = Candidates(allow)
        self.http = any(r.http for r in (*deny, *audit, *allow))
        """Some rule reads the request: no per-connection cache of the verdict."""

    def constant(self) -> Verdict | None:
        """The verdict every call gets, when nothing can change it: no DENY or AUDIT rule
        and a first ALLOW rule that asks nothing of the client."""
        if self.deny or self.audit or not self.allow.ordered:
            return None
        first = self.allow.ordered[0]
        if first.failed or first.operations or first.conditions:
            return None
        if first.peers and not any(p.unconditional for p in first.peers):
            return None
        return Verdict(
            allowed=True,
            authz=first.labels,
            reason=f"allowed by {first.name}",
            decided_by=first.name,
        )

    def check(self, c: Caller, req: Req | None) -> Verdict:
        port = self.port
        for r in self.deny:
            if r.matches(c, port, req):
                why = f" ({r.failed})" if r.failed else ""
                return Verdict(
                    allowed=False,
                    authz=r.labels,
                    reason=f"denied by {r.name}{why}",
                    decided_by=r.name,
                )
        audited = tuple(r.name for r in self.audit if r.matches(c, port, req))
        found = self.allow.first(c, port, req)
        if found is not None:
            return Verdict(
                allowed=True,
                authz=found.labels,
                reason=f"allowed by {found.name}",
                audited=audited,
                decided_by=found.name,
            )
        reason = f"no authorization on {self.server} allows the client"
        if self.allow.failed:
            reason += "; failed closed: " + "; ".join(
                f"{r.name}: {r.failed}" for r in self.allow.failed
            )
        return Verdict(allowed=False, authz=None, reason=reason, audited=audited)
