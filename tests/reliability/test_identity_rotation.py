"""Acceptance: an issuer rotation, then the three anchor steps, under 50 requests a second,
with no failed request and no proxy restarted.

Proxies learn the bundle only from Certify answers (field 4, `trust_anchors`), so they
take each step with their next renewal: leaves of 20 s (no clock skew) are renewed every
~14 s, and `mesh serve` reads the CA directory at most once a second. Between two steps
the test waits until each proxy has installed a leaf requested after the step (its
`identity_cert_refresh_count` went up at least 1.2 s after it): that, not a whole lifetime,
is what "every proxy holds the new bundle" takes. Each wait is a renewal, so the run takes
about 4 x 14 s. At the end a fresh handshake to the server proxy is verified against the
final bundle (the new anchor only).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.proxy.e2e.harness import bounded
from tests.reliability.mesh_lab import MeshLab, PacedLoad, mesh_cli, mesh_lab

pytestmark = pytest.mark.slow

STEPS = (("--issuer",), ("--anchor",), ("--issuer",), ("--drop-old-anchor",))
RELOAD_S = 1.2
"""Longer than `mesh serve`'s directory reload interval (1 s)."""


async def step(lab: MeshLab, flag: str) -> float:
    """`mesh identity rotate FLAG`, then until both proxies renewed after it; seconds."""
    started = time.monotonic()
    await mesh_cli("identity", "rotate", "--dir", str(lab.ca), flag)
    await asyncio.sleep(RELOAD_S)
    await lab.renewed(timeout_s=20)
    return time.monotonic() - started


@bounded(120)
async def test_issuer_and_anchor_rotation_under_load_fail_no_request(tmp_path: Path) -> None:
    async with mesh_lab(tmp_path, lifetime="20s") as lab:
        pids = lab.pids()
        old_anchor = x509.load_pem_x509_certificate(lab.bundle())
        load = PacedLoad(lab.outbound, rps=50, burst_every_s=3)
        took: list[float] = []

        async def rotate() -> None:
            await asyncio.sleep(1)
            for (flag,) in STEPS:
                took.append(await step(lab, flag))

        rotation = asyncio.create_task(rotate(), name="rotation")
        watch = asyncio.create_task(lab.keep_polling(), name="refresh-poller")
        try:
            ran = await load.run(rotation.done)
            await rotation  # its exception, if any
        finally:
            watch.cancel()
        anchors = x509.load_pem_x509_certificates(lab.bundle())
        issuer = x509.load_pem_x509_certificate((lab.ca / "issuer.crt").read_bytes())
        leaf = await lab.served_leaf(lab.bundle())  # raises unless it chains to the new anchor
        assert lab.pids() == pids  # nobody restarted
        logs = [await p.stop() for p in lab.proxies]
    print(
        f"rotation: {load.sent} requests in {ran:.0f}s, steps took"
        f" {', '.join(f'{s:.1f}s' for s in took)}, new connections under leaves {lab.grown}"
    )
    assert load.failed == 0, load.errors
    assert load.ok == load.sent > 0
    assert len(anchors) == 1 and anchors[0] != old_anchor
    leaf.verify_directly_issued_by(issuer)  # the last issuer's (all issuers share a name)
    assert len(lab.grown) >= 4, lab.grown  # new handshakes happened during the steps
    assert not any("Traceback" in log for log in logs), logs
