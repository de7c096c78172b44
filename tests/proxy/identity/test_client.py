"""The proxy's identity client against a real Certify service on 127.0.0.1: the CSR it
sends, the leaf it installs, renewals, refusals and the retry schedule."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.proxy.identity.kit import API, WEB, identity_service
from turnout.proxy.identity.client import CertifyError, IdentityClient
from turnout.proxy.identity.material import Material
from turnout.proxy.identity.names import identity_of
from turnout.proxy.identity.state import IdentityState, refresh_in
from turnout.proxy.metrics import ProxyMetrics


def test_material_is_a_p256_pkcs8_key_and_a_csr_with_one_dns_san_and_no_subject() -> None:
    m = Material.generate(WEB)
    key = load_pem_private_key(m.key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert m.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    csr = x509.load_der_x509_csr(m.csr_der)
    assert csr.is_signature_valid and len(csr.subject) == 0
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.DNSName) == [WEB]
    assert len(list(san.value)) == 1


def test_material_refuses_a_name_that_is_not_an_identity() -> None:
    with pytest.raises(ValueError, match="not an identity name"):
        Material.generate("web.shop.svc.cluster.local")


def test_refresh_is_70_percent_of_what_is_left_clamped_to_10s_and_24h() -> None:
    assert refresh_in(1000.0 + 24 * 3600, 1000.0) == pytest.approx(0.7 * 24 * 3600)
    assert refresh_in(1000.0 + 5, 1000.0) == 10.0
    assert refresh_in(1000.0 - 5, 1000.0) == 10.0  # expired: the minimum
    assert refresh_in(1000.0 + 10 * 24 * 3600, 1000.0) == 24 * 3600.0


def test_the_first_san_that_is_an_identity_names_the_peer() -> None:
    spiffe = "spiffe://cluster.local/ns/shop/sa/web"
    assert identity_of((("DNS", "example.com"), ("DNS", WEB), ("URI", spiffe))) == WEB
    assert identity_of((("URI", spiffe), ("DNS", WEB))) == spiffe
    assert identity_of((("DNS", "example.com"),)) == ""
    assert identity_of(None) == ""


async def test_a_leaf_from_certify_is_installed_with_server_and_client_contexts(
    tmp_path: Path,
) -> None:
    async with identity_service(tmp_path) as ca:
        state = IdentityState(Material.generate(WEB))
        metrics = ProxyMetrics(namespace="shop", workload_name="web")
        client = IdentityClient(
            state,
            target=ca.target,
            token_file=ca.token_file("web"),
            on_issued=lambda i: metrics.identity_issued(i.valid_until),
        )
        issued = await client.certify_once()
    assert state.issued is issued and client.ready.is_set()
    leaf = x509.load_der_x509_certificate(issued.leaf_der)
    assert leaf.public_key() == load_pem_private_key(state.material.key_pem, None).public_key()
    assert issued.bundle_pem == ca.bundle() and len(issued.chain_der) == 1
    assert isinstance(state.server_context, ssl.SSLContext)
    assert state.server_context.verify_mode == ssl.CERT_OPTIONAL
    assert state.client_context is not None and state.client_context.check_hostname
    text = metrics.render()
    expiry = int(leaf.not_valid_after_utc.timestamp())
    assert (
        f'identity_cert_expiration_timestamp_seconds{{namespace="shop",deployment="web"}} {expiry}\n'
        in text
    )
    assert 'identity_cert_refresh_count{namespace="shop",deployment="web"} 1\n' in text


async def test_a_token_for_another_account_is_refused_and_nothing_installed(
    tmp_path: Path,
) -> None:
    async with identity_service(tmp_path) as ca:
        state = IdentityState(Material.generate(WEB))
        client = IdentityClient(state, target=ca.target, token_file=ca.token_file("api"))
        with pytest.raises(CertifyError, match="FAILED_PRECONDITION"):
            await client.certify_once()
    assert state.issued is None and state.server_context is None
    assert client.next_delay() == 10.0  # no leaf yet: retry at the minimum


async def test_a_missing_token_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    state = IdentityState(Material.generate(API))
    client = IdentityClient(state, target="127.0.0.1:1", token_file=tmp_path / "nope")
    with pytest.raises(CertifyError, match="nope"):
        await client.certify_once()


async def test_the_client_renews_and_each_renewal_installs_new_contexts(tmp_path: Path) -> None:
    async with identity_service(tmp_path) as ca:
        state = IdentityState(Material.generate(WEB))
        seen: list[int] = []
        client = IdentityClient(
            state,
            target=ca.target,
            token_file=ca.token_file("web"),
            on_issued=lambda i: seen.append(i.serial),
            min_refresh_s=0.05,
            max_refresh_s=0.1,  # a 24h leaf renewed every 100 ms
        )
        task = asyncio.create_task(client.run())
        try:
            await asyncio.wait_for(client.ready.wait(), 10)
            first = state.server_context
            async with asyncio.timeout(10):
                while len(seen) < 3:
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
    assert seen == sorted(set(seen))  # a new leaf each time
    assert state.server_context is not first
    assert state.issued is not None and state.issued.serial == seen[-1]
