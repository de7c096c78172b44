"""How a workload proves who it is: the `TokenVerifier` seam and the embedded mode's join tokens.

```
Certify(token) ─> TokenVerifier.verify(token) ─> ServiceAccount ─ must equal the requested
                   ├── JoinTokenVerifier (here): an HS256 JWT signed with DIR/token.key
                   └── TokenReviewVerifier (engine.sources.k8s): the API server's TokenReview
```

A join token is a compact JWT (RFC 7519) with `alg: HS256`, made by `mesh identity token`:
``{"iss": "turnout-identity", "aud": "identity.turnout.dev", "sub":
"system:serviceaccount:NS:SA", "iat": ..., "exp": ...}``, the same subject and audience a
projected service account token has, so both modes yield a `ServiceAccount` the same way.
Only HS256 is accepted (the header's `alg` is checked, never trusted), the signature is
compared in constant time, and the expiry is exact (no leeway: the TTL is the operator's
choice). Standard library only; `now` is an argument.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from typing import Protocol

from turnout.engine.identity.clock import Clock, utc_now
from turnout.engine.identity.errors import TokenInvalid
from turnout.engine.identity.names import ServiceAccount, parse_username
from turnout.engine.identity.settings import TOKEN_AUDIENCE

ISSUER = "turnout-identity"
_HEADER = {"alg": "HS256", "typ": "JWT"}


class TokenVerifier(Protocol):
    """Turns a workload's token into the service account it proves; raises `TokenInvalid`
    (InvalidArgument), `TokenNotAuthenticated` (FailedPrecondition) or `IssuerUnavailable`
    (the authority that checks tokens cannot be reached)."""

    async def verify(self, token: bytes) -> ServiceAccount: ...


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, signing_input: str) -> bytes:
    return hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()


def issue_join_token(key: bytes, sa: ServiceAccount, *, now: dt.datetime, ttl: dt.timedelta) -> str:
    """A join token for `sa`, valid from `now` for `ttl`."""
    claims = {
        "iss": ISSUER,
        "aud": TOKEN_AUDIENCE,
        "sub": sa.username,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    head = _b64(json.dumps(_HEADER, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signing_input = f"{head}.{body}"
    return f"{signing_input}.{_b64(_mac(key, signing_input))}"


def _claims(token: str) -> tuple[dict[str, object], dict[str, object], str, bytes]:
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenInvalid("token: not a compact JWT (want header.claims.signature)")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
    except (ValueError, binascii.Error):
        raise TokenInvalid("token: header, claims or signature is not base64url JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenInvalid("token: header and claims must be JSON objects")
    return header, claims, f"{parts[0]}.{parts[1]}", signature


def verify_join_token(key: bytes, token: str, *, now: dt.datetime) -> ServiceAccount:
    """The service account a join token names, once its signature, audience and expiry are
    checked; `TokenInvalid` says which check failed."""
    header, claims, signing_input, signature = _claims(token)
    if header.get("alg") != "HS256":
        raise TokenInvalid(f"token: algorithm {header.get('alg')!r} is not accepted (HS256)")
    if not hmac.compare_digest(signature, _mac(key, signing_input)):
        raise TokenInvalid("token: bad signature (not issued by this control plane)")
    aud = claims.get("aud")
    if aud != TOKEN_AUDIENCE and not (isinstance(aud, list) and TOKEN_AUDIENCE in aud):
        raise TokenInvalid(f"token: audience {aud!r} is not {TOKEN_AUDIENCE}")
    exp = claims.get("exp")
    if not isinstance(exp, int):
        raise TokenInvalid("token: no expiry (exp)")
    if now.timestamp() >= exp:
        when = dt.datetime.fromtimestamp(exp, dt.UTC).isoformat()
        raise TokenInvalid(f"token: expired at {when}")
    try:
        return parse_username(str(claims.get("sub")))
    except ValueError as exc:
        raise TokenInvalid(f"token: sub: {exc}") from None


class JoinTokenVerifier:
    """`TokenVerifier` of the embedded mode: join tokens signed with `key` (DIR/token.key)."""

    def __init__(self, key: bytes | None, *, clock: Clock = utc_now) -> None:
        self._key = key
        self._clock = clock

    async def verify(self, token: bytes) -> ServiceAccount:
        if self._key is None:
            raise TokenInvalid("token: this control plane has no join token key")
        try:
            text = token.decode("ascii").strip()
        except UnicodeDecodeError:
            raise TokenInvalid("token: not ASCII") from None
        return verify_join_token(self._key, text, now=self._clock())
