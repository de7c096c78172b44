"""A table change that adds names to a subscription and changes that type's content at once,
through `AdsServer` and our proxy's real `XdsClient` (issue 11: a 15 s stall).

```
server: publish(v3) ─> CDS(v3), EDS(v3, web only: its endpoint moved), LDS(v3), RDS(v3, web)
client: CDS read ─> "EDS: web, web-v2" with the EDS nonce it has (stale: EDS(v3) is on its way)
        LDS read ─> "RDS: web, web-v2" likewise stale
```

Before the fix the server dropped those names (stale nonce) and the client held its ACKs
until web-v2's endpoints and route config came, so nothing moved until the client's
dependency timer built anyway. The client here has a long dependency timer: the table must
reach v3 by the normal path (the test's own bound is 5 s) and the timer never fires.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import pytest

from tests.engine.server.ads_kit import (
    PATIENT,
    TIMEOUT_S,
    V2_LISTENER,
    WEB,
    WEB_V1,
    WEB_V2,
    Tables,
    backends,
    comeback,
    node,
)
from tests.engine.server.builders import compile_table
from turnout.engine.server import AdsServer
from turnout.proxy import RuntimeTable
from turnout.proxy.xds_client import XdsClient


def endpoints(table: RuntimeTable, cluster: str) -> list[tuple[str, int]]:
    return [(e.address, e.port) for e in table.clusters[cluster].endpoints]


def narrowed(server: AdsServer) -> bool:
    """The one stream subscribes to web's route config and endpoints only, all ACKed at 2."""
    [stream] = server.status().streams
    subs = stream.subscriptions
    return (
        subs.get("RDS") == (WEB,)
        and subs.get("EDS") == (WEB_V1,)
        and set(stream.acked.values()) == {"2"}
    )


async def until_table(tables: Tables, want: dict[str, int]) -> tuple[RuntimeTable, str]:
    """The first table (in order) sending `web`'s traffic as `want`."""
    while True:
        table, version = await tables.next()
        if backends(table) == want:
            return table, version


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_a_returning_cluster_and_changed_endpoints_in_one_change_apply_at_once(
    server: AdsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, delta: bool
) -> None:
    caplog.set_level(logging.DEBUG, logger="turnout.engine.server.ads")
    tables = Tables()
    settings = dataclasses.replace(PATIENT, delta=delta)
    client = XdsClient(f"127.0.0.1:{server.port}", node=node(), on_table=tables, settings=settings)
    server.publish(compile_table(tmp_path, comeback(1), name="v1.yaml"))
    client.start()
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await until_table(tables, {WEB_V1: 100, WEB_V2: 0})
            server.publish(compile_table(tmp_path, comeback(2), name="v2.yaml"))
            table, _ = await until_table(tables, {WEB_V1: 100})
            assert WEB_V2 not in table.clusters and V2_LISTENER not in table.listeners
            while not narrowed(server):  # the server has heard the client's v2 answers
                await asyncio.sleep(0.01)
            caplog.clear()
            server.publish(compile_table(tmp_path, comeback(3), name="v3.yaml"))
            table, version = await until_table(tables, {WEB_V1: 0, WEB_V2: 100})
        assert version == "3"
        assert endpoints(table, WEB_V2) == [("127.0.0.1", 8090)]
        assert endpoints(table, WEB_V1) == [("127.0.0.1", 8081)]  # the moved endpoint
        assert V2_LISTENER in table.listeners
        if not delta:
            # The race did happen: the EDS and RDS requests naming web-v2's resources came
            # with stale nonces, and the server took their names all the same. (Delta: new
            # names are subscribed on their own and answered at once, no nonce involved.)
            raced = [
                r.getMessage() for r in caplog.records if "verdict=stale-update" in r.getMessage()
            ]
            assert any("type=EDS" in m for m in raced) and any("type=RDS" in m for m in raced)
        status = client.status
        assert status.dependency_timeouts == 0 and status.nacks == 0
        assert status.table_version == "3"
        assert server.status().nacks == 0
    finally:
        await client.stop()
