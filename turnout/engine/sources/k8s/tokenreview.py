"""`TokenReviewVerifier`: the Kubernetes mode's `TokenVerifier`, a TokenReview per token.

```
verify(token) ─POST /apis/authentication.k8s.io/v1/tokenreviews──> API server
   {spec: {token, audiences: [identity.turnout.dev]}}
   <── status: {authenticated, user: {username}, audiences, error}
   error set ─────────────────────────> TokenInvalid        (InvalidArgument, as Linkerd)
   authenticated false ───────────────> TokenNotAuthenticated (FailedPrecondition)
   our audience not in status.audiences > TokenInvalid
   username not system:serviceaccount:NS:SA > TokenNotAuthenticated
   API server unreachable after retries > IssuerUnavailable  (Unavailable: try again)
   ok ─> ServiceAccount(NS, SA)
```

Linkerd's validator (`controller/identity/validator.go`) makes the same review with its
audience. The request goes through `KubernetesApi` (its own small thread pool, retries with
backoff), so the identity package never imports kubernetes. The token is never logged.
"""

from __future__ import annotations

import logging
from typing import Any

from turnout.engine.identity.errors import IssuerUnavailable, TokenInvalid, TokenNotAuthenticated
from turnout.engine.identity.names import ServiceAccount, parse_username
from turnout.engine.identity.settings import TOKEN_AUDIENCE
from turnout.engine.sources.k8s.api import (
    DEFAULT_KUBERNETES_SETTINGS,
    TEXT_ERROR_MAX,
    KubernetesApi,
    KubernetesApiError,
    KubernetesSettings,
)

log = logging.getLogger(__name__)

PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


class TokenReviewVerifier:
    """Asks the API server who a service account token belongs to."""

    def __init__(
        self,
        api_client: Any,
        *,
        settings: KubernetesSettings = DEFAULT_KUBERNETES_SETTINGS,
        audience: str = TOKEN_AUDIENCE,
        pool_size: int = 4,
    ) -> None:
        self._api = KubernetesApi(api_client, settings=settings, pool_size=pool_size)
        self._audience = audience

    def close(self) -> None:
        self._api.close()

    async def verify(self, token: bytes) -> ServiceAccount:
        try:
            text = token.decode("ascii").strip()
        except UnicodeDecodeError:
            raise TokenInvalid("token: not ASCII") from None
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": text, "audiences": [self._audience]},
        }
        try:
            review = await self._api.request("POST", PATH, body=body)
        except KubernetesApiError as exc:
            log.warning("token review failed: %s", exc)
            raise IssuerUnavailable(f"token review failed: {exc}") from None
        return self._account(review.get("status") or {})

    def _account(self, status: dict[str, Any]) -> ServiceAccount:
        error = str(status.get("error") or "")
        if error:
            raise TokenInvalid(f"token: rejected by the API server: {error[:TEXT_ERROR_MAX]}")
        if not status.get("authenticated"):
            raise TokenNotAuthenticated("token: not authenticated by the API server")
        audiences = status.get("audiences") or []
        if self._audience not in audiences:
            raise TokenInvalid(f"token: audiences {audiences} do not include {self._audience}")
        user = str((status.get("user") or {}).get("username") or "")
        try:
            return parse_username(user)
        except ValueError as exc:
            raise TokenNotAuthenticated(f"token: {exc}") from None
