"""`mesh check` against a fake API server holding what `mesh install` creates, with the real
control plane (in process, as `mesh serve` runs it) behind the API server's proxy."""

from __future__ import annotations

from pathlib import Path

from tests.cluster.check_kit import running_cluster
from tests.proxy.e2e.harness import bounded


@bounded(30)
async def test_a_healthy_install_is_all_green(tmp_path: Path) -> None:
    async with running_cluster(tmp_path) as c:
        code, out = await c.check()
        print(out)
        assert code == 0, out
