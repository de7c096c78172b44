"""`IdentityService.certify` with real crypto: the leaf it issues, and every refusal of
Linkerd's `checkCSR` (plus ours: P-256 only, the URI SAN is the issuer's to add)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.engine.identity.identity_kit import (
    API,
    T0,
    WEB,
    WEB_SPIFFE,
    FakeClock,
    init_dir,
    mk_csr,
    verify,
)
from turnout.engine.identity.errors import (
    CertifyRefused,
    InvalidRequest,
    IssuerUnavailable,
    PreconditionFailed,
    TokenInvalid,
)
from turnout.engine.identity.names import ServiceAccount
from turnout.engine.identity.service import IdentityService
from turnout.engine.identity.settings import IdentitySettings
from turnout.engine.identity.store import AuthorityFiles, load_material
from turnout.engine.identity.tokens import JoinTokenVerifier, issue_join_token

SHOP_WEB = ServiceAccount(namespace="shop", name="web")


class Ca:
    """An initialised directory, its service and a join token maker, on one fake clock."""

    def __init__(self, path: Path, settings: IdentitySettings | None = None) -> None:
        self.dir = init_dir(path, settings)
        self.clock = FakeClock()
        self.key = load_material(self.dir).token_key
        self.service = IdentityService(
            AuthorityFiles(self.dir, clock=self.clock),
            JoinTokenVerifier(self.key, clock=self.clock),
            clock=self.clock,
            reload_interval_ms=0,
        )

    def token(self, sa: ServiceAccount = SHOP_WEB, *, ttl_s: int = 3600) -> bytes:
        return issue_join_token(
            self.key, sa, now=self.clock(), ttl=dt.timedelta(seconds=ttl_s)
        ).encode()


@pytest.fixture
def ca(tmp_path: Path) -> Ca:
    return Ca(tmp_path / "id")


async def test_a_csr_for_its_own_identity_gets_a_leaf_that_verifies_against_the_bundle(
    ca: Ca,
) -> None:
    leaf = await ca.service.certify(identity=WEB, token=ca.token(), csr=mk_csr())
    assert verify(leaf.der, leaf.chain, leaf.bundle_pem, at=T0) == [WEB, WEB_SPIFFE]
    cert = x509.load_der_x509_certificate(leaf.der)
    assert cert.subject == x509.Name([])
    assert cert.not_valid_before_utc == T0 - dt.timedelta(seconds=20)
    assert cert.not_valid_after_utc == T0 + dt.timedelta(hours=24, seconds=20)
    assert leaf.valid_until == cert.not_valid_after_utc
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (ku.digital_signature, ku.key_encipherment, ku.key_cert_sign) == (True, True, False)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical, "RFC 5280: an empty subject makes the SAN extension critical"


async def test_serials_increase_and_the_issuance_is_logged_with_the_leaf_sha256(
    ca: Ca, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="turnout.engine.identity.service")
    first = await ca.service.certify(identity=WEB, token=ca.token(), csr=mk_csr())
    second = await ca.service.certify(identity=WEB, token=ca.token(), csr=mk_csr())
    assert second.serial == first.serial + 1
    assert f"sha256={second.sha256}" in caplog.text
    assert f"identity leaf issued identity={WEB}" in caplog.text


async def test_a_cn_equal_to_the_identity_is_kept(ca: Ca) -> None:
    name = "a.b.serviceaccount.identity.cluster.local"
    token = ca.token(ServiceAccount(namespace="b", name="a"))
    leaf = await ca.service.certify(identity=name, token=token, csr=mk_csr(dns=[name], cn=name))
    cert = x509.load_der_x509_certificate(leaf.der)
    assert cert.subject.rfc4514_string() == f"CN={name}"


async def test_the_lifetime_is_configurable_and_not_after_is_clamped_to_the_issuer(
    tmp_path: Path,
) -> None:
    hour = 3_600_000
    ca = Ca(
        tmp_path / "id", IdentitySettings(leaf_lifetime_ms=2 * hour, issuer_lifetime_ms=3 * hour)
    )
    leaf = await ca.service.certify(identity=WEB, token=ca.token(), csr=mk_csr())
    assert leaf.valid_until == T0 + dt.timedelta(hours=2, seconds=20)
    ca.clock.advance(hours=2)  # the issuer (made at T0, 3h) has 1h left; the leaf would be 2h
    leaf = await ca.service.certify(identity=WEB, token=ca.token(), csr=mk_csr())
    issuer = x509.load_der_x509_certificate(leaf.chain[0])
    assert leaf.valid_until == issuer.not_valid_after_utc == T0 + dt.timedelta(hours=3)
    ca.clock.advance(hours=1, seconds=1)
    with pytest.raises(IssuerUnavailable, match="issuer chain expired"):
        await ca.service.certify(identity=WEB, token=ca.token(), csr=mk_csr())


P384 = ec.generate_private_key(ec.SECP384R1())
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(
    ("identity", "csr", "error", "message"),
    [
        pytest.param(
            API,
            mk_csr(dns=[API]),
            PreconditionFailed,
            "token is service account shop/web",
            id="csr-for-another-identity",
        ),
        pytest.param(
            WEB,
            mk_csr(dns=[API]),
            PreconditionFailed,
            f"CSR is for {API}, not",
            id="csr-names-another-identity",
        ),
        pytest.param(
            WEB,
            mk_csr(dns=[WEB, API]),
            PreconditionFailed,
            f"extra SANs DNS:{API}",
            id="extra-dns-san",
        ),
        pytest.param(
            WEB,
            mk_csr(uris=[WEB_SPIFFE]),
            PreconditionFailed,
            f"extra SANs URI:{WEB_SPIFFE}",
            id="uri-san-is-the-issuers-to-add",
        ),
        pytest.param(
            WEB,
            mk_csr(ips=["10.0.0.1"]),
            PreconditionFailed,
            "extra SANs IP:10.0.0.1",
            id="ip-san",
        ),
        pytest.param(
            WEB,
            mk_csr(emails=["a@b.c"]),
            PreconditionFailed,
            "extra SANs email:a@b.c",
            id="email-san",
        ),
        pytest.param(WEB, mk_csr(dns=[]), PreconditionFailed, "no DNS SAN", id="no-san"),
        pytest.param(
            WEB, mk_csr(cn="web"), PreconditionFailed, "CSR subject CN web is not", id="wrong-cn"
        ),
        pytest.param(
            WEB,
            mk_csr(key=RSA),
            PreconditionFailed,
            "CSR key is RSA 2048; only ECDSA P-256",
            id="rsa-key",
        ),
        pytest.param(WEB, mk_csr(key=P384), PreconditionFailed, "ECDSA secp384r1", id="p384-key"),
        pytest.param(WEB, b"\x30\x03junk", InvalidRequest, "not a DER or PEM CSR", id="junk"),
        pytest.param(
            "web.shop.svc.cluster.local",
            mk_csr(),
            InvalidRequest,
            "is not of the form",
            id="not-an-identity-name",
        ),
        pytest.param(
            "web.shop.serviceaccount.identity.example.org",
            mk_csr(),
            InvalidRequest,
            "trust domain cluster.local",
            id="other-trust-domain",
        ),
    ],
)
async def test_a_bad_request_is_refused_with_linkerds_code_and_a_clear_reason(
    ca: Ca, identity: str, csr: bytes, error: type[CertifyRefused], message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        await ca.service.certify(identity=identity, token=ca.token(), csr=csr)
    assert info.value.code in ("InvalidArgument", "FailedPrecondition")
    assert ca.service.issued == 0 and ca.service.refused == 1


async def test_bad_and_expired_tokens_are_refused(ca: Ca, tmp_path: Path) -> None:
    other = Ca(tmp_path / "other")
    cases = {
        b"not-a-jwt": "not a compact JWT",
        other.token(): "bad signature",
        ca.token(ttl_s=60): "expired at",
        b"": "token: empty",
    }
    ca.clock.advance(seconds=30)
    fresh = ca.token(ttl_s=60)
    ca.clock.advance(seconds=31)
    for token, message in cases.items():
        with pytest.raises(InvalidRequest, match=message) as info:
            await ca.service.certify(identity=WEB, token=token, csr=mk_csr())
        assert info.value.code == "InvalidArgument"
    assert (await ca.service.certify(identity=WEB, token=fresh, csr=mk_csr())).identity == WEB
    body = fresh.decode().split(".")[1]
    with pytest.raises(TokenInvalid, match="algorithm 'none'"):
        none = "eyJhbGciOiJub25lIn0"  # {"alg":"none"}
        await ca.service.certify(identity=WEB, token=f"{none}.{body}.".encode(), csr=mk_csr())
