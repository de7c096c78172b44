"""Builders for the identity tests: CSRs of every shape, a fake clock, an initialised CA
directory, and a leaf verifier (`cryptography.x509.verification`, as a peer would verify).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from turnout.engine.identity.settings import IdentitySettings
from turnout.engine.identity.store import init_store

T0 = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.UTC)
WEB = "web.shop.serviceaccount.identity.cluster.local"
WEB_SPIFFE = "spiffe://cluster.local/ns/shop/sa/web"
API = "api.shop.serviceaccount.identity.cluster.local"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def mk_csr(
    *,
    dns: Sequence[str] = (WEB,),
    uris: Sequence[str] = (),
    ips: Sequence[str] = (),
    emails: Sequence[str] = (),
    cn: str | None = None,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
) -> bytes:
    """A DER CSR signed by `key` (a fresh P-256 key by default) with these SANs."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    names += [x509.RFC822Name(e) for e in emails]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def init_dir(
    path: Path, settings: IdentitySettings | None = None, *, now: dt.datetime = T0
) -> Path:
    """An initialised CA directory (default settings unless given)."""
    init_store(path, settings or IdentitySettings(), now=now)
    return path


def verify(
    leaf_der: bytes, chain_der: Sequence[bytes], bundle_pem: bytes, *, at: dt.datetime
) -> list[str]:
    """The SANs of a leaf that verifies as a client certificate against `bundle_pem` at
    `at`; raises `VerificationError` when it does not."""
    store = Store(x509.load_pem_x509_certificates(bundle_pem))
    verifier = PolicyBuilder().store(store).time(at).build_client_verifier()
    verified = verifier.verify(
        x509.load_der_x509_certificate(leaf_der),
        [x509.load_der_x509_certificate(c) for c in chain_der],
    )
    return [str(s.value) for s in verified.subjects or ()]


def verifies(
    leaf_der: bytes, chain_der: Sequence[bytes], bundle_pem: bytes, *, at: dt.datetime
) -> bool:
    try:
        verify(leaf_der, chain_der, bundle_pem, at=at)
    except x509.verification.VerificationError:
        return False
    return True
