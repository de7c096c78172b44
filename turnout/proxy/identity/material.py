"""The proxy's key and CSR.

The key is ECDSA P-256, made once per process and kept in memory only (PKCS#8 when
serialised); the CSR is made once from it and sent again on every renewal, as Linkerd's
proxy does (SECURITY-REFERENCE §1.1): only the certificate rotates, never the key. The
CSR's subject is empty (a CN holds at most 64 characters and identity names are often
longer) and it carries exactly one DNS SAN: the identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from turnout.proxy.identity.names import is_identity


@dataclass(frozen=True, slots=True)
class Material:
    """One process's key and the CSR for `identity` (see the module docstring)."""

    identity: str
    key_pem: bytes = field(repr=False)
    """PKCS#8, PEM, unencrypted (never written to disk by the proxy)."""
    csr_der: bytes = field(repr=False)

    @classmethod
    def generate(cls, identity: str) -> Material:
        """A fresh key and its CSR; `ValueError` when `identity` is not an identity name."""
        if not is_identity(identity):
            raise ValueError(
                f"--identity {identity!r}: not an identity name"
                " (<sa>.<ns>.serviceaccount.identity.<domain>)"
            )
        key = ec.generate_private_key(ec.SECP256R1())
        san = x509.SubjectAlternativeName([x509.DNSName(identity)])
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(san, critical=True)  # critical: the subject is empty (RFC 5280)
            .sign(key, hashes.SHA256())
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(identity, pem, csr.public_bytes(serialization.Encoding.DER))
