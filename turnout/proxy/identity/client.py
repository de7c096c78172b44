"""`IdentityClient`: Certify over gRPC, then renew before the leaf expires.

```
run ─► certify_once: token file (re-read each time) + CSR ─► Certify ─► Issued.parse
   │        └─► state.install (new contexts) ─► metrics: expiration, refresh count
   └─► sleep refresh_in(valid_until) ─► again; after a failure: 70% of what the current
       leaf has left, or the minimum (10 s) when there is none or it has expired
```

The schedule is Linkerd's (SECURITY-REFERENCE §1.3): no exponential backoff. The Certify
port is plaintext today, as the ADS port is (docs/identity.md "Not yet here").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from turnout.proxy.identity.state import (
    MAX_REFRESH_S,
    MIN_REFRESH_S,
    IdentityState,
    Issued,
    refresh_in,
)
from turnout.wire.certify import METHOD, CertifyRequest, CertifyResponse

log = logging.getLogger(__name__)

CERTIFY_TIMEOUT_S = 10.0


class CertifyError(Exception):
    """A Certify call that gave no usable leaf (the reason in the message)."""


class IdentityClient:
    """Keeps `state` holding a fresh leaf from the identity service at `target`."""

    def __init__(
        self,
        state: IdentityState,
        *,
        target: str,
        token_file: Path,
        on_issued: Callable[[Issued], None] | None = None,
        min_refresh_s: float = MIN_REFRESH_S,
        max_refresh_s: float = MAX_REFRESH_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.target = target
        self.token_file = token_file
        self.on_issued = on_issued
        self.min_refresh_s, self.max_refresh_s = min_refresh_s, max_refresh_s
        self.clock = clock
        self.ready = asyncio.Event()
        """Set once the first leaf is installed."""
        self.failures = 0

    async def certify_once(self) -> Issued:
        """One Certify call; the leaf is installed. `CertifyError` when it fails."""
        state = self.state
        try:
            token = self.token_file.read_bytes().strip()
        except OSError as exc:
            raise CertifyError(f"{self.token_file}: {exc.strerror or exc}") from exc
        request = CertifyRequest(
            identity=state.identity,
            token=token,
            certificate_signing_request=state.material.csr_der,
        )
        try:
            async with grpc.aio.insecure_channel(self.target) as channel:
                call = channel.unary_unary(
                    METHOD,
                    request_serializer=CertifyRequest.SerializeToString,
                    response_deserializer=CertifyResponse.FromString,
                )
                resp: Any = await call(request, timeout=CERTIFY_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise CertifyError(f"certify {self.target}: {exc.code().name} {exc.details()}") from exc
        try:
            issued = Issued.parse(
                resp.leaf_certificate,
                list(resp.intermediate_certificates),
                resp.trust_anchors,
                identity=state.identity,
                now=self.clock(),
            )
            state.install(issued)
        except (ValueError, OSError) as exc:  # ssl.SSLError is an OSError
            raise CertifyError(str(exc)) from exc
        if self.on_issued is not None:
            self.on_issued(issued)
        self.ready.set()
        return issued

    def next_delay(self) -> float:
        """Seconds until the next try (see the module docstring)."""
        issued = self.state.issued
        if issued is None:
            return self.min_refresh_s
        return refresh_in(
            issued.valid_until, self.clock(), lo=self.min_refresh_s, hi=self.max_refresh_s
        )

    async def run(self) -> None:
        """Certify, then renew, until cancelled."""
        while True:
            try:
                issued = await self.certify_once()
                self.failures = 0
                log.debug("identity renewal in %.1fs serial=%d", self.next_delay(), issued.serial)
            except CertifyError as exc:
                self.failures += 1
                log.warning(
                    "identity certify failed identity=%s retry_in=%.1fs: %s",
                    self.state.identity,
                    self.next_delay(),
                    exc,
                )
            await asyncio.sleep(self.next_delay())
