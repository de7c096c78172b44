"""What the ADS tests share: our proxy's real ADS client (`XdsClient`) set up fast, the
tables it hands over, and a translator that serves a bad resource (a real NACK).

`split(v1, v2)` is the `web` Service with a two-way weighted route; `backends(table)` is
where a runtime table sends a request for `web` (cluster -> weight).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Callable

from tests.engine.server.builders import manifest, mk_endpoints, mk_route, mk_service, weighted
from turnout.engine.ir import RouteTable
from turnout.engine.xds import XdsResources, translate
from turnout.proxy import Forward, RequestInfo, RuntimeTable
from turnout.proxy.xds_client import NodeInfo, XdsSettings

TIMEOUT_S = 5.0
QUIET_S = 0.3
"""How long "nothing more happens" is watched for (a resend loop would show within ms)."""
WEB = "web.shop.svc.cluster.local:80"
WEB_V2 = "shop/web-v2:80"
WEB_V1 = "shop/web:80"
V2_LISTENER = "web-v2.shop.svc.cluster.local:80"
FAST = XdsSettings(
    backoff_base_ms=20,
    backoff_max_ms=200,
    connect_timeout_ms=2_000,
    send_timeout_ms=2_000,
    idle_timeout_ms=10_000,
    dependency_timeout_ms=2_000,
    stop_timeout_ms=2_000,
)
PATIENT = dataclasses.replace(FAST, dependency_timeout_ms=60_000)
"""A dependency timer far beyond the test's bound: only the normal path can pass."""
SERVICES = (mk_service("web"), mk_service("web-v2"))


def split(v1: int, v2: int) -> str:
    return manifest(*SERVICES, mk_route("web", rules=weighted(("web", v1), ("web-v2", v2))))


def node(ns: str = "shop", name: str = "client") -> NodeInfo:
    return NodeInfo(id=f"{ns}/{name}", cluster=name, namespace=ns, workload=f"deployment/{name}")


class Tables:
    """`on_table`: every (table, version) handed over, awaitable in order."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._queue: asyncio.Queue[tuple[RuntimeTable, str]] = asyncio.Queue()

    def __call__(self, table: RuntimeTable, version: str) -> None:
        self.seen.append(version)
        self._queue.put_nowait((table, version))

    async def next(self) -> tuple[RuntimeTable, str]:
        async with asyncio.timeout(TIMEOUT_S):
            return await self._queue.get()


def backends(
    table: RuntimeTable, *, authority: str = "web", headers: tuple[tuple[str, str], ...] = ()
) -> dict[str, int]:
    decision = table.decide(
        RequestInfo(method="GET", authority=authority, path="/", headers=headers), listener=WEB
    )
    assert isinstance(decision.action, Forward), decision
    return {b.cluster: b.weight for b in decision.action.backends}


def corrupting(bad: RouteTable) -> Callable[[RouteTable, str | None], XdsResources]:
    """A translator that serves an invalid regex in `web`'s routes when given `bad`."""

    def translator(table: RouteTable, ns: str | None) -> XdsResources:
        res = translate(table, client_namespace=ns)
        if table != bad:
            return res
        rcs = []
        for rc in res.route_configs:
            rc = copy.deepcopy(rc)
            if rc.name == WEB:
                rc.virtual_hosts[0].routes[0].match.safe_regex.regex = "/(["
            rcs.append(rc)
        return XdsResources(
            listeners=res.listeners,
            route_configs=tuple(rcs),
            clusters=res.clusters,
            load_assignments=res.load_assignments,
        )

    return translator


def comeback(step: int, *, web_port: int = 8080, v2_port: int = 8090) -> str:
    """The issue-11 sequence, one manifest per step (a Flagger 0/100 step on a canary whose
    Service went away and came back):

    1. `web` and `web-v2`, each with an endpoint; all traffic on `web`;
    2. `web-v2` is gone (its Service, so its listener, route config, cluster and endpoints);
    3. `web-v2` is back AND `web`'s endpoint moved AND all traffic goes to `web-v2`: one
       change that both adds names the client must newly subscribe to (a listener's route
       config, a cluster's endpoints) and changes content of those very types (`web`'s
       route config and endpoints), so the server sends CDS, EDS, LDS, RDS in one breath.
    """
    web = (mk_service("web"), mk_endpoints("web", web_port if step < 3 else web_port + 1))
    canary = (mk_service("web-v2"), mk_endpoints("web-v2", v2_port))
    if step == 1:
        return manifest(*web, *canary, mk_route("web", rules=weighted(("web", 100), ("web-v2", 0))))
    if step == 2:
        return manifest(*web, mk_route("web", rules=weighted(("web", 100))))
    return manifest(*web, *canary, mk_route("web", rules=weighted(("web", 0), ("web-v2", 100))))
