"""The identity service on the xDS port, through a real grpcio client on 127.0.0.1:
`io.linkerd.proxy.identity.Identity/Certify`, its status codes, and `mesh serve
--identity-dir` as a real process that picks up a rotation made with `mesh identity rotate`."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from cryptography import x509

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
from tests.support.serving import lines_until_serving
from turnout.cli.main import main
from turnout.engine.identity.names import ServiceAccount
from turnout.engine.identity.service import IdentityService
from turnout.engine.identity.store import AuthorityFiles, load_material
from turnout.engine.identity.tokens import JoinTokenVerifier, issue_join_token
from turnout.engine.server import AdsServer, ServerSettings
from turnout.engine.server.certify import certify_handler
from turnout.wire.certify import METHOD, CertifyRequest, CertifyResponse

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT_S = 10.0
SA = ServiceAccount(namespace="shop", name="web")


async def certify(target: str, identity: str, token: bytes, csr: bytes) -> Any:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            METHOD,
            request_serializer=CertifyRequest.SerializeToString,
            response_deserializer=CertifyResponse.FromString,
        )
        request = CertifyRequest(identity=identity, token=token, certificate_signing_request=csr)
        return await call(request, timeout=TIMEOUT_S)


class Served:
    def __init__(self, d: Path, clock: FakeClock, target: str) -> None:
        self.dir, self.clock, self.target = d, clock, target
        self.key = load_material(d).token_key

    def token(self, sa: ServiceAccount = SA) -> bytes:
        return issue_join_token(self.key, sa, now=self.clock(), ttl=dt.timedelta(hours=1)).encode()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    d = init_dir(tmp_path / "id")
    clock = FakeClock()
    files = AuthorityFiles(d, clock=clock)
    verifier = JoinTokenVerifier(load_material(d).token_key, clock=clock)
    service = IdentityService(files, verifier, clock=clock, reload_interval_ms=0)

    srv = AdsServer(
        settings=ServerSettings(stop_grace_ms=0, stop_timeout_ms=2_000),
        handlers=[certify_handler(service)],
    )
    port = await srv.start("127.0.0.1", 0)
    try:
        yield Served(d, clock, f"127.0.0.1:{port}")
    finally:
        await srv.stop()


async def test_certify_answers_a_leaf_its_chain_the_bundle_and_valid_until(served: Served) -> None:
    resp = await certify(served.target, WEB, served.token(), mk_csr())
    chain = list(resp.intermediate_certificates)
    assert verify(resp.leaf_certificate, chain, resp.trust_anchors, at=T0) == [WEB, WEB_SPIFFE]
    leaf = x509.load_der_x509_certificate(resp.leaf_certificate)
    assert resp.valid_until.ToDatetime(tzinfo=dt.UTC) == leaf.not_valid_after_utc
    assert resp.trust_anchors == (served.dir / "bundle.pem").read_bytes()


@pytest.mark.parametrize(
    ("identity", "token", "csr", "code", "detail"),
    [
        pytest.param(
            API,
            "own",
            mk_csr(dns=[API]),
            grpc.StatusCode.FAILED_PRECONDITION,
            "not the requested identity",
            id="other-identity",
        ),
        pytest.param(
            WEB,
            "bad",
            mk_csr(),
            grpc.StatusCode.INVALID_ARGUMENT,
            "not a compact JWT",
            id="bad-token",
        ),
        pytest.param(
            WEB,
            "own",
            mk_csr(uris=[WEB_SPIFFE]),
            grpc.StatusCode.FAILED_PRECONDITION,
            "extra SANs URI:",
            id="extra-san",
        ),
        pytest.param(
            WEB,
            "own",
            b"junk",
            grpc.StatusCode.INVALID_ARGUMENT,
            "not a DER or PEM CSR",
            id="junk-csr",
        ),
    ],
)
async def test_a_refusal_has_linkerds_status_code_and_says_why(
    served: Served, identity: str, token: str, csr: bytes, code: grpc.StatusCode, detail: str
) -> None:
    tok = served.token() if token == "own" else b"x"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await certify(served.target, identity, tok, csr)
    assert info.value.code() == code
    assert detail in str(info.value.details())


async def test_no_valid_issuer_is_unavailable(served: Served, tmp_path: Path) -> None:
    assert (await certify(served.target, WEB, served.token(), mk_csr())).leaf_certificate
    (served.dir / "bundle.pem").write_bytes(b"")
    fresh = AuthorityFiles(served.dir)
    assert fresh.refresh() is None
    # The running service keeps its last good issuer; a new one has none: Unavailable.
    service = IdentityService(fresh, JoinTokenVerifier(served.key, clock=served.clock))

    srv = AdsServer(settings=ServerSettings(stop_grace_ms=0), handlers=[certify_handler(service)])
    port = await srv.start("127.0.0.1", 0)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await certify(f"127.0.0.1:{port}", WEB, served.token(), mk_csr())
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "bundle.pem" in str(info.value.details())
        ok = await certify(served.target, WEB, served.token(), mk_csr())
        assert ok.leaf_certificate
    finally:
        await srv.stop()


async def test_serve_with_identity_dir_certifies_and_takes_a_rotation_without_restart(
    tmp_path: Path,
) -> None:
    (tmp_path / "manifests").mkdir()
    d = tmp_path / "id"
    assert main(["identity", "init", "--dir", str(d)], stdout=io.StringIO()) == 0
    out = io.StringIO()
    argv = ["identity", "token", "--dir", str(d), "-n", "shop", "--service-account", "web"]
    assert main(argv, stdout=out, stderr=io.StringIO()) == 0
    token = out.getvalue().strip().encode()
    code = "import sys; from turnout.cli.main import main; sys.exit(main(sys.argv[1:]))"
    serve = ["serve", "--dir", str(tmp_path / "manifests"), "--identity-dir", str(d)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *serve, "--xds", "127.0.0.1:0", "--admin", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        lines = await lines_until_serving(proc, timeout_s=TIMEOUT_S)
        xds = lines[0].rsplit(" ", 1)[1]
        assert lines[1].startswith("identity service on the xds port: trust domain cluster.local")
        first = await certify(xds, WEB, token, mk_csr())
        assert len(x509.load_pem_x509_certificates(first.trust_anchors)) == 1

        rotate = ["identity", "rotate", "--dir", str(d), "--anchor"]
        assert main(rotate, stdout=io.StringIO(), stderr=io.StringIO()) == 0
        async with asyncio.timeout(TIMEOUT_S):  # the service looks at the files once a second
            while True:
                second = await certify(xds, WEB, token, mk_csr())
                if len(x509.load_pem_x509_certificates(second.trust_anchors)) == 2:
                    break
                await asyncio.sleep(0.1)
        now = dt.datetime.now(dt.UTC)
        assert verify(first.leaf_certificate, first.intermediate_certificates,
                      second.trust_anchors, at=now)  # fmt: skip
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
