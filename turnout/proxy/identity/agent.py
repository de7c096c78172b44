"""`mesh identity agent`: a workload's certificate as files, for proxyless gRPC.

```
Material (key, CSR) ─ IdentityClient (Certify, renewal at 70%) ─ on_issued ─► OUT/
   key.pem   the private key, PKCS#8, mode 0600, written once (the key never rotates)
   cert.pem  the leaf, then its issuer chain (replaced atomically on every renewal)
   ca.pem    the trust bundle (one anchor, or two during an anchor rotation)
```

These are the files gRPC's `file_watcher` certificate provider reads (gRFC A29:
`certificate_file`, `private_key_file`, `ca_certificate_file`), which `grpc.server(xds=True)`
and xDS clients use for mTLS once `mesh bootstrap` names them. Each file is written to a
temporary name in OUT and renamed over the old one, so a reader never sees half a
certificate. `--once` gets one certificate and exits (an init container); without it the
agent keeps renewing until it is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from turnout.proxy.identity.client import IdentityClient
from turnout.proxy.identity.material import Material
from turnout.proxy.identity.state import IdentityState, Issued

CERT_FILE, KEY_FILE, CA_FILE = "cert.pem", "key.pem", "ca.pem"


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


class Agent:
    """Keeps OUT holding a fresh certificate for `identity` (see the module docstring)."""

    def __init__(
        self,
        identity: str,
        *,
        target: str,
        token_file: Path,
        out: Path,
        min_refresh_s: float | None = None,
        max_refresh_s: float | None = None,
    ) -> None:
        self.out = out
        self.material = Material.generate(identity)
        self.state = IdentityState(self.material)
        self.client = IdentityClient(
            self.state, target=target, token_file=token_file, on_issued=self.write
        )
        if min_refresh_s is not None:
            self.client.min_refresh_s = min_refresh_s
        if max_refresh_s is not None:
            self.client.max_refresh_s = max_refresh_s
        self.written = 0

    def write(self, issued: Issued) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        if self.written == 0:
            write_atomic(self.out / KEY_FILE, self.material.key_pem, mode=0o600)
        chain = _pem(issued.leaf_der) + b"".join(_pem(c) for c in issued.chain_der)
        write_atomic(self.out / CERT_FILE, chain)
        write_atomic(self.out / CA_FILE, issued.bundle_pem)
        self.written += 1

    async def once(self) -> Issued:
        """One certificate written; `CertifyError` when none could be had."""
        return await self.client.certify_once()

    async def run(self) -> None:
        """Write, then renew, until cancelled."""
        await self.client.run()


def run_agent(agent: Agent, *, once: bool) -> None:
    """The command's event loop: one certificate, or renewing until interrupted."""

    async def main() -> None:
        if once:
            await agent.once()
        else:
            await agent.run()

    asyncio.run(main())
