"""A real identity service for the proxy's identity tests: a CA directory made with the
wall clock (TLS handshakes check real time), `certify_handler` on a real gRPC server on
127.0.0.1, and join tokens for it."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from turnout.engine.identity.names import ServiceAccount
from turnout.engine.identity.service import IdentityService
from turnout.engine.identity.settings import IdentitySettings
from turnout.engine.identity.store import AuthorityFiles, init_store, load_material
from turnout.engine.identity.tokens import JoinTokenVerifier, issue_join_token
from turnout.engine.server import AdsServer, ServerSettings
from turnout.engine.server.certify import certify_handler

WEB = "web.shop.serviceaccount.identity.cluster.local"
API = "api.shop.serviceaccount.identity.cluster.local"


@dataclass
class Ca:
    dir: Path
    target: str

    def bundle(self) -> bytes:
        return (self.dir / "bundle.pem").read_bytes()

    def token_file(self, sa: str, ns: str = "shop") -> Path:
        """A join token for `ns/sa`, written to a file as `--identity-token-file` reads it."""
        key = load_material(self.dir).token_key
        token = issue_join_token(
            key,
            ServiceAccount(namespace=ns, name=sa),
            now=dt.datetime.now(dt.UTC),
            ttl=dt.timedelta(hours=1),
        )
        path = self.dir.parent / f"{ns}-{sa}.token"
        path.write_text(token + "\n")
        return path


@asynccontextmanager
async def identity_service(
    tmp: Path, settings: IdentitySettings | None = None
) -> AsyncIterator[Ca]:
    """`mesh serve --identity-dir`'s Certify, in-process, on a free port."""
    d = tmp / "ca"
    init_store(d, settings or IdentitySettings(), now=dt.datetime.now(dt.UTC))
    service = IdentityService(
        AuthorityFiles(d), JoinTokenVerifier(load_material(d).token_key), reload_interval_ms=0
    )
    srv = AdsServer(
        settings=ServerSettings(stop_grace_ms=0, stop_timeout_ms=2_000),
        handlers=[certify_handler(service)],
    )
    port = await srv.start("127.0.0.1", 0)
    try:
        yield Ca(d, f"127.0.0.1:{port}")
    finally:
        await srv.stop()
