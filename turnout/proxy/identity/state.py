"""`IdentityState`: the current leaf and the TLS contexts made from it.

```
Issued (leaf DER, chain DER, bundle PEM, valid_until) ─► install ─► server_context
                                                                  ├► client_context
                                                                  └► h2_client_context
```

Both contexts are rebuilt on every `install` and replace the old ones in one assignment:
a handshake that has begun keeps the context it got, the next one takes the new context
(rotation without a restart; `ssl` cannot remove a CA from a context, so a bundle change
needs a new one anyway, SECURITY-REFERENCE §5.2).

- Server: TLS 1.3, ALPN h2 and http/1.1 (a client offering h2 is served HTTP/2:
  `mesh_tcp.MeshSplit`, docs/http2.md), the leaf and its chain, client certificates requested
  (`CERT_OPTIONAL`: a meshed client without one still gets TLS) and verified against the
  bundle.
- Client: TLS 1.3, the bundle as the only CA, the leaf presented, the server's name
  checked against the expected identity (`server_hostname=`; `ssl` matches DNS SANs);
  ALPN http/1.1, or h2 for `h2_client_context` (HTTP/2 to a meshed endpoint).
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from turnout.proxy.identity.material import Material
from turnout.proxy.identity.names import peer_identity
from turnout.proxy.transport.tls import Pair, load_pair

log = logging.getLogger(__name__)

MIN_REFRESH_S = 10.0
MAX_REFRESH_S = 24 * 3600.0


def refresh_in(
    valid_until: float, now: float, *, lo: float = MIN_REFRESH_S, hi: float = MAX_REFRESH_S
) -> float:
    """Seconds until the next renewal: 70% of the validity left, clamped to [lo, hi]
    (Linkerd's `refresh_in`); `lo` once the certificate has expired."""
    return min(max(0.7 * (valid_until - now), lo), hi)


@dataclass(frozen=True, slots=True)
class Issued:
    """One Certify answer, checked (see `Issued.parse`)."""

    leaf_der: bytes = field(repr=False)
    chain_der: tuple[bytes, ...] = field(repr=False)
    bundle_pem: bytes = field(repr=False)
    valid_until: float
    """The leaf's NotAfter, POSIX seconds."""
    serial: int

    @classmethod
    def parse(
        cls, leaf: bytes, chain: list[bytes], bundle: bytes, *, identity: str, now: float
    ) -> Issued:
        """`ValueError` naming what is wrong: a leaf that does not parse, is not for
        `identity`, has expired; an empty bundle."""
        try:
            cert = x509.load_der_x509_certificate(leaf)
            for c in chain:
                x509.load_der_x509_certificate(c)
            anchors = x509.load_pem_x509_certificates(bundle)
        except ValueError as exc:
            raise ValueError(f"certify response: {exc}") from exc
        if not anchors:
            raise ValueError("certify response: trust_anchors holds no certificate")
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = sans.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            dns = []
        if identity not in dns:
            raise ValueError(f"certify response: leaf is for {dns}, not {identity}")
        until = cert.not_valid_after_utc.timestamp()
        if until <= now:
            raise ValueError(
                f"certify response: leaf expired at {cert.not_valid_after_utc.isoformat()}"
            )
        return cls(leaf, tuple(chain), bundle, until, cert.serial_number)


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


class IdentityState:
    """The process's identity: its `Material` and, once a leaf is installed, its contexts."""

    __slots__ = ("client_context", "h2_client_context", "issued", "material", "server_context")

    def __init__(self, material: Material) -> None:
        self.material = material
        self.issued: Issued | None = None
        self.server_context: ssl.SSLContext | None = None
        """None until the first leaf: TLS clients are then refused, plaintext served."""
        self.client_context: ssl.SSLContext | None = None
        self.h2_client_context: ssl.SSLContext | None = None
        """As `client_context`, offering ALPN h2 only: for HTTP/2 to a meshed endpoint."""

    @property
    def identity(self) -> str:
        return self.material.identity

    def peer_identity(self, ssl_object: object) -> str:
        """`MeshTls`'s: the first identity SAN of the peer's verified certificate."""
        return peer_identity(ssl_object)

    def install(self, issued: Issued) -> None:
        """New contexts for `issued`; `ssl.SSLError` (the old ones stay) when it does not load."""
        pair = Pair(
            _pem(issued.leaf_der) + b"".join(_pem(c) for c in issued.chain_der),
            self.material.key_pem,
        )
        bundle = issued.bundle_pem.decode("ascii")
        server = _context(ssl.PROTOCOL_TLS_SERVER, pair, bundle, ["h2", "http/1.1"])
        server.verify_mode = ssl.CERT_OPTIONAL
        client = _context(ssl.PROTOCOL_TLS_CLIENT, pair, bundle, ["http/1.1"])
        client.check_hostname = True
        client.verify_mode = ssl.CERT_REQUIRED
        h2 = _context(ssl.PROTOCOL_TLS_CLIENT, pair, bundle, ["h2"])
        h2.check_hostname = True
        h2.verify_mode = ssl.CERT_REQUIRED
        self.server_context, self.client_context, self.issued = server, client, issued
        self.h2_client_context = h2
        log.info(
            "identity certificate installed identity=%s serial=%d valid_until=%s",
            self.identity,
            issued.serial,
            dt.datetime.fromtimestamp(issued.valid_until, dt.UTC).isoformat(),
        )


def _context(protocol: int, pair: Pair, bundle: str, alpn: list[str]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.options |= ssl.OP_NO_TICKET
    if protocol == ssl.PROTOCOL_TLS_SERVER:
        ctx.num_tickets = 0
    ctx.set_alpn_protocols(alpn)
    load_pair(ctx, pair)
    ctx.load_verify_locations(cadata=bundle)
    return ctx
