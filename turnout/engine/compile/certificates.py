"""An HTTPS listener's `tls.certificateRefs` -> the certificates it serves.

Each ref resolves to a `kubernetes.io/tls` Secret whose `tls.crt` is a PEM chain (leaf first)
and whose `tls.key` is the leaf's private key; a Secret in another namespace needs a
ReferenceGrant in that namespace from the Gateway. A ref that does not resolve is left out
with a warning whose reason is the listener condition the Gateway API gives it
(`ResolvedRefs=False`): `InvalidCertificateRef` (no such Secret, not a TLS Secret, unusable
PEM, a kind other than core Secret) or `RefNotPermitted` (no grant). A listener with no usable
certificate stays in the table with no certificates: its handshakes are refused, and no
other listener is affected.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from turnout.engine import ir
from turnout.engine.compile.backends import GATEWAY_GROUP
from turnout.engine.compile.context import Ctx
from turnout.engine.diagnostics import warning
from turnout.engine.model import Loaded
from turnout.engine.model.core import TLS_SECRET_TYPE
from turnout.engine.model.gateway import Gateway, GatewayTLSConfig, SecretObjectReference

INVALID_REF = "InvalidCertificateRef"
NOT_PERMITTED = "RefNotPermitted"


def listener_tls(
    ctx: Ctx, gw: Loaded[Gateway], index: int, tls: GatewayTLSConfig | None
) -> tuple[ir.ListenerTLS, list[tuple[str, str]]]:
    """The certificates of `gw`'s listener number `index` (an HTTPS listener), and the
    (reason, message) of each ref that did not resolve (its `ResolvedRefs=False`)."""
    pairs: list[ir.CertificatePair] = []
    problems: list[tuple[str, str]] = []
    refs = tls.certificate_refs if tls is not None else []
    for j, ref in enumerate(refs):
        where = gw.field(f"spec.listeners[{index}].tls.certificateRefs[{j}]")
        pair, reason, message = _resolve(ctx, gw.obj, ref)
        if pair is None:
            ctx.report(warning(reason, message, where))
            problems.append((reason, f"certificateRefs[{j}]: {message}"))
        else:
            pairs.append(pair)
    if not refs:
        where = gw.field(f"spec.listeners[{index}].tls")
        msg = "an HTTPS listener needs tls.certificateRefs; its handshakes are refused"
        ctx.report(warning(INVALID_REF, msg, where))
        problems.append((INVALID_REF, msg))
    return ir.ListenerTLS(certificates=tuple(pairs)), problems


def _resolve(
    ctx: Ctx, gw: Gateway, ref: SecretObjectReference
) -> tuple[ir.CertificatePair | None, str, str]:
    ns = ref.namespace or gw.namespace
    what = f"Secret {ns}/{ref.name}"
    if ref.group != "" or ref.kind != "Secret":
        return (
            None,
            INVALID_REF,
            f"certificateRefs of kind {ref.group or 'core'}/{ref.kind} are not supported",
        )
    if ns != gw.namespace and not _granted(ctx, gw, ns, ref.name):
        msg = f"{what} is in another namespace and no ReferenceGrant there allows this Gateway"
        return None, NOT_PERMITTED, msg
    loaded = ctx.index.secret(ns, ref.name)
    if loaded is None:
        return None, INVALID_REF, f"{what} not found"
    secret = loaded.obj
    if secret.type != TLS_SECRET_TYPE:
        return None, INVALID_REF, f"{what} is of type {secret.type}, not {TLS_SECRET_TYPE}"
    chain, key = secret.value("tls.crt"), secret.value("tls.key")
    if not chain or not key:
        missing = "tls.crt" if not chain else "tls.key"
        return None, INVALID_REF, f"{what} has no {missing} (or it is not valid base64)"
    problem, names = check_pair(chain, key)
    if problem:
        return None, INVALID_REF, f"{what}: {problem}"
    source = ir.SourceRef(kind="Secret", namespace=ns, name=ref.name)
    pair = ir.CertificatePair(
        source=source, chain_pem=chain.decode(), key_pem=key.decode(), names=names
    )
    return pair, "", ""


def _granted(ctx: Ctx, gw: Gateway, ns: str, name: str) -> bool:
    for loaded in ctx.index.grants_in(ns):
        spec = loaded.obj.spec
        ok_from = any(
            f.group == GATEWAY_GROUP and f.kind == "Gateway" and f.namespace == gw.namespace
            for f in spec.from_
        )
        ok_to = any(
            t.group == "" and t.kind == "Secret" and (t.name is None or t.name == name)
            for t in spec.to
        )
        if ok_from and ok_to:
            return True
    return False


def check_pair(chain_pem: bytes, key_pem: bytes) -> tuple[str, tuple[str, ...]]:
    """("", the leaf's DNS names) when `chain_pem` is a PEM chain whose leaf `key_pem`
    (unencrypted PEM) belongs to; else (what is wrong, ())."""
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        return "tls.crt is not a PEM certificate chain", ()
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return "tls.key is not an unencrypted PEM private key", ()
    if not isinstance(
        key,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        return f"tls.key is a {type(key).__name__}, not an RSA, ECDSA or EdDSA key", ()
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    leaf = certs[0]
    if key.public_key().public_bytes(der, public) != leaf.public_key().public_bytes(der, public):
        return "tls.key does not belong to the first certificate of tls.crt", ()
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return "", names
