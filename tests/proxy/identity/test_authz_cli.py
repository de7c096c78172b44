"""`mesh authz` against a real proxy admin: the inbound authorization counters of a proxy
enforcing the seed policy (only the ingress service account may call the app), moved by real
mTLS requests from two meshed clients and a plaintext one during the window."""

from __future__ import annotations

import asyncio
import io
import json

from tests.proxy.e2e.harness import bounded
from tests.proxy.identity.kit import WEB
from tests.proxy.identity.test_inbound_authz import INGRESS, Lab, lab
from turnout.cli.main import main

__all__ = ["lab"]


async def _mesh_authz(lab: Lab, *extra: str) -> tuple[int, str, str]:
    assert lab.server.admin is not None
    admin = f"127.0.0.1:{lab.server.admin.addresses[0][1]}"
    out, err = io.StringIO(), io.StringIO()
    argv = ["authz", "deploy/api", "-n", "shop", "--admin", admin, "--window", "2", *extra]
    run = asyncio.get_running_loop().run_in_executor(
        None, lambda: main(argv, stdout=out, stderr=err)
    )
    await asyncio.sleep(0.5)  # after the first scrape
    assert [await lab.via(lab.ingress) for _ in range(4)] == [200] * 4
    assert [await lab.via(lab.web) for _ in range(2)] == [403] * 2
    assert (await lab.get(lab.inbound))[0] == 403  # plaintext
    return await run, out.getvalue(), err.getvalue()


@bounded(60)
async def test_mesh_authz_shows_the_authorization_the_denials_and_the_clients_tls(
    lab: Lab,
) -> None:
    code, out, err = await _mesh_authz(lab, "-o", "json")
    assert code == 0, err
    data = json.loads(out)
    rows = {(r["server"], r["authorization"]): r for r in data["authorizations"]}
    allowed = rows[("api-http", "serverauthorization/api-ingress")]
    assert 0 < allowed["rps"] <= 4 / 2 and allowed["success_rate"] == 1.0
    assert allowed["latency_ms_p50"] is not None
    denied = rows[("api-http", "")]
    assert 0 < denied["unauthorized_rps"] <= 3 / 2
    tls = {(r["client_id"], r["tls"]) for r in data["tls"] if r["rps"] > 0}
    assert (INGRESS, "true") in tls and (WEB, "true") in tls
    assert ("", "no_tls_from_remote") in tls


@bounded(60)
async def test_mesh_authz_table_has_linkerds_columns(lab: Lab) -> None:
    code, out, err = await _mesh_authz(lab)
    assert code == 0, err
    header, *lines = out.splitlines()
    assert header.split()[:4] == ["ROUTE", "SERVER", "AUTHORIZATION", "UNAUTHORIZED"]
    assert any("serverauthorization/api-ingress" in line for line in lines), out
