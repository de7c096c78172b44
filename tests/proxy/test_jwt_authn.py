"""JWT authentication (`jwt_authn.py`) with real keys, real signed tokens and a real JWKS
server on 127.0.0.1 (aiohttp), which the tests take down and bring back."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from turnout.proxy.jwt_authn import (
    NO_TOKEN,
    Authenticated,
    Authenticator,
    JwtRule,
    Rejected,
    TokenLocation,
)

ISSUER = "https://issuer.example"


class Jwks:
    """A JWKS endpoint whose keys the test changes, and which it can stop and start."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.requests = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    def add(self, kid: str, key: Any) -> None:
        jwk = json.loads(
            jwt.algorithms.get_default_algorithms()[_alg(key)].to_jwk(key.public_key())
        )
        self.keys[kid] = {**jwk, "kid": kid, "alg": _alg(key)}

    async def start(self) -> None:
        app = web.Application()

        async def serve(_: web.Request) -> web.Response:
            self.requests += 1
            return web.json_response({"keys": list(self.keys.values())})

        app.router.add_get("/jwks", serve)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks"


def _alg(key: Any) -> str:
    return "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"


def token(key: Any, kid: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "alice", "aud": "web", "iat": now, "exp": now + 300, **claims}
    return jwt.encode(body, key, algorithm=_alg(key), headers={"kid": kid})


