"""Identity names, and how an identity is read from a peer's certificate (no crypto
imports: the request path and the CLI use these).

A peer's identity is the first SAN that parses as one (Linkerd's verifier,
SECURITY-REFERENCE §1.4): a DNS name ``<sa>.<ns>.serviceaccount.identity.<domain>`` or a
SPIFFE URI ``spiffe://<domain>/ns/<ns>/sa/<sa>``.
"""

from __future__ import annotations

import re

_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_DOMAIN = rf"{_LABEL}(\.{_LABEL})*"
_DNS_ID = re.compile(rf"{_LABEL}\.{_LABEL}\.serviceaccount\.identity\.{_DOMAIN}")
_SPIFFE_ID = re.compile(rf"spiffe://{_DOMAIN}/ns/{_LABEL}/sa/{_LABEL}")


def is_identity(name: str) -> bool:
    """`name` is a DNS-form identity (``web.shop.serviceaccount.identity.cluster.local``)."""
    return len(name) <= 253 and _DNS_ID.fullmatch(name) is not None


def identity_of(sans: object) -> str:
    """The first SAN of `getpeercert()["subjectAltName"]` that is an identity ("": none)."""
    if not isinstance(sans, tuple):
        return ""
    for kind, value in sans:
        if kind == "DNS" and is_identity(value):
            return str(value)
        if kind == "URI" and _SPIFFE_ID.fullmatch(value):
            return str(value)
    return ""


def peer_identity(ssl_object: object) -> str:
    """The verified peer identity of a TLS connection ("": no certificate or none in it).
    `ssl_object` is the transport's ``ssl_object`` (asyncio's `ssl.SSLObject` or uvloop's
    alike)."""
    getpeercert = getattr(ssl_object, "getpeercert", None)
    cert = getpeercert() if getpeercert is not None else None
    if not cert:
        return ""
    return identity_of(cert.get("subjectAltName"))


def sans_of(ssl_object: object) -> tuple[str, ...]:
    """Every DNS and URI SAN of the peer's certificate (for checks and error messages)."""
    getpeercert = getattr(ssl_object, "getpeercert", None)
    cert = getpeercert() if getpeercert is not None else None
    if not cert:
        return ()
    return tuple(v for k, v in cert.get("subjectAltName", ()) if k in ("DNS", "URI"))
