"""`IdentityService.certify`: one Certify request, checked in Linkerd's order, then signed.

```
certify(identity, token, csr)
  1. the issuer of DIR, re-read if its files changed (looked at once a second at most)
                                                   ──none valid──> IssuerUnavailable
  2. identity parses as <sa>.<ns>.serviceaccount.identity.<domain> ──> else InvalidRequest
  3. the CSR parses, verifies, and passes csr.check_csr ──> InvalidRequest / PreconditionFailed
  4. TokenVerifier.verify(token) -> ServiceAccount ──> TokenInvalid / TokenNotAuthenticated
  5. that account's identity == the requested one ──> else PreconditionFailed
  6. Authority.issue ─> Leaf (logged with its SHA-256)
```

The CSR is checked before the token so that junk costs no TokenReview. Transport-free: the
gRPC binding (`engine.server.certify`) maps `CertifyRefused.code` to a status. File reads
run on a thread; signing (~0.2 ms) runs on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from turnout.engine.identity.authority import Authority, Leaf
from turnout.engine.identity.clock import Clock, utc_now
from turnout.engine.identity.csr import check_csr, parse_csr
from turnout.engine.identity.errors import (
    CertifyRefused,
    InvalidRequest,
    IssuerUnavailable,
    PreconditionFailed,
)
from turnout.engine.identity.names import identity_name, parse_identity
from turnout.engine.identity.settings import DEFAULT_RELOAD_INTERVAL_MS
from turnout.engine.identity.store import AuthorityFiles
from turnout.engine.identity.tokens import TokenVerifier

log = logging.getLogger(__name__)


class IdentityService:
    """Issues leaves from the CA in `files` to workloads `verifier` vouches for."""

    def __init__(
        self,
        files: AuthorityFiles,
        verifier: TokenVerifier,
        *,
        clock: Clock = utc_now,
        reload_interval_ms: int = DEFAULT_RELOAD_INTERVAL_MS,
    ) -> None:
        self.files = files
        self._verifier = verifier
        self._clock = clock
        self._reload_s = reload_interval_ms / 1000
        self._checked_at = -math.inf
        """`time.monotonic()` of the last look at the files."""
        self._authority: Authority | None = None
        self._lock = asyncio.Lock()
        self.issued = 0
        """Leaves issued since start."""
        self.refused = 0

    async def certify(self, *, identity: str, token: bytes, csr: bytes) -> Leaf:
        try:
            leaf = await self._certify(identity, token, csr)
        except CertifyRefused as exc:
            self.refused += 1
            log.info(
                "identity certify refused identity=%s code=%s reason=%s", identity, exc.code, exc
            )
            raise
        self.issued += 1
        log.info(
            "identity leaf issued identity=%s serial=%d sha256=%s valid_until=%s",
            leaf.identity,
            leaf.serial,
            leaf.sha256,
            leaf.valid_until.isoformat(),
        )
        return leaf

    async def _current(self) -> Authority | None:
        async with self._lock:  # one look at a time; AuthorityFiles is not thread-safe
            now = time.monotonic()
            if self._authority is None or now - self._checked_at >= self._reload_s:
                self._checked_at = now
                self._authority = await asyncio.to_thread(self.files.refresh)
            return self._authority

    async def _certify(self, identity: str, token: bytes, csr: bytes) -> Leaf:
        authority = await self._current()
        if authority is None:
            raise IssuerUnavailable(f"no valid issuer loaded: {self.files.error}")
        domain = authority.settings.domain
        try:
            wanted = parse_identity(identity, domain)
        except ValueError as exc:
            raise InvalidRequest(f"identity: {exc}") from None
        checked = check_csr(parse_csr(csr), identity)
        if not token:
            raise InvalidRequest("token: empty")
        proved = await self._verifier.verify(token)
        if proved != wanted:
            raise PreconditionFailed(
                f"token is service account {proved}'s ({identity_name(proved, domain)}),"
                f" not the requested identity {identity}"
            )
        return authority.issue(checked, wanted, now=self._clock())