def bearer(t: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {t}")]


@pytest.fixture
async def jwks() -> AsyncIterator[Jwks]:
    server = Jwks()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC = ec.generate_private_key(ec.SECP256R1())


async def authenticator(jwks: Jwks, **rule: Any) -> Authenticator:
    auth = Authenticator.of(
        [JwtRule(issuer=ISSUER, audiences=("web",), jwks_uri=jwks.uri, **rule)], cooldown_s=0.2
    )
    auth.start()
    for _ in range(100):
        if auth.keysets[ISSUER].keys:
            break
        await asyncio.sleep(0.02)
    return auth


async def test_tokens_are_checked_as_istio_does_with_401_where_it_answers_403(jwks: Jwks) -> None:
    jwks.add("r1", RSA)
    jwks.add("e1", EC)
    auth = await authenticator(jwks)
    try:
        ok = await auth.authenticate(bearer(token(RSA, "r1")), "")
        assert isinstance(ok, Authenticated) and ok.principal == f"{ISSUER}/alice"
        assert isinstance(await auth.authenticate(bearer(token(EC, "e1")), ""), Authenticated)
        assert await auth.authenticate([], "") is NO_TOKEN
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cases = {
            "expired": (token(RSA, "r1", exp=int(time.time()) - 10), 401, "Jwt is expired"),
            "bad signature": (token(other, "r1"), 401, "Jwt verification fails"),
            "unknown issuer": (
                token(RSA, "r1", iss="https://evil"),
                401,
                "Jwt issuer is not configured",
            ),
            "wrong audience": (
                token(RSA, "r1", aud="other"),
                401,
                "Audiences in Jwt are not allowed",
            ),
            "not yet valid": (
                token(RSA, "r1", nbf=int(time.time()) + 600),
                401,
                "Jwt not yet valid",
            ),
            "garbage": ("a.b", 401, "Jwt is not in the form"),
        }
        unsigned = jwt.encode({"iss": ISSUER, "sub": "x", "aud": "web"}, None, algorithm="none")
        cases["alg none"] = (unsigned, 401, "Jwt verification fails")
        hs = jwt.encode({"iss": ISSUER, "sub": "x", "aud": "web"}, "k" * 32, algorithm="HS256")
        cases["shared secret"] = (hs, 401, "Jwt verification fails")
        for what, (t, status, reason) in cases.items():
            got = await auth.authenticate(bearer(t), "")
            assert isinstance(got, Rejected), what
            assert got.status == status and got.reason.startswith(reason), (what, got)
            assert got.www_authenticate.startswith("Bearer"), what
        auth.istio_statuses = True
        got = await auth.authenticate(bearer(token(RSA, "r1", aud="other")), "")
        assert isinstance(got, Rejected) and got.status == 403
        # two different tokens: no principal can be told
        two = [*bearer(token(RSA, "r1")), ("authorization", "Bearer " + token(EC, "e1"))]
        got = await auth.authenticate(two, "")
        assert isinstance(got, Rejected) and got.reason == "Found multiple Jwt tokens"
    finally:
        await auth.close()


async def test_claims_and_payload_go_to_headers_replacing_client_copies(jwks: Jwks) -> None:
    jwks.add("r1", RSA)
    auth = await authenticator(
        jwks,
        output_payload_to_header="x-jwt-payload",
        output_claim_to_headers=(
            ("x-sub", "sub"),
            ("x-team", "org.team"),
            ("x-admin", "admin"),
            ("x-none", "nope"),
        ),
        locations=(TokenLocation(header="x-token", prefix=""), TokenLocation(param="jwt")),
    )
    try:
        t = token(RSA, "r1", org={"team": "payments"}, admin=True)
        got = await auth.authenticate([("x-token", t), ("x-sub", "forged")], "")
        assert isinstance(got, Authenticated)
        out = dict(got.set_headers)
        assert out["x-sub"] == "alice" and out["x-team"] == "payments" and out["x-admin"] == "true"
        assert "x-none" not in out
        pad = "=" * (-len(out["x-jwt-payload"]) % 4)
        assert json.loads(base64.urlsafe_b64decode(out["x-jwt-payload"] + pad))["sub"] == "alice"
        # the client's copy goes, and so does the token (forwardOriginalToken: false)
        assert "x-sub" in got.remove_headers and "x-token" in got.remove_headers
        # the query parameter location; Authorization is not a location of this rule
        assert isinstance(await auth.authenticate([], f"a=1&jwt={t}"), Authenticated)
        assert await auth.authenticate(bearer(t), "") is NO_TOKEN
    finally:
        await auth.close()


async def test_a_new_kid_is_fetched_at_once_and_old_keys_outlive_an_outage(jwks: Jwks) -> None:
    jwks.add("r1", RSA)
    auth = await authenticator(jwks)
    keys = auth.keysets[ISSUER]
    try:
        # a key published after the last fetch: the first token with it triggers one refetch
        await asyncio.sleep(0.25)  # past the cooldown
        jwks.add("e2", EC)
        before = jwks.requests
        assert isinstance(await auth.authenticate(bearer(token(EC, "e2")), ""), Authenticated)
        assert jwks.requests == before + 1
        # an unknown kid within the cooldown does not refetch again
        ghost = ec.generate_private_key(ec.SECP256R1())
        for _ in range(5):
            got = await auth.authenticate(bearer(token(ghost, "ghost")), "")
            assert isinstance(got, Rejected) and got.reason.startswith("Jwks doesn't have key")
        assert jwks.requests <= before + 2
        # the JWKS server goes down: the last good keys keep verifying
        await jwks.stop()
        await asyncio.sleep(0.3)
        assert not await keys.fetch()
        assert isinstance(
            await auth.authenticate(bearer(token(RSA, "r1", sub="bob")), ""), Authenticated
        )
        # it comes back with a new key: picked up within seconds by the retry loop
        jwks.keys.clear()
        jwks.add("r3", RSA)
        await jwks.start()
        deadline = time.monotonic() + 5
        while "r3" not in keys.keys and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert "r3" in keys.keys
    finally:
        await auth.close()


async def test_verified_tokens_are_not_verified_again(jwks: Jwks) -> None:
    jwks.add("r1", RSA)
    auth = await authenticator(jwks)
    try:
        t = token(RSA, "r1")
        first = await auth.authenticate(bearer(t), "")
        assert isinstance(first, Authenticated)
        jwks.keys.clear()
        await auth.keysets[ISSUER].fetch()  # the key is gone from the set
        assert await auth.authenticate(bearer(t), "") is first  # cached until its exp
        assert isinstance(await auth.authenticate(bearer(token(RSA, "r1", sub="c")), ""), Rejected)
    finally:
        await auth.close()
