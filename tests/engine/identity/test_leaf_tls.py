"""Leaves the service issues work for mutual TLS with Python's `ssl` (OpenSSL), as the
proxies will use them: TLS 1.3, the client checks the server's identity as its host name,
the server requires a client certificate and reads the client's SANs, both trusting only
the bundle of the Certify response. Real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import load_der_x509_certificate

from tests.engine.identity.identity_kit import API, WEB, WEB_SPIFFE, init_dir, mk_csr
from turnout.engine.identity.authority import Leaf
from turnout.engine.identity.names import ServiceAccount
from turnout.engine.identity.service import IdentityService
from turnout.engine.identity.store import AuthorityFiles, load_material
from turnout.engine.identity.tokens import JoinTokenVerifier, issue_join_token


async def leaf_files(
    service: IdentityService, key: bytes, sa: ServiceAccount, identity: str, out: Path
) -> tuple[Path, Path, Path]:
    """Certify `identity` with a fresh key; write key, chain and bundle files for `ssl`."""
    private = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    token = issue_join_token(key, sa, now=now, ttl=dt.timedelta(minutes=5)).encode()
    leaf: Leaf = await service.certify(
        identity=identity, token=token, csr=mk_csr(dns=[identity], key=private)
    )
    pem = serialization.Encoding.PEM
    chain = b"".join(
        load_der_x509_certificate(d).public_bytes(pem) for d in (leaf.der, *leaf.chain)
    )
    key_file, chain_file, bundle = (
        out / f"{sa.name}.key",
        out / f"{sa.name}.crt",
        out / "bundle.pem",
    )
    key_file.write_bytes(
        private.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    chain_file.write_bytes(chain)
    bundle.write_bytes(leaf.bundle_pem)
    return key_file, chain_file, bundle


def context(purpose: ssl.Purpose, key: Path, chain: Path, bundle: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose, cafile=str(bundle))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(chain), str(key))
    if purpose is ssl.Purpose.CLIENT_AUTH:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@pytest.fixture
def service(tmp_path: Path) -> tuple[IdentityService, bytes]:
    d = init_dir(tmp_path / "ca", now=dt.datetime.now(dt.UTC))
    key = load_material(d).token_key
    return IdentityService(AuthorityFiles(d), JoinTokenVerifier(key)), key


async def test_two_leaves_make_a_mutual_tls_connection_that_names_both_identities(
    tmp_path: Path, service: tuple[IdentityService, bytes]
) -> None:
    svc, key = service
    web = await leaf_files(svc, key, ServiceAccount(namespace="shop", name="web"), WEB, tmp_path)
    api = await leaf_files(svc, key, ServiceAccount(namespace="shop", name="api"), API, tmp_path)
    server_ctx = context(ssl.Purpose.CLIENT_AUTH, *api)
    client_ctx = context(ssl.Purpose.SERVER_AUTH, *web)
    seen: list[object] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("ssl_object").getpeercert()["subjectAltName"])
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname=API
            )
            writer.write(b"ping\n")
            assert await reader.readline() == b"ping\n"
            peer = writer.get_extra_info("ssl_object")
            assert peer.version() == "TLSv1.3"
            writer.close()
            assert seen == [(("DNS", WEB), ("URI", WEB_SPIFFE))]

            with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
                await asyncio.open_connection(
                    "127.0.0.1", port, ssl=client_ctx, server_hostname=WEB
                )
    finally:
        server.close()
        await server.wait_closed()
