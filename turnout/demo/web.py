"""The web front end: HTTP in (aiohttp), proxyless gRPC out to emoji and voting.

```
python -m turnout.demo.web --port N --admin-port M --version v1 --xds HOST:PORT
GET /                   a page naming the version
GET /api/list           emoji ListAll
GET /api/vote?choice=X  voting Vote<X> (500 when the vote fails: doughnut)
GET /api/leaderboard    voting Results
GET /ready              200 once both gRPC services answered through xDS
admin :M  /metrics      request_total/response_total/response_latency_ms (outbound, per
                        Service: `grpcmesh.client`) and route_* of the gRPC calls, /tap, /ready
```

gRPC reads its xDS bootstrap once per process, from ``GRPC_XDS_BOOTSTRAP_CONFIG`` (set by the
orchestrator), and dials ``xds:///NAME.emojivoto.svc.cluster.local:8080``: routes, weights and
faults of the GRPCRoute apply inside grpcio, with no proxy on the path. So that `mesh routes
--live` sees those calls too, this process records them as the client side of each call
(``route_response_total{direction="outbound",dst,rt_route}``, as a sidecar would, and the
same once more as the ``route_actual_*`` of its one try: grpcio retries nothing here): the rule a
call matched is found with the proxy's own runtime table, from its own ADS subscription
(`XdsClient`), by the same matching code the proxy uses. Rule selection is deterministic
(method and headers), so this names the rule grpcio applied; which backend it picked is not
known here and not recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import grpc.experimental
from aiohttp import web

from turnout.demo import catalog
from turnout.demo.lifecycle import setup_logging, stop_event
from turnout.engine.server import service_target
from turnout.grpcmesh.client import MeshClientInterceptor
from turnout.proxy.admin import start_admin
from turnout.proxy.hosts import listener_for_host
from turnout.proxy.metrics import ProxyMetrics
from turnout.proxy.request import RequestInfo
from turnout.proxy.table import RuntimeTable
from turnout.proxy.tap import TapHub
from turnout.proxy.xds_client import NodeInfo, XdsClient

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 1.0
GRPC_HEADERS = (("content-type", "application/grpc"),)


class RouteResolver:
    """The rule name a gRPC call matches, from the latest table of our ADS subscription."""

    def __init__(self, *, namespace: str) -> None:
        self.namespace = namespace
        self.table: RuntimeTable | None = None

    def on_table(self, table: RuntimeTable, version: str) -> None:
        self.table = table

    def rule(self, authority: str, path: str) -> str:
        """``""`` (``[DEFAULT]``) when there is no table yet or nothing matched."""
        listener = listener_for_host(authority, namespace=self.namespace)
        if self.table is None or listener is None:
            return ""
        info = RequestInfo(method="POST", authority=authority, path=path, headers=GRPC_HEADERS)
        decision = self.table.decide(info, listener=listener)
        return decision.route.rule if decision.route is not None else ""


class GrpcClient:
    """Proxyless calls to one Service, each one counted in `metrics`; with `via` (a proxy's
    outbound listener, ``--via-proxy``) plain HTTP/2 to that proxy instead, which routes,
    secures and counts them (nothing counted here then)."""

    def __init__(
        self,
        name: str,
        *,
        metrics: ProxyMetrics,
        resolver: RouteResolver,
        namespace: str,
        mtls: bool = False,
        tap: TapHub | None = None,
        pod: str = "",
        via: str | None = None,
    ) -> None:
        self.target = service_target(name, namespace, catalog.GRPC_PORT)
        self.authority = self.target.removeprefix("xds:///")
        self.counted = via is None
        self.metrics = metrics
        self.resolver = resolver
        if via is not None:
            options = [("grpc.default_authority", self.authority)]
            self.channel: Any = grpc.aio.insecure_channel(via, options=options)
            return
        mesh = MeshClientInterceptor(
            metrics,
            tap if tap is not None else TapHub(),
            authority=self.authority,
            dst_namespace=namespace,
            dst_service=name,
            mtls=mtls,
            src=pod,
        )
        if mtls:  # xDS security (gRFC A29): mTLS where the cluster says so, else plaintext
            creds = grpc.xds_channel_credentials(grpc.experimental.insecure_channel_credentials())
            self.channel = grpc.aio.secure_channel(self.target, creds, interceptors=[mesh])
        else:
            self.channel = grpc.aio.insecure_channel(self.target, interceptors=[mesh])

    async def call(
        self, service: str, method: str, payload: object = None, *, wait_for_ready: bool = False
    ) -> object:
        path = catalog.method_path(service, method)
        if not self.counted:
            raw = await self.channel.unary_unary(path)(
                catalog.encode(payload) if payload is not None else b"",
                timeout=CALL_TIMEOUT_S,
                wait_for_ready=wait_for_ready,
            )
            return catalog.decode(raw)
        rk = self.metrics.route(
            direction="outbound",
            dst=self.authority,
            rt_route=self.resolver.rule(self.authority, path),
        )
        self.metrics.route_request(rk)
        self.metrics.route_actual_request(rk)  # one call is one try: no retries here
        start = time.monotonic()
        code = 0
        try:
            raw = await self.channel.unary_unary(path)(
                catalog.encode(payload) if payload is not None else b"",
                timeout=CALL_TIMEOUT_S,
                wait_for_ready=wait_for_ready,
            )
            return catalog.decode(raw)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().value[0]
            raise
        finally:
            self.metrics.route_response(
                rk,
                status_code=200,
                latency_ms=(time.monotonic() - start) * 1000,
                grpc_status=code,
            )
            self.metrics.route_actual_response(rk, status_code=200, grpc_status=code)

    async def close(self) -> None:
        await self.channel.close()


class Web:
    def __init__(self, *, version: str, emoji: GrpcClient, voting: GrpcClient) -> None:
        self.version = version
        self.emoji = emoji
        self.voting = voting

    def headers(self) -> dict[str, str]:
        return {"x-web-version": self.version}

    async def index(self, request: web.Request) -> web.Response:
        text = f"emojivoto web {self.version}: GET /api/list, /api/vote?choice=NAME, /api/leaderboard\n"
        return web.Response(text=text, headers=self.headers())

    async def list_all(self, request: web.Request) -> web.Response:
        try:
            data = await self.emoji.call(catalog.EMOJI_SERVICE, "ListAll")
        except grpc.aio.AioRpcError as exc:
            return self.failed("emoji", exc)
        return web.json_response(data, headers=self.headers())

    async def vote(self, request: web.Request) -> web.Response:
        choice = request.query.get("choice", "").strip(":").lower()
        if choice not in catalog.BY_SHORTCODE:
            return web.json_response(
                {"error": f"unknown emoji {choice!r}"}, status=400, headers=self.headers()
            )
        try:
            await self.voting.call(catalog.VOTING_SERVICE, catalog.vote_method(choice))
        except grpc.aio.AioRpcError as exc:
            return self.failed("voting", exc)
        return web.json_response({"voted": choice}, headers=self.headers())

    async def leaderboard(self, request: web.Request) -> web.Response:
        try:
            data = await self.voting.call(catalog.VOTING_SERVICE, "Results")
        except grpc.aio.AioRpcError as exc:
            return self.failed("voting", exc)
        return web.json_response(data, headers=self.headers())

    async def ready(self, request: web.Request) -> web.Response:
        try:
            await self.emoji.call(catalog.EMOJI_SERVICE, "ListAll", wait_for_ready=True)
            await self.voting.call(catalog.VOTING_SERVICE, "Results", wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            return self.failed("ready", exc, status=503)
        if self.emoji.resolver.table is None:
            return web.Response(status=503, text="no route table yet\n")
        return web.Response(text="ok\n", headers=self.headers())

    def failed(self, what: str, exc: grpc.aio.AioRpcError, *, status: int = 500) -> web.Response:
        body = {"error": f"{what}: {exc.code().name}: {exc.details()}"}
        return web.json_response(body, status=status, headers=self.headers())

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.index)
        app.router.add_get("/api/list", self.list_all)
        app.router.add_get("/api/vote", self.vote)
        app.router.add_post("/api/vote", self.vote)
        app.router.add_get("/api/leaderboard", self.leaderboard)
        app.router.add_get("/ready", self.ready)
        return app


async def run(args: argparse.Namespace) -> None:
    ns = catalog.NAMESPACE
    name = f"web-{args.version}"
    pod = f"{name}-{os.getpid()}"
    metrics = ProxyMetrics(namespace=ns, workload_kind="deployment", workload_name=name, pod=pod)
    tap = TapHub()
    resolver = RouteResolver(namespace=ns)
    node = NodeInfo(
        id=f"{ns}/deployment/{name}/routes", cluster=ns, namespace=ns, workload=f"deployment/{name}"
    )
    xds = XdsClient(args.xds, node=node, on_table=resolver.on_table)
    xds.start()
    agent_task = None
    if args.identity:
        agent_task = await start_agent(args)
    mtls = agent_task is not None
    emoji, voting = (
        GrpcClient(
            n,
            metrics=metrics,
            resolver=resolver,
            namespace=ns,
            mtls=mtls,
            tap=tap,
            pod=pod,
            via=args.via_proxy,
        )
        for n in ("emoji", "voting")
    )
    front = Web(version=args.version, emoji=emoji, voting=voting)
    admin = await start_admin(
        args.host, args.admin_port, metrics=metrics, tap=tap, ready=lambda: True
    )
    runner = web.AppRunner(front.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    log.info("web %s on %s:%d, admin :%d", args.version, args.host, args.port, args.admin_port)
    try:
        await stop_event().wait()
    finally:
        await runner.cleanup()
        await admin.cleanup()
        with contextlib.suppress(Exception):
            await emoji.close()
            await voting.close()
        await xds.stop()
        if agent_task is not None:
            agent_task.cancel()


async def start_agent(args: argparse.Namespace) -> asyncio.Task[None]:
    """The identity agent on this loop; returns once the first certificate is written (the
    gRPC certificate provider reads the files when the first channel needs them)."""
    from turnout.proxy.identity.agent import Agent

    agent = Agent(
        args.identity,
        target=args.identity_addr,
        token_file=Path(args.identity_token_file),
        out=Path(args.certs),
    )
    await agent.once()
    return asyncio.get_running_loop().create_task(agent.run(), name="identity agent")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m turnout.demo.web")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--admin-port", type=int, required=True)
    p.add_argument("--version", default="v1")
    p.add_argument("--xds", required=True, metavar="HOST:PORT")
    p.add_argument("--identity", help="call emoji and voting with mTLS (xDS security) as this")
    p.add_argument("--identity-token-file")
    p.add_argument("--identity-addr")
    p.add_argument("--certs", help="where the identity agent keeps the certificate files")
    p.add_argument(
        "--via-proxy",
        metavar="HOST:PORT",
        help="call emoji and voting through this proxy's outbound listener, not proxyless",
    )
    args = p.parse_args(argv)
    setup_logging(f"web-{args.version}")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
