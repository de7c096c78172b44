"""Real X.509 certificates for tests: a CA and leaves it signs, made with `cryptography`.

`Authority()` is a fresh self-signed CA (P-256); `leaf(*names)` issues a server certificate
for those DNS names. PEM bytes go into `kubernetes.io/tls` Secrets (`secret_yaml`) and into
`ssl` clients as the trust root (`ca_pem`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Leaf:
    chain_pem: bytes
    key_pem: bytes
    serial: int


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Authority:
    def __init__(self, name: str = "turnout test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def ca_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def leaf(self, *names: str) -> Leaf:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        return Leaf(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key), serial)


def secret_yaml(namespace: str, name: str, leaf: Leaf) -> str:
    """A `kubernetes.io/tls` Secret holding `leaf`, as one YAML document (stringData)."""

    def block(pem: bytes) -> str:
        return "\n".join("      " + line for line in pem.decode().strip().splitlines())

    return (
        "apiVersion: v1\nkind: Secret\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        "type: kubernetes.io/tls\nstringData:\n"
        f"  tls.crt: |\n{block(leaf.chain_pem)}\n"
        f"  tls.key: |\n{block(leaf.key_pem)}\n"
    )
