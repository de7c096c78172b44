"""Leaves the identity service issues per second on one core (goal: >= 1,000/s).

Run: ``.venv/bin/python -m bench.identity`` (as a module: `bench/xds.py` would shadow
the `xds` protobuf package). Three figures, each the best of 3 runs:
`issue` (sign a leaf from a checked CSR: the floor), `certify` (what one Certify call costs
in-process: parse and check the CSR, verify a join token, sign), and `certify over gRPC`
(sequential unary calls to `AdsServer` on 127.0.0.1, client in the same process, so it
shares the core). Each prints leaves/s and its ratio to `issue`; the verdict is on `certify`.
CSRs are made before timing (a proxy makes its own once, at start).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from turnout.engine.identity.csr import check_csr, parse_csr
from turnout.engine.identity.names import ServiceAccount, identity_name
from turnout.engine.identity.service import IdentityService
from turnout.engine.identity.settings import IdentitySettings
from turnout.engine.identity.store import AuthorityFiles, init_store
from turnout.engine.identity.tokens import JoinTokenVerifier, issue_join_token
from turnout.engine.server import AdsServer
from turnout.engine.server.certify import certify_handler
from turnout.wire.certify import METHOD, CertifyRequest, CertifyResponse

N = 2_000
GRPC_N = 500
SA = ServiceAccount(namespace="shop", name="web")
IDENTITY = identity_name(SA, "cluster.local")


def csr_der() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.DNSName(IDENTITY)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    return (
        csr.add_extension(san, False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


def best_rate(n: int, run: object) -> float:
    assert callable(run)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return n / best


async def certify_rate(service: IdentityService, csrs: list[bytes], token: bytes) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for csr in csrs:
            await service.certify(identity=IDENTITY, token=token, csr=csr)
        best = min(best, time.perf_counter() - t0)
    return len(csrs) / best


async def grpc_rate(service: IdentityService, csrs: list[bytes], token: bytes) -> float:
    server = AdsServer(handlers=[certify_handler(service)])
    port = await server.start("127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(
                METHOD,
                request_serializer=CertifyRequest.SerializeToString,
                response_deserializer=CertifyResponse.FromString,
            )
            reqs = [
                CertifyRequest(identity=IDENTITY, token=token, certificate_signing_request=c)
                for c in csrs
            ]
            await call(reqs[0], timeout=10)
            t0 = time.perf_counter()
            for req in reqs:
                await call(req, timeout=10)
            return len(reqs) / (time.perf_counter() - t0)
    finally:
        await server.stop()


def main() -> None:
    logging.disable(logging.INFO)  # one log line per leaf is part of the service, not timed
    now = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "id"
        m = init_store(d, IdentitySettings(), now=now)
        files = AuthorityFiles(d)
        authority = files.refresh()
        assert authority is not None
        csrs = [csr_der() for _ in range(N)]
        checked = [check_csr(parse_csr(c), IDENTITY) for c in csrs]
        token = issue_join_token(m.token_key, SA, now=now, ttl=dt.timedelta(hours=1)).encode()
        service = IdentityService(files, JoinTokenVerifier(m.token_key))

        def issue_all() -> None:
            for c in checked:
                authority.issue(c, SA, now=now)

        issue = best_rate(N, issue_all)
        certify = asyncio.run(certify_rate(service, csrs, token))
        over_grpc = asyncio.run(grpc_rate(service, csrs[:GRPC_N], token))
    print("== identity: leaves per second, one core (P-256, ECDSA-SHA256)")
    print(f"  {'issue (checked CSR)':<30}{issue:>9.0f}/s   1.00x")
    print(f"  {'certify (in-process)':<30}{certify:>9.0f}/s   {certify / issue:.2f}x")
    print(f"  {'certify over gRPC, sequential':<30}{over_grpc:>9.0f}/s   {over_grpc / issue:.2f}x")
    verdict = "ok" if certify >= 1_000 else "UNDER GOAL"
    print(f"  certify: {certify:.0f} leaves/s (goal >= 1,000/s: {verdict})")


if __name__ == "__main__":
    main()
