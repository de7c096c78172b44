"""The inbound port's guard: authorization per request (HTTP) or per connection (opaque),
the mTLS mode, and Linkerd's authorization metrics.

```
Proxy.apply_policy(resources) ─ resolve(workload, app port) ─► InboundGuard.update(PortPolicy)
accepted connection (detect.py) ─ guard.mode / guard.opaque ─► STRICT closes plaintext,
                                   DISABLE never sniffs, opaque: connection_allowed() then TCP
request (handler.py) ─ guard.admit(req) ─► None (allowed) | Answer (403 / 404)
   a GET of one of the port's probe paths (a Server without routes) is allowed first,
   counted as route/authz ``default/probe`` (Linkerd's); no probes: one set lookup
   the caller (tls, client identity, address) is built once per connection; a verdict that
   reads nothing of the request is kept on the connection until the policy changes
```

Answers as Linkerd's: 403 with `l5d-proxy-error` (gRPC: status 7, PERMISSION_DENIED), no
route on a server with routes 404 (gRPC 12, UNIMPLEMENTED). Metrics (counters, Linkerd's
label order): ``inbound_http_authz_allow_total`` / ``inbound_http_authz_deny_total`` and
``inbound_tcp_authz_allow_total`` / ``inbound_tcp_authz_deny_total`` with ``target_*``, the
TLS labels, ``srv_*``, ``route_*`` (HTTP) and, for allows, ``authz_*``;
``inbound_http_route_not_found_total``. Before any policy arrives the guard lets every call
through and counts nothing (a control plane that serves no policy: Turnout's old behaviour).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from turnout.proxy.answers import Answer
from turnout.proxy.authz import AuthzLabels, Caller, Req, Verdict
from turnout.proxy.inbound_policy import PROBE_VERDICT, InboundRoute, Mode, PortPolicy
from turnout.proxy.registry import Cell, Family, join_labels
from turnout.proxy.transport.messages import ConnectionInfo, IncomingRequest

FORBIDDEN = Answer(403, "unauthorized request on route")
FORBIDDEN_GRPC = Answer(200, "unauthorized request on route", grpc_status=7)
NO_ROUTE = Answer(404, "no route found for request")
NO_ROUTE_GRPC = Answer(200, "no route found for request", grpc_status=12)

if TYPE_CHECKING:  # jwt_authn loads PyJWT, cryptography and aiohttp: only when a port has JWT rules
    from turnout.proxy.jwt_authn import Authenticated, Authenticator, JwtRule, KeySet

DEFAULT_ROUTE = ("", "default", "default")
PROBE_ROUTE = ("", "default", "probe")
log = logging.getLogger(__name__)


class AuthzFamilies:
    """The four authorization counters and the route-not-found one."""

    def __init__(self) -> None:
        c = "counter"
        self.http_allow = Family("inbound_http_authz_allow_total", c, "The total number of inbound HTTP requests that were authorized.")  # fmt: skip
        self.http_deny = Family("inbound_http_authz_deny_total", c, "The total number of inbound HTTP requests that could not be processed due to a proxy error.")  # fmt: skip
        self.route_not_found = Family("inbound_http_route_not_found_total", c, "The total number of inbound HTTP requests that could not be associated with a route.")  # fmt: skip
        self.tcp_allow = Family("inbound_tcp_authz_allow_total", c, "The total number of inbound TCP connections that were authorized.")  # fmt: skip
        self.tcp_deny = Family("inbound_tcp_authz_deny_total", c, "The total number of inbound TCP connections that were denied.")  # fmt: skip

    def all(self) -> tuple[Family, ...]:
        return (
            self.http_allow,
            self.http_deny,
            self.route_not_found,
            self.tcp_allow,
            self.tcp_deny,
        )


@dataclass(slots=True)
class _Conn:
    """What a connection keeps between its requests (`ConnectionInfo.authz`)."""

    generation: int
    caller: Caller
    tls: tuple[tuple[str, str], ...]
    verdict: Verdict | None = None
    """The connection's verdict, when the policy's rules read nothing of the request."""
    cell: Cell | None = None
    """Its counter."""


def is_grpc(req: IncomingRequest) -> bool:
    for name, value in req.raw_headers:
        if name.lower() == b"content-type":
            return value.startswith(b"application/grpc")
    return False


class InboundGuard:
    """One inbound port's policy, swapped whole on every policy update."""

    def __init__(
        self,
        *,
        base: Mapping[str, str],
        target: tuple[str, int],
        identity: bool,
        families: AuthzFamilies,
        opaque: bool = False,
    ) -> None:
        self.policy: PortPolicy | None = None
        self._opaque = opaque
        self.generation = 0
        self._identity = identity
        self._fams = families
        self._base = tuple(base.items())
        self._target = (
            ("target_addr", f"{target[0]}:{target[1]}"),
            ("target_ip", target[0]),
            ("target_port", str(target[1])),
        )
        self._cells: dict[tuple[object, ...], Cell] = {}
        self.authn: Authenticator | None = None
        """The port's RequestAuthentication rules (None: no JWT is checked)."""
        self._rules: tuple[JwtRule, ...] = ()
        self._keysets: dict[tuple[str, str | None, str | None], KeySet] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._rejections: dict[tuple[int, str, str, bool], Answer] = {}

    # ----------------------------------------------------------------------- updates

    def update(self, policy: PortPolicy) -> None:
        self.policy = policy
        self.generation += 1
        rules = tuple(jwt_rule(r) for r in policy.jwt_rules) if policy.jwt_rules else ()
        if rules != self._rules:
            self._rules = rules
            self.authn = self._authenticator(rules) if rules else None

    def _authenticator(self, rules: tuple[JwtRule, ...]) -> Authenticator:
        """The rules with their key sets; a JWKS kept from the last policy keeps its keys
        (no refetch for an unrelated policy change)."""
        from turnout.proxy.jwt_authn import Authenticator, KeySet

        wanted = {(r.issuer, r.jwks_uri, r.jwks): r for r in rules}
        for key in set(self._keysets) - set(wanted):
            task = asyncio.get_running_loop().create_task(self._keysets.pop(key).close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        for key, r in wanted.items():
            if key not in self._keysets:
                ks = self._keysets[key] = KeySet(r.jwks_uri, inline=r.jwks)
                ks.start()
        return Authenticator(rules, {r.issuer: self._keysets[k] for k, r in wanted.items()})

    async def close(self) -> None:
        for ks in self._keysets.values():
            await ks.close()
        self._keysets.clear()

    @property
    def mode(self) -> Mode:
        return "PERMISSIVE" if self.policy is None else self.policy.mode

    @property
    def opaque(self) -> bool:
        """``--opaque-ports`` names the port, or its Server says `proxyProtocol: opaque`."""
        return self._opaque or (self.policy is not None and self.policy.opaque)

    # ----------------------------------------------------------------------- checks

    def _conn(self, conn: ConnectionInfo | None, peer: tuple[str, int]) -> _Conn:
        state = conn.authz if conn is not None else None
        if isinstance(state, _Conn) and state.generation == self.generation:
            return state
        tls = conn.tls if conn is not None else False
        ident = conn.client_id if conn is not None else ""
        caller = Caller.of(peer[0], tls=tls, identity=ident)
        if not self._identity:
            labels: tuple[tuple[str, str], ...] = (("tls", "disabled"),)
        elif tls:
            labels = (("tls", "true"), ("client_id", ident))
        else:
            labels = (("tls", "no_identity"), ("no_tls_reason", "no_tls_from_remote"))
        state = _Conn(self.generation, caller, labels)
        if conn is not None:
            conn.authz = state
        return state

    async def admit_authenticated(self, req: IncomingRequest) -> Answer | None:
        """`admit` after the port's JWT rules: a missing token passes (without a request
        principal), a bad one is answered 401 (gRPC 16) with `WWW-Authenticate`; a valid
        one's output headers replace any the client sent."""
        from turnout.proxy.jwt_authn import Authenticated, Rejected

        assert self.authn is not None
        outcome = await self.authn.authenticate(req.headers, req.query)
        if isinstance(outcome, Rejected):
            return self._rejected(outcome, is_grpc(req))
        if isinstance(outcome, Authenticated):
            _rewrite(req, outcome)
            return self.admit(req, outcome.principal, outcome.claims)
        return self.admit(req)

    def _rejected(self, r: Any, grpc: bool) -> Answer:
        """The answer for a `jwt_authn.Rejected`, built once per (status, reason)."""
        key = (r.status, r.reason, r.www_authenticate, grpc)
        answer = self._rejections.get(key)
        if answer is None:
            if grpc:
                answer = Answer(200, r.reason, grpc_status=16 if r.status == 401 else 7)
            else:
                answer = Answer(r.status, r.reason)
            answer.headers = [*answer.headers, ("www-authenticate", r.www_authenticate)]
            answer = self._rejections[key] = answer
        return answer

    def admit(
        self,
        req: IncomingRequest,
        principal: str | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> Answer | None:
        """None: the request may go on to the app; else the answer it gets."""
        policy = self.policy
        if policy is None:
            return None
        conn = self._conn(req.conn, req.peer)
        if policy.probes and policy.is_probe(req.method, req.path):
            fam = self._fams.http_allow
            self._count(fam, conn, policy, None, PROBE_VERDICT.authz, rt=PROBE_ROUTE).v += 1
            return None
        if conn.cell is not None:  # a per-connection verdict, already counted once
            conn.cell.v += 1
            return None if conn.verdict is None or conn.verdict.allowed else self._deny(req)
        route: InboundRoute | None = None
        if policy.routes:
            route = policy.route_for(req)
            if route is None:
                self._count(self._fams.route_not_found, conn, policy, None, None).v += 1
                return NO_ROUTE_GRPC if is_grpc(req) else NO_ROUTE
        verdict = policy.constant
        if verdict is None:
            decider = route.decider if route is not None else policy.decider
            view = _req(req, principal, claims) if decider.http else None
            verdict = decider.check(conn.caller, view)
            per_conn = not decider.http and route is None
        else:
            per_conn = route is None
        family = self._fams.http_allow if verdict.allowed else self._fams.http_deny
        cell = self._count(family, conn, policy, route, verdict.authz if verdict.allowed else None)
        cell.v += 1
        if per_conn:
            conn.verdict, conn.cell = verdict, cell
        return None if verdict.allowed else self._deny(req)

    @staticmethod
    def _deny(req: IncomingRequest) -> Answer:
        return FORBIDDEN_GRPC if is_grpc(req) else FORBIDDEN

    def connection_allowed(self, conn: ConnectionInfo) -> bool:
        """An opaque port's one check per connection (server-level authorizations)."""
        policy = self.policy
        if policy is None:
            return True
        state = self._conn(conn, conn.peer)
        verdict = policy.constant or policy.decider.check(state.caller, None)
        family = self._fams.tcp_allow if verdict.allowed else self._fams.tcp_deny
        self._count(family, state, policy, None, verdict.authz if verdict.allowed else None, tcp=True).v += 1  # fmt: skip
        return verdict.allowed

    def plaintext_refused(self, conn: ConnectionInfo) -> None:
        """STRICT refused a plaintext connection: counted as a TCP denial."""
        policy = self.policy
        if policy is None:
            return
        state = self._conn(conn, conn.peer)
        self._count(self._fams.tcp_deny, state, policy, None, None, tcp=True).v += 1

    def _count(
        self,
        family: Family,
        conn: _Conn,
        policy: PortPolicy,
        route: InboundRoute | None,
        authz: AuthzLabels | None,
        *,
        tcp: bool = False,
        rt: tuple[str, str, str] | None = None,
    ) -> Cell:
        if rt is None:
            rt = DEFAULT_ROUTE if route is None else (route.group, route.kind, route.name)
        key = (family.name, conn.tls, policy.server, policy.port, rt, authz, tcp)
        cell = self._cells.get(key)
        if cell is None:
            srv = policy.server
            pairs = [
                ("direction", "inbound"),
                *self._base,
                *self._target,
                *conn.tls,
                ("srv_group", srv.group),
                ("srv_kind", srv.kind),
                ("srv_name", srv.name),
                ("srv_port", str(policy.port)),
            ]
            if not tcp:
                pairs += [("route_group", rt[0]), ("route_kind", rt[1]), ("route_name", rt[2])]
            if authz is not None:
                pairs += [
                    ("authz_group", authz.group),
                    ("authz_kind", authz.kind),
                    ("authz_name", authz.name),
                ]
            cell = self._cells[key] = family.cell(join_labels(pairs))
        return cell


def _req(req: IncomingRequest, principal: str | None, claims: Mapping[str, Any] | None) -> Req:
    headers: dict[str, str] = {}
    for name, value in req.headers:
        headers.setdefault(name.lower(), value)
    return Req(
        method=req.method,
        path=req.path,
        host=req.host,
        headers=headers,
        principal=principal,
        claims=flat_claims(claims) if claims else {},
    )


def flat_claims(claims: Mapping[str, Any], prefix: str = "") -> dict[str, str | tuple[str, ...]]:
    """``{"a": {"b": 1}, "groups": ["x", "y"]}`` -> ``{"a.b": "1", "groups": ("x", "y")}``."""
    out: dict[str, str | tuple[str, ...]] = {}
    for k, v in claims.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat_claims(v, f"{name}."))
        elif isinstance(v, list):
            out[name] = tuple(_text(x) for x in v if not isinstance(x, Mapping | list))
        else:
            out[name] = _text(v)
    return out


def _text(v: object) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _rewrite(req: IncomingRequest, ok: Authenticated) -> None:
    """The token's output headers in, the client's copies (and the token) out."""
    drop = {h.encode("latin-1") for h in ok.remove_headers}
    drop |= {h.lower().encode("latin-1") for h, _ in ok.set_headers}
    kept = [(n, v) for n, v in req.raw_headers if n.lower() not in drop]
    kept += [(h.encode("latin-1"), v.encode("latin-1")) for h, v in ok.set_headers]
    req.replace_headers(kept)


def jwt_rule(d: Mapping[str, Any]) -> JwtRule:
    """A served `JwtRule` (docs/policy.md) as the authenticator's."""
    from turnout.proxy.jwt_authn import JwtRule, TokenLocation

    return JwtRule(
        issuer=d["issuer"],
        audiences=tuple(d.get("audiences", ())),
        jwks_uri=d.get("jwks_uri"),
        jwks=d.get("jwks"),
        locations=tuple(
            TokenLocation(
                header=loc.get("header"), prefix=loc.get("prefix", ""), param=loc.get("param")
            )
            for loc in d.get("locations", ())
        ),
        output_payload_to_header=d.get("output_payload_to_header"),
        output_claim_to_headers=tuple((h, c) for h, c in d.get("output_claim_to_headers", ())),
        forward_original_token=bool(d.get("forward_original_token", False)),
    )
