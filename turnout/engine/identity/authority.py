"""`Authority`: an issuer and the trust bundle in memory, and leaf issuance.

```
Authority.create(issuer, key, anchors, settings)     checks: issuer is a P-256 CA whose key
        │                                            matches, signed by one of the anchors
        v
issue(CheckedCsr, ServiceAccount, now) ─> Leaf(der, chain, valid_until, serial, sha256)
   Subject: the CSR's CN or empty; SANs: DNS identity + spiffe://<domain>/ns/<ns>/sa/<sa>
   KeyUsage digitalSignature|keyEncipherment, EKU serverAuth+clientAuth, CA:FALSE
   validity [now - skew, now + lifetime + skew], NotAfter clamped to the chain's earliest
   serial: a counter, seeded from the clock when the authority is made
```

The leaf template is Linkerd's (`pkg/tls/ca.go`). The trust bundle (1 anchor, or 2 during
an anchor rotation) is what every Certify response carries, so a proxy always holds the
anchors the control plane trusts now. Pure but for the serial counter: the time is an
argument, and nothing here reads files (`store.py`) or speaks gRPC (`engine.server`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from turnout.engine.identity.certs import (
    PrivateKey,
    certs_pem,
    fingerprint,
    is_p256,
    key_matches,
    key_usage,
    signed_by,
)
from turnout.engine.identity.csr import CheckedCsr
from turnout.engine.identity.errors import IssuerUnavailable, StoreError
from turnout.engine.identity.names import ServiceAccount, identity_name, spiffe_id
from turnout.engine.identity.settings import IdentitySettings


@dataclass(frozen=True, slots=True, kw_only=True)
class Leaf:
    """One issued certificate and what a Certify response says about it."""

    der: bytes
    chain: tuple[bytes, ...]
    """The intermediates, DER, leaf's issuer first (the anchor is not included)."""
    bundle_pem: bytes
    """The trust anchors to verify peers with, PEM."""
    valid_until: dt.datetime
    serial: int
    sha256: str
    """Hex SHA-256 of `der` (logged with every issuance)."""
    identity: str


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def check_issuer(
    issuer: x509.Certificate, key: PrivateKey, anchors: Sequence[x509.Certificate]
) -> x509.Certificate:
    """The anchor of `anchors` that signed `issuer`, after checking the issuer is a P-256 CA
    whose key is `key`; `StoreError` says what is wrong."""
    if not anchors:
        raise StoreError("bundle.pem: holds no trust anchor")
    if not (_is_ca(issuer) and is_p256(issuer)):
        raise StoreError("issuer.crt: not an ECDSA P-256 CA certificate")
    if not key_matches(issuer, key):
        raise StoreError("issuer.key: does not belong to issuer.crt")
    for anchor in anchors:
        if signed_by(issuer, anchor):
            return anchor
    raise StoreError("issuer.crt: not signed by any trust anchor in bundle.pem")


def _serial_seed(now: dt.datetime) -> int:
    """Milliseconds since the epoch, shifted so that a million leaves fit before the next
    millisecond's seed: serials from restarts of one issuer do not collide."""
    return int(now.timestamp() * 1000) << 20


@dataclass(slots=True, kw_only=True)
class Authority:
    """The CA the identity service issues with (use `create`, which checks the material)."""

    settings: IdentitySettings
    issuer: x509.Certificate
    key: PrivateKey
    anchors: tuple[x509.Certificate, ...]
    """The trust bundle: the anchor(s) leaves are verified against."""
    chain_not_after: dt.datetime
    """Earliest NotAfter of the issuer and the anchor that signed it."""
    bundle_pem: bytes
    _issuer_der: bytes
    _serials: itertools.count[int] = field(default_factory=itertools.count)

    @classmethod
    def create(
        cls,
        *,
        issuer: x509.Certificate,
        key: PrivateKey,
        anchors: Sequence[x509.Certificate],
        settings: IdentitySettings,
        now: dt.datetime,
    ) -> Authority:
        anchor = check_issuer(issuer, key, anchors)
        return cls(
            settings=settings,
            issuer=issuer,
            key=key,
            anchors=tuple(anchors),
            chain_not_after=min(issuer.not_valid_after_utc, anchor.not_valid_after_utc),
            bundle_pem=certs_pem(anchors),
            _issuer_der=issuer.public_bytes(serialization.Encoding.DER),
            _serials=itertools.count(_serial_seed(now)),
        )

    @property
    def issuer_sha256(self) -> str:
        return fingerprint(self.issuer)

    def issue(self, csr: CheckedCsr, sa: ServiceAccount, *, now: dt.datetime) -> Leaf:
        """A leaf for `sa`'s identity on the CSR's key (the CSR is already checked)."""
        s = self.settings
        skew = dt.timedelta(milliseconds=s.clock_skew_ms)
        lifetime = dt.timedelta(milliseconds=s.leaf_lifetime_ms)
        not_after = min(now + lifetime + skew, self.chain_not_after)
        if not_after <= now:
            raise IssuerUnavailable(
                f"the issuer chain expired at {self.chain_not_after.isoformat()}; rotate it"
                " (mesh identity rotate --issuer)"
            )
        name = identity_name(sa, s.domain)
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, csr.common_name)] if csr.common_name else []
        )
        sans = [x509.DNSName(name), x509.UniformResourceIdentifier(spiffe_id(sa, s.domain))]
        eku = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        serial = next(self._serials)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.issuer.subject)
            .public_key(csr.public_key)
            .serial_number(serial)
            .not_valid_before(now - skew)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
            # RFC 5280 4.2.1.6: with an empty subject the SAN extension is critical.
            .add_extension(x509.SubjectAlternativeName(sans), critical=not csr.common_name)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .sign(self.key, hashes.SHA256())
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        return Leaf(
            der=der,
            chain=(self._issuer_der,),
            bundle_pem=self.bundle_pem,
            valid_until=cert.not_valid_after_utc,
            serial=serial,
            sha256=hashlib.sha256(der).hexdigest(),
            identity=name,
        )
