"""JWT authentication in the proxy (Istio `RequestAuthentication` semantics, its failure modes fixed).

```
request ─ tokens() ─ Authorization: Bearer, then ?access_token (or the rule's fromHeaders/fromParams)
   none ─────────────────────────────────────────► NO_TOKEN (passes; a policy may require one)
   one ─ unverified `iss` picks the rule (none: 401 "Jwt issuer is not configured")
        ─ verified-token cache hit (until exp) ───► Authenticated(principal iss/sub, claims)
        ─ `kid` ─ KeySet.key(kid): known ─ or unknown, past the cooldown: refetch, awaited
        ─ PyJWT decode (asymmetric algorithms only; `alg: none` and HS* never) ─ 401 / ok
        ─ audiences: none matching ─ 401 invalid_token (Istio answers 403: `istio_statuses`)
   two or more ─ 401 "Found multiple Jwt tokens"
```

Keys: a `KeySet` per `jwksUri` fetches the JWKS itself, asynchronously (aiohttp), at start
and every `refresh_s`; a failed fetch keeps the last good key set (Istio's control plane
inlines a fake one that rejects every token until the next good round) and is retried with
a short backoff (`RETRY_S`, capped), so recovery follows the server's return within
seconds. A token whose `kid` is unknown triggers one refetch, at most once per `cooldown_s`,
and waits for it (bounded by the fetch timeout): a newly published key is accepted at once.

A valid token's headers: `outputPayloadToHeader` gets the base64url JSON payload,
`outputClaimToHeaders` the claims (string, number or boolean; nested with `.`), each
replacing a copy the client sent; the token itself is removed unless
`forwardOriginalToken`. Not here: which requests need a token (authorization policy), and
reading the rules from xDS.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import jwt

log = logging.getLogger(__name__)

ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
"""What a JWKS key may verify: asymmetric only, never `none` or a shared secret."""
RETRY_S = (0.5, 1.0, 2.0, 4.0)
"""Backoff after failed JWKS fetches (the last one repeats)."""
MAX_CACHED_TOKENS = 4096


@dataclass(frozen=True, slots=True)
class TokenLocation:
    """Where a token is read: a header (with an exact prefix such as ``Bearer ``) or a query
    parameter."""

    header: str | None = None
    prefix: str = ""
    param: str | None = None


DEFAULT_LOCATIONS = (
    TokenLocation(header="authorization", prefix="Bearer "),
    TokenLocation(param="access_token"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class JwtRule:
    """One `jwtRules[]` entry."""

    issuer: str
    audiences: tuple[str, ...] = ()
    """Any one accepted; empty: the audience is not checked."""
    jwks_uri: str | None = None
    jwks: str | None = None
    """Inline JWKS JSON (instead of `jwks_uri`)."""
    locations: tuple[TokenLocation, ...] = ()
    """Empty: `DEFAULT_LOCATIONS`."""
    output_payload_to_header: str | None = None
    output_claim_to_headers: tuple[tuple[str, str], ...] = ()
    """(header, claim) pairs."""
    forward_original_token: bool = False


@dataclass(frozen=True, slots=True)
class NoToken:
    """The request carries no token: it passes unauthenticated (no request principal)."""


@dataclass(frozen=True, slots=True)
class Authenticated:
    principal: str
    """``<iss>/<sub>``, what `requestPrincipals` match."""
    claims: Mapping[str, Any]
    set_headers: tuple[tuple[str, str], ...] = ()
    """Headers to set (replacing any the client sent)."""
    remove_headers: tuple[str, ...] = ()
    """Lower-case header names to drop (the token's own header, unless forwarded)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    status: int
    """401, or 403 for a disallowed audience with `istio_statuses`."""
    reason: str
    """Envoy's status text, e.g. ``Jwt is expired``."""
    www_authenticate: str = 'Bearer error="invalid_token"'


NO_TOKEN = NoToken()
Outcome = NoToken | Authenticated | Rejected


class KeySet:
    """One JWKS: fetched by the proxy itself, last good kept (see the module docstring)."""

    def __init__(
        self,
        uri: str | None,
        *,
        inline: str | None = None,
        refresh_s: float = 300.0,
        cooldown_s: float = 5.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.uri = uri
        self.refresh_s = refresh_s
        self.cooldown_s = cooldown_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.keys: dict[str, jwt.PyJWK] = {}
        """``kid`` ("" for a key without one) -> key; the last good set."""
        self.fetches = 0
        self.failures = 0
        self._failing = 0
        """Consecutive failed fetches (0: the last one worked)."""
        self._last_try = -1e9
        self._wake = asyncio.Event()
        self._fetching: asyncio.Future[bool] | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        if inline is not None:
            self.keys = _parse(inline)

    def start(self) -> None:
        if self.uri is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"jwks {self.uri}"
            )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key for `kid`; unknown: one refetch past the cooldown, awaited."""
        found = self.keys.get(kid)
        if found is not None or self.uri is None:
            return found
        if self._fetching is not None:  # a fetch is on its way (the first one, say): wait
            await asyncio.shield(self._fetching)
        elif self.clock() - self._last_try >= self.cooldown_s:
            await self.fetch()
        return self.keys.get(kid)

    async def fetch(self) -> bool:
        """Fetch once (concurrent callers share the fetch); True when the set was replaced."""
        if self._fetching is not None:
            return await asyncio.shield(self._fetching)
        self._fetching = asyncio.get_running_loop().create_future()
        ok = False
        try:
            ok = await self._fetch_once()
        finally:
            self._fetching.set_result(ok)
            self._fetching = None
        return ok

    async def _fetch_once(self) -> bool:
        assert self.uri is not None
        self._last_try = self.clock()
        self.fetches += 1
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        try:
            async with self._session.get(self.uri) as resp:
                if resp.status != 200:
                    raise ValueError(f"status {resp.status}")
                keys = _parse(await resp.text())
        except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWKError) as exc:
            self.failures += 1
            self._failing += 1
            self._wake.set()  # the refresh loop backs off from now, whoever fetched
            log.warning(
                "jwks fetch failed uri=%s keeping=%d keys: %s", self.uri, len(self.keys), exc
            )
            return False
        if sorted(keys) != sorted(self.keys):
            log.info("jwks updated uri=%s kids=%s", self.uri, ",".join(sorted(keys)))
        self.keys = keys
        self._failing = 0
        return True

    async def _run(self) -> None:
        await self.fetch()
        while True:
            failing = self._failing
            wait = self.refresh_s if not failing else RETRY_S[min(failing, len(RETRY_S)) - 1]
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
                continue  # a fetch failed meanwhile: wait again, backing off
            except TimeoutError:
                pass
            await self.fetch()


def _parse(text: str) -> dict[str, jwt.PyJWK]:
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS: want an object with keys[]")
    out: dict[str, jwt.PyJWK] = {}
    for raw in data["keys"]:
        try:
            key = jwt.PyJWK.from_dict(raw)
        except (jwt.PyJWKError, jwt.InvalidKeyError) as exc:
            log.debug("jwks key skipped: %s", exc)
            continue
        if key.algorithm_name in ALGORITHMS or raw.get("alg") is None:
            out[str(raw.get("kid", ""))] = key
    return out


@dataclass
class Authenticator:
    """The rules of one server port, with their key sets (see the module docstring)."""

    rules: Sequence[JwtRule]
    keysets: Mapping[str, KeySet]
    """Issuer -> its keys."""
    istio_statuses: bool = False
    """Answer a disallowed audience with 403 as Istio does (default: 401, RFC 6750)."""
    leeway_s: int = 0
    _by_issuer: dict[str, JwtRule] = field(default_factory=dict)
    _verified: dict[str, tuple[float, Authenticated]] = field(default_factory=dict)
    _locations: tuple[TokenLocation, ...] = ()

    def __post_init__(self) -> None:
        self._by_issuer = {r.issuer: r for r in self.rules}
        locs: dict[TokenLocation, None] = {}
        for r in self.rules:
            for loc in r.locations or DEFAULT_LOCATIONS:
                locs[loc] = None
        self._locations = tuple(locs)

    @classmethod
    def of(
        cls, rules: Sequence[JwtRule], *, istio_statuses: bool = False, **keyset: Any
    ) -> Authenticator:
        """The rules with a `KeySet` each (`keyset`: its refresh, cooldown, timeout)."""
        keysets = {r.issuer: KeySet(r.jwks_uri, inline=r.jwks, **keyset) for r in rules}
        return cls(rules, keysets, istio_statuses=istio_statuses)

    def start(self) -> None:
        for ks in self.keysets.values():
            ks.start()

    async def close(self) -> None:
        for ks in self.keysets.values():
            await ks.close()

    def tokens(
        self, headers: Sequence[tuple[str, str]], query: str
    ) -> list[tuple[str, TokenLocation]]:
        """Every token the request carries, with where it was found."""
        found: list[tuple[str, TokenLocation]] = []
        params: list[tuple[str, str]] | None = None
        for loc in self._locations:
            if loc.header is not None:
                for name, value in headers:
                    if name.lower() == loc.header and value.startswith(loc.prefix):
                        found.append((value[len(loc.prefix) :].strip(), loc))
            elif loc.param is not None and query:
                if params is None:
                    params = parse_qsl(query, keep_blank_values=True)
                found.extend((v, loc) for k, v in params if k == loc.param)
        return found

    async def authenticate(self, headers: Sequence[tuple[str, str]], query: str) -> Outcome:
        tokens = self.tokens(headers, query)
        if not tokens:
            return NO_TOKEN
        if len({t for t, _ in tokens}) > 1:
            return Rejected(401, "Found multiple Jwt tokens")
        token, where = tokens[0]
        now = time.time()
        seen = self._verified.get(token)
        if seen is not None and seen[0] > now:
            return seen[1]
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.DecodeError:
            return Rejected(
                401,
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
            )
        rule = self._by_issuer.get(str(unverified.get("iss", "")))
        if rule is None:
            return Rejected(401, "Jwt issuer is not configured")
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            return Rejected(401, "Jwt verification fails")
        key = await self.keysets[rule.issuer].key(str(header.get("kid", "")))
        if key is None:
            return Rejected(401, "Jwks doesn't have key to match kid or alg from Jwt")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                issuer=rule.issuer,
                leeway=self.leeway_s,
                options={"verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            return Rejected(401, "Jwt is expired")
        except jwt.ImmatureSignatureError:
            return Rejected(401, "Jwt not yet valid")
        except jwt.PyJWTError:
            return Rejected(401, "Jwt verification fails")
        if rule.audiences and not _audience_ok(claims.get("aud"), rule.audiences):
            status = 403 if self.istio_statuses else 401
            return Rejected(status, "Audiences in Jwt are not allowed")
        result = _authenticated(rule, claims, where)
        exp = claims.get("exp")
        if len(self._verified) >= MAX_CACHED_TOKENS:
            self._verified.clear()
        self._verified[token] = (float(exp) if isinstance(exp, int | float) else now + 60, result)
        return result


def _audience_ok(aud: object, allowed: tuple[str, ...]) -> bool:
    values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    return any(v in allowed for v in values)


def _authenticated(rule: JwtRule, claims: Mapping[str, Any], where: TokenLocation) -> Authenticated:
    out: list[tuple[str, str]] = []
    if rule.output_payload_to_header:
        payload = json.dumps(claims, separators=(",", ":")).encode()
        out.append(
            (rule.output_payload_to_header, base64.urlsafe_b64encode(payload).rstrip(b"=").decode())
        )
    for header, claim in rule.output_claim_to_headers:
        value = _claim(claims, claim)
        if value is not None:
            out.append((header, value))
    remove = tuple({h.lower() for h, _ in out})
    if not rule.forward_original_token and where.header is not None:
        remove = (*remove, where.header)
    principal = f"{claims.get('iss', '')}/{claims.get('sub', '')}"
    return Authenticated(principal, dict(claims), tuple(out), remove)


def _claim(claims: Mapping[str, Any], path: str) -> str | None:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None
