"""The CA's certificates: P-256 keys, the trust anchor and the issuer, PEM in and out.

```
new_key() ─> anchor: self-signed, CA, path length 1, certSign|crlSign   ("root.identity.<domain>")
         └─> issuer: signed by an anchor, CA, path length 0             ("identity.<domain>")
                     └─> leaves (authority.py), end-entity, 24h
```

Both CA certificates carry a Subject Key Identifier, and the issuer an Authority Key
Identifier, so a verifier given two anchors of the same name (during an anchor rotation)
picks the right one. Pure functions of their arguments (`now` is passed in); nothing is
read or written here (`store.py` does the files).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PrivateKey = ec.EllipticCurvePrivateKey


def new_key() -> PrivateKey:
    """A fresh ECDSA P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_usage(*, ca: bool) -> x509.KeyUsage:
    """CA: certSign|crlSign; a leaf: digitalSignature|keyEncipherment (Linkerd's template)."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _ca_cert(
    *,
    subject: str,
    key: PrivateKey,
    signer: PrivateKey,
    signer_cert: x509.Certificate | None,
    path_length: int,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    not_after = now + lifetime
    if signer_cert is not None:
        not_after = min(not_after, signer_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name if signer_cert is None else signer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if signer_cert is not None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key())
        builder = builder.add_extension(aki, critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_anchor(
    key: PrivateKey, *, domain: str, now: dt.datetime, lifetime: dt.timedelta
) -> x509.Certificate:
    """A self-signed trust anchor (root CA) for `domain`."""
    return _ca_cert(
        subject=f"root.identity.{domain}",
        key=key,
        signer=key,
        signer_cert=None,
        path_length=1,
        now=now,
        lifetime=lifetime,
    )


def make_issuer(
    key: PrivateKey,
    *,
    anchor: x509.Certificate,
    anchor_key: PrivateKey,
    domain: str,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> x509.Certificate:
    """An issuer (intermediate CA) signed by `anchor`; it never outlives the anchor."""
    return _ca_cert(
        subject=f"identity.{domain}",
        key=key,
        signer=anchor_key,
        signer_cert=anchor,
        path_length=0,
        now=now,
        lifetime=lifetime,
    )


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer`'s key signed `cert` (names match and the signature verifies)."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    return cert.public_key() == key.public_key()


def is_p256(cert: x509.Certificate) -> bool:
    pub = cert.public_key()
    return isinstance(pub, ec.EllipticCurvePublicKey) and isinstance(pub.curve, ec.SECP256R1)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER, hex: what logs and `mesh identity status` show."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key_pem(data: bytes) -> PrivateKey:
    """A PEM private key that must be ECDSA P-256; `ValueError` otherwise."""
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 private key")
    return key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def certs_pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(cert_pem(c) for c in certs)


def load_certs_pem(data: bytes) -> Sequence[x509.Certificate]:
    """Every certificate of a PEM file; `ValueError` when there is none or one is broken."""
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError("not a PEM file of certificates") from None
