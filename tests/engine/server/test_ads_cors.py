"""A route with a CORS filter, served by the real `AdsServer`, is ACKed by our proxy's
`XdsClient` (the `FilterConfig`-wrapped `CorsPolicy` is read back, not NACKed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.engine.server.ads_kit import PATIENT, TIMEOUT_S, WEB, Tables, node
from tests.engine.server.builders import (
    compile_table,
    manifest,
    mk_endpoints,
    mk_route,
    mk_service,
)
from turnout.engine.server import AdsServer
from turnout.proxy import RequestInfo
from turnout.proxy.xds_client import XdsClient

CORS_RULES = """  - filters:
    - type: CORS
      cors:
        allowOrigins: ["https://*.example.com"]
        allowMethods: [GET, PUT]
    backendRefs: [{name: web, port: 80}]
"""


async def test_a_cors_route_from_the_real_server_is_acked(
    server: AdsServer, tmp_path: Path
) -> None:
    tables = Tables()
    client = XdsClient(f"127.0.0.1:{server.port}", node=node(), on_table=tables, settings=PATIENT)
    text = manifest(mk_service("web"), mk_endpoints("web", 8080), mk_route("web", rules=CORS_RULES))
    server.publish(compile_table(tmp_path, text))
    client.start()
    try:
        table, _ = await tables.next()
        decision = table.decide(RequestInfo(method="GET", authority="web", path="/"), listener=WEB)
        assert decision.cors is not None and decision.cors.allow_methods == ("GET", "PUT")
        async with asyncio.timeout(TIMEOUT_S):
            while client.status.acks == 0:
                await asyncio.sleep(0.01)
        assert client.status.nacks == 0
    finally:
        await client.stop()
