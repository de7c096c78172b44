"""The checks a certificate signing request must pass before a leaf is issued for it.

```
DER (or PEM) bytes ─> parse ─> signature ─> key: ECDSA P-256 ─> SANs: exactly one DNS name,
    (InvalidRequest)  (InvalidRequest)      (PreconditionFailed) equal to the identity; no URI,
                                                                  email, IP or other names
                   ─> subject: no CN, or CN = the identity ─> CheckedCsr(public key)
```

These are Linkerd's (`checkCSR` in `pkg/identity/service.go`), with the key rule stricter
(P-256 only, the curve every proxy and the issuer use). The issuer adds the SPIFFE URI SAN
itself, so a CSR that asks for one asks for an extra SAN. Nothing else of the CSR reaches the
leaf: requested extensions and other subject attributes are ignored, so a CSR cannot ask for
`CA:TRUE` or another key usage. Pure; no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from turnout.engine.identity.errors import InvalidRequest, PreconditionFailed


@dataclass(frozen=True, slots=True)
class CheckedCsr:
    """A CSR that passed every check."""

    public_key: ec.EllipticCurvePublicKey
    common_name: str | None
    """The subject CN (equal to the identity) or None when the subject has none."""


def parse_csr(data: bytes) -> x509.CertificateSigningRequest:
    """A DER CSR (what Linkerd's proxy sends), or PEM; `InvalidRequest` when neither."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise InvalidRequest(f"certificate_signing_request: not a DER or PEM CSR ({exc})") from None


def _names(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except ValueError as exc:  # a malformed extension
        raise InvalidRequest(f"certificate_signing_request: bad extensions ({exc})") from None
    return list(ext.value)


def _describe(name: x509.GeneralName) -> str:
    kinds = {
        x509.DNSName: "DNS",
        x509.UniformResourceIdentifier: "URI",
        x509.RFC822Name: "email",
        x509.IPAddress: "IP",
    }
    return f"{kinds.get(type(name), type(name).__name__)}:{name.value}"


def _key_kind(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    return type(key).__name__.removesuffix("PublicKey")


def check_csr(csr: x509.CertificateSigningRequest, identity: str) -> CheckedCsr:
    """`csr`, checked for a leaf of `identity`; the refusal says which rule it breaks."""
    if not csr.is_signature_valid:
        raise InvalidRequest("certificate_signing_request: its signature does not verify")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise PreconditionFailed(f"CSR key is {_key_kind(key)}; only ECDSA P-256 keys are accepted")
    names = _names(csr)
    dns = [n.value for n in names if isinstance(n, x509.DNSName)]
    extra = [_describe(n) for n in names if not isinstance(n, x509.DNSName)]
    if len(dns) > 1:
        extra += [f"DNS:{d}" for d in dns if d != identity] or [f"DNS:{identity} (twice)"]
    if extra:
        raise PreconditionFailed(
            f"CSR has extra SANs {', '.join(extra)}; it must hold exactly one DNS SAN,"
            f" {identity} (the issuer adds the SPIFFE URI itself)"
        )
    if not dns:
        raise PreconditionFailed(f"CSR has no DNS SAN; it must hold exactly one, {identity}")
    if dns[0] != identity:
        raise PreconditionFailed(f"CSR is for {dns[0]}, not the requested identity {identity}")
    cns = [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if cns and (len(cns) > 1 or cns[0] != identity):
        raise PreconditionFailed(
            f"CSR subject CN {', '.join(cns)} is not the requested identity {identity}"
            " (leave the CN empty or equal to it)"
        )
    return CheckedCsr(public_key=key, common_name=cns[0] if cns else None)
