"""Defaults of the CA and the identity service (`DEFAULT_*`), in one place.

Every duration is an `int` in milliseconds named `*_ms`, as everywhere in Turnout; X.509
validity has second granularity, so they are multiples of 1,000.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TRUST_DOMAIN = "cluster.local"
"""`mesh identity init --domain`: the identity names' and SPIFFE ids' trust domain."""

DEFAULT_LEAF_LIFETIME_MS = 24 * 3_600_000
"""`--lifetime`: a leaf's validity (Linkerd's `issuanceLifetime`, 24h)."""

DEFAULT_CLOCK_SKEW_MS = 20_000
"""Allowance on both ends of a leaf's validity (Linkerd's Helm `clockSkewAllowance`)."""

DEFAULT_ANCHOR_LIFETIME_MS = 10 * 365 * 24 * 3_600_000
"""A generated trust anchor: 10 years (Linkerd recommends supplying a long-lived one)."""

DEFAULT_ISSUER_LIFETIME_MS = 365 * 24 * 3_600_000
"""A generated issuer: 8760h, as in Linkerd's certificate task."""

DEFAULT_JOIN_TOKEN_TTL_MS = 24 * 3_600_000
"""`mesh identity token --ttl`."""

DEFAULT_RELOAD_INTERVAL_MS = 1_000
"""The serving side looks at the directory's files at most this often (on a Certify call),
so a rotation reaches new leaves within a second; 0 = on every call (tests)."""

TOKEN_AUDIENCE = "identity.turnout.dev"
"""Audience of the tokens the identity service accepts: join tokens carry it, and a
TokenReview asks for it (Linkerd's is ``identity.l5d.io``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentitySettings:
    """What the CA's `config.json` holds."""

    domain: str = DEFAULT_TRUST_DOMAIN
    leaf_lifetime_ms: int = DEFAULT_LEAF_LIFETIME_MS
    clock_skew_ms: int = DEFAULT_CLOCK_SKEW_MS
    anchor_lifetime_ms: int = DEFAULT_ANCHOR_LIFETIME_MS
    issuer_lifetime_ms: int = DEFAULT_ISSUER_LIFETIME_MS
