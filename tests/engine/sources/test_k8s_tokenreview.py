"""`TokenReviewVerifier` against `FakeApiServer` (k8s_fake.py) through the real `kubernetes`
client: a projected service account token becomes its account; an unknown token, one for
another audience or a user's token is refused with Linkerd's codes; an API server that does
not answer makes Certify Unavailable."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.engine.identity.identity_kit import T0, WEB, FakeClock, init_dir, mk_csr, verify
from tests.engine.sources.k8s_fake import TOKEN_REVIEWS, FakeApiServer
from turnout.engine.identity.errors import (
    IssuerUnavailable,
    PreconditionFailed,
    TokenInvalid,
    TokenNotAuthenticated,
)
from turnout.engine.identity.names import ServiceAccount
from turnout.engine.identity.service import IdentityService
from turnout.engine.identity.settings import TOKEN_AUDIENCE
from turnout.engine.identity.store import AuthorityFiles
from turnout.engine.sources.k8s import KubernetesSettings
from turnout.engine.sources.k8s.tokenreview import TokenReviewVerifier

SETTINGS = KubernetesSettings(request_timeout_s=5, connect_timeout_s=2, attempts=2)


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer([]) as fake:
        fake.add_token("web-token", "system:serviceaccount:shop:web", audiences=[TOKEN_AUDIENCE])
        fake.add_token("api-audience", "system:serviceaccount:shop:web")
        fake.add_token("alice", "alice@example.com", audiences=[TOKEN_AUDIENCE])
        yield fake


@pytest.fixture
def verifier(api: FakeApiServer) -> Iterator[TokenReviewVerifier]:
    v = TokenReviewVerifier(api.api_client(), settings=SETTINGS)
    yield v
    v.close()


async def test_a_service_account_token_is_reviewed_with_our_audience(
    api: FakeApiServer, verifier: TokenReviewVerifier
) -> None:
    assert await verifier.verify(b"web-token") == ServiceAccount(namespace="shop", name="web")
    assert api.count("POST", TOKEN_REVIEWS) == 1


@pytest.mark.parametrize(
    ("token", "error", "message"),
    [
        pytest.param(b"nope", TokenInvalid, "token lookup failed", id="unknown-token"),
        pytest.param(b"api-audience", TokenInvalid, "is invalid for the target", id="audience"),
        pytest.param(
            b"alice", TokenNotAuthenticated, "is not a service account", id="a-user-not-an-sa"
        ),
    ],
)
async def test_a_token_the_api_server_does_not_vouch_for_is_refused(
    verifier: TokenReviewVerifier, token: bytes, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await verifier.verify(token)


async def test_an_api_server_that_fails_makes_certify_unavailable(
    api: FakeApiServer, verifier: TokenReviewVerifier
) -> None:
    api.fail("POST", TOKEN_REVIEWS, status=403, times=1)
    with pytest.raises(IssuerUnavailable, match="token review failed"):
        await verifier.verify(b"web-token")


async def test_certify_in_kubernetes_mode_issues_for_the_reviewed_account_only(
    tmp_path: Path, verifier: TokenReviewVerifier
) -> None:
    clock = FakeClock()
    files = AuthorityFiles(init_dir(tmp_path / "id"), clock=clock)
    service = IdentityService(files, verifier, clock=clock)
    leaf = await service.certify(identity=WEB, token=b"web-token", csr=mk_csr())
    assert WEB in verify(leaf.der, leaf.chain, leaf.bundle_pem, at=T0 + dt.timedelta(seconds=1))
    other = "api.shop.serviceaccount.identity.cluster.local"
    with pytest.raises(PreconditionFailed, match="not the requested identity"):
        await service.certify(identity=other, token=b"web-token", csr=mk_csr(dns=[other]))
