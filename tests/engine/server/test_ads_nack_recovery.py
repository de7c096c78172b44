"""A NACK rolls the proxy back on every type, and the next table brings back what it lost
(`AdsServer` and our proxy's real `XdsClient`).

```
v1  web -> web (100)                                   applied
v2  web-v2 Service added (a cluster, a listener) AND   the proxy cannot build web's route
    a header regex the proxy refuses in web's route    (bad regex): it NACKs CDS, EDS, LDS,
                                                       RDS and keeps v1, without web-v2
v3  the regex fixed; nothing else changed              CDS, EDS, LDS equal v2's: the server
                                                       sends them again (NACKed for v2), so
                                                       the proxy has web-v2 and builds v3
```

Before the fix the server never re-sent the NACKed CDS, EDS and LDS, so the proxy waited
for web-v2's cluster until its dependency timer built anyway (here 60 s: the test's bound is
5 s).
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from tests.engine.server.ads_kit import PATIENT, TIMEOUT_S, WEB_V1, WEB_V2, Tables, backends, node
from tests.engine.server.builders import (
    compile_table,
    manifest,
    mk_endpoints,
    mk_route,
    mk_service,
    weighted,
)
from turnout.engine.ir import HeaderMatch, Match
from turnout.engine.server import AdsServer
from turnout.proxy.xds_client import XdsClient

BAD = HeaderMatch(name="x-canary", kind="RegularExpression", value="(unclosed")
"""A regex RE2 refuses: the compiler would reject it, so the test puts it in the IR."""


def with_bad_regex(node: Any) -> Any:
    """`node` (the IR, walked whole) with `BAD` added to every match."""
    if isinstance(node, Match):
        return dataclasses.replace(node, headers=(*node.headers, BAD))
    if isinstance(node, tuple):
        return tuple(with_bad_regex(n) for n in node)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        changes = {f.name: with_bad_regex(getattr(node, f.name)) for f in dataclasses.fields(node)}
        return dataclasses.replace(node, **changes)
    return node


def step(n: int) -> str:
    web = (mk_service("web"), mk_endpoints("web", 8080))
    if n == 1:
        return manifest(*web, mk_route("web", rules=weighted(("web", 100))))
    canary = (mk_service("web-v2"), mk_endpoints("web-v2", 8090))
    return manifest(*web, *canary, mk_route("web", rules=weighted(("web", 0), ("web-v2", 100))))


async def test_what_a_nack_rolled_back_comes_again_with_the_next_table(
    server: AdsServer, tmp_path: Path
) -> None:
    tables = Tables()
    client = XdsClient(f"127.0.0.1:{server.port}", node=node(), on_table=tables, settings=PATIENT)
    server.publish(compile_table(tmp_path, step(1), name="v1.yaml"))
    client.start()
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while backends((await tables.next())[0]) != {WEB_V1: 100}:
                pass
            good = compile_table(tmp_path, step(2), name="v2.yaml")
            server.publish(with_bad_regex(good))
            while client.status.nacks == 0:
                await asyncio.sleep(0.01)
            assert client.status.table_version == "1"
            server.publish(good)
            table, version = await tables.next()
        assert version == "3"
        assert backends(table) == {WEB_V1: 0, WEB_V2: 100}
        assert WEB_V2 in table.clusters
        assert client.status.dependency_timeouts == 0
    finally:
        await client.stop()
