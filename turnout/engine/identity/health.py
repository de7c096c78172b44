"""The mesh CA's health: what `mesh identity status` and `mesh check` say about its certificates.

```
files (the identity directory, or the turnout-identity Secret's data)
   │ ca_from_files        bundle.pem (else anchor.crt), issuer.crt, issuer.key if present
   v
CaCerts(anchors, issuer) ──ca_findings(now)──> Finding per linkerd check line:
   trust anchors are within their validity period     ×
   trust anchors are valid for at least 60 days        ‼
   issuer cert is within its validity period           ×
   issuer cert is valid for at least 60 days           ‼
   issuer cert is issued by the trust anchor           ×
expiring(ca, now) ──> "issuer expires ... (within 60 days)" lines (`mesh identity status`)
```

Pure: the time is an argument and nothing is read here; `mesh identity status` reads the
directory (`store.load_material`), `mesh check` the Secret (`turnout.cluster.check`). The
descriptions are Linkerd's (`pkg/healthcheck/healthcheck.go`), so a reader of either tool's
output finds the same lines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509

from turnout.engine.identity.certs import fingerprint, key_matches, load_certs_pem, load_key_pem
from turnout.engine.identity.certs import signed_by as _signed_by
from turnout.engine.identity.store import ANCHOR_CRT, BUNDLE, ISSUER_CRT, ISSUER_KEY

EXPIRY_WARNING = dt.timedelta(days=60)
"""A certificate that expires sooner is flagged (linkerd check's "at least 60 days")."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CaCerts:
    """The certificates of the mesh CA (no private key is kept)."""

    anchors: tuple[x509.Certificate, ...]
    """The trusted anchors (bundle.pem: one, or two during an anchor rotation)."""
    issuer: x509.Certificate


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One check of the CA, in linkerd check's words."""

    description: str
    ok: bool
    warning: bool = False
    """When not ok: True = a warning (‼), False = a failure (×)."""
    error: str = ""
    """When not ok: what is wrong, naming the certificate."""


def ca_from_files(files: Mapping[str, bytes]) -> CaCerts:
    """The CA's certificates from `mesh identity init`'s files; `ValueError` names the file
    that is missing or broken, or an issuer.key that does not belong to issuer.crt."""

    def need(name: str) -> bytes:
        if name not in files:
            raise ValueError(f"{name}: missing")
        return files[name]

    def parse(name: str) -> Sequence[x509.Certificate]:
        try:
            return load_certs_pem(need(name))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None

    anchors = parse(BUNDLE if BUNDLE in files else ANCHOR_CRT)
    issuer = parse(ISSUER_CRT)[0]
    if ISSUER_KEY in files:
        try:
            key = load_key_pem(files[ISSUER_KEY])
        except ValueError as exc:
            raise ValueError(f"{ISSUER_KEY}: {exc}") from None
        if not key_matches(issuer, key):
            raise ValueError(f"{ISSUER_KEY}: does not belong to {ISSUER_CRT}")
    return CaCerts(anchors=tuple(anchors), issuer=issuer)


def _describe(label: str, cert: x509.Certificate) -> str:
    return f"{label} sha256={fingerprint(cert)[:16]} {cert.subject.rfc4514_string()}"


def _validity(label: str, certs: Sequence[x509.Certificate], now: dt.datetime) -> str:
    for c in certs:
        if c.not_valid_before_utc > now:
            return f"{_describe(label, c)} is not valid before {c.not_valid_before_utc.isoformat()}"
        if c.not_valid_after_utc <= now:
            return f"{_describe(label, c)} expired {c.not_valid_after_utc.isoformat()}"
    return ""


def _soon(label: str, certs: Sequence[x509.Certificate], now: dt.datetime) -> str:
    for c in certs:
        if c.not_valid_after_utc - now < EXPIRY_WARNING:
            return f"{_describe(label, c)} expires {c.not_valid_after_utc.isoformat()}"
    return ""


def _finding(description: str, error: str, *, warning: bool = False) -> Finding:
    return Finding(description=description, ok=not error, warning=warning, error=error)


def ca_findings(ca: CaCerts, *, now: dt.datetime) -> tuple[Finding, ...]:
    """Linkerd's five checks of the trust anchors and the issuer, in its order."""
    signed = any(_signed_by(ca.issuer, a) for a in ca.anchors)
    return (
        _finding(
            "trust anchors are within their validity period",
            _validity("anchor", ca.anchors, now),
        ),
        _finding(
            "trust anchors are valid for at least 60 days",
            _soon("anchor", ca.anchors, now),
            warning=True,
        ),
        _finding(
            "issuer cert is within its validity period", _validity("issuer", [ca.issuer], now)
        ),
        _finding(
            "issuer cert is valid for at least 60 days",
            _soon("issuer", [ca.issuer], now),
            warning=True,
        ),
        _finding(
            "issuer cert is issued by the trust anchor",
            "" if signed else f"{_describe('issuer', ca.issuer)} is signed by no trusted anchor",
        ),
    )


def expiring(ca: CaCerts, *, now: dt.datetime) -> list[str]:
    """One line per certificate that expires within `EXPIRY_WARNING`, issuer first."""
    return [
        f"{label} expires {c.not_valid_after_utc.isoformat()} (within 60 days)"
        for label, c in (("issuer", ca.issuer), *(("anchor", a) for a in ca.anchors))
        if c.not_valid_after_utc - now < EXPIRY_WARNING
    ]
