"""`mesh serve` and `mesh bootstrap`: run the control plane, print a gRPC client's bootstrap.

```
mesh serve --dir DIR       DirectorySource ──publish──> AdsServer (xDS)     admin: /ready /live
mesh serve --kubernetes    KubernetesSource ─> cluster control plane ─┘      /debug/table ...
mesh bootstrap             bootstrap_config(xds, namespace, workload) ─> JSON on stdout
```

`serve` runs until SIGINT or SIGTERM and stops every part it started, in reverse order.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path
from typing import TextIO

from aiohttp import web

from turnout.cli.output import EXIT_FAILED, EXIT_OK
from turnout.engine.errors import MeshError
from turnout.engine.render import diagnostic_data, dump_json, dump_yaml, result_data
from turnout.engine.server import AdsServer, bootstrap_config
from turnout.engine.sources import DirectorySource
from turnout.proxy.process import Address

log = logging.getLogger(__name__)


def run_bootstrap(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = bootstrap_config(
        xds=args.xds, namespace=args.namespace, workload=args.workload, node_id=args.node_id
    )
    out.write(dump_json(config))
    return EXIT_OK


def run_serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`mesh serve`: directory source + ADS server (+ admin) until SIGINT/SIGTERM."""
    try:
        xds = Address.parse(args.xds)
        admin = Address.parse(args.admin) if args.admin else None
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    try:
        if args.kubernetes:
            asyncio.run(
                _serve_kubernetes(
                    xds=xds, kubeconfig=args.kubeconfig, context=args.context, out=out
                )
            )
            return EXIT_OK
        asyncio.run(_serve(Path(args.dir), xds=xds, admin=admin, out=out))
    except MeshError as exc:  # cannot listen, not a directory
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        pass
    return EXIT_OK


async def _serve_kubernetes(
    *, xds: Address, kubeconfig: str | None, context: str | None, out: TextIO
) -> None:
    """`mesh serve --kubernetes`: list+watch, compile, serve ADS, write route status."""
    # Imported here for start-up cost: the kubernetes client takes half a second to import
    # and `mesh serve --dir` never needs it.
    from turnout.engine.cluster import start_cluster_control_plane

    server = AdsServer()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    plane = None
    try:
        port = await server.start(xds.host, xds.port)
        print(f"xds listening on {xds.host}:{port}", file=out)
        plane = await start_cluster_control_plane(server, kubeconfig=kubeconfig, context=context)
        print("watching the Kubernetes API", file=out)
        out.flush()
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if plane is not None and plane.source is not None:
            await plane.source.stop()
        await server.stop()


async def _serve(directory: Path, *, xds: Address, admin: Address | None, out: TextIO) -> None:
    server = AdsServer()
    source = DirectorySource(directory, publish=server.publish)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner: web.AppRunner | None = None
    try:
        port = await server.start(xds.host, xds.port)
        print(f"xds listening on {xds.host}:{port}", file=out)
        await source.start()
        if admin is not None:
            runner = web.AppRunner(_serve_admin_app(server, source), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, admin.host, admin.port).start()
            print(f"admin listening on {admin.host}:{runner.addresses[0][1]}", file=out)
        print(f"serving {directory} version={server.version}", file=out)
        out.flush()
        await stop.wait()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if runner is not None:
            await runner.cleanup()
        await source.stop()
        await server.stop()


def _serve_admin_app(server: AdsServer, source: DirectorySource) -> web.Application:
    """/live, /ready (a valid table is served), /debug/table (YAML), /debug/diagnostics."""

    async def live(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def ready(request: web.Request) -> web.Response:
        if source.table is None:
            return web.Response(status=503, text="no valid table loaded yet\n")
        return web.Response(text=f"ok version={server.version}\n")

    async def table(request: web.Request) -> web.Response:
        result = source.status.result
        if result is None:
            return web.Response(status=404, text="no valid table loaded yet\n")
        text = dump_yaml(result_data(result.table, result.statuses, ()))
        return web.Response(text=text, content_type="application/yaml")

    async def diagnostics(request: web.Request) -> web.Response:
        st = source.status
        data = {
            "good_version": st.good_version,
            "applied": st.applied,
            "error": st.error,
            "loads": st.loads,
            "diagnostics": [diagnostic_data(d) for d in st.diagnostics],
        }
        return web.Response(text=dump_json(data), content_type="application/json")

    app = web.Application()
    app.router.add_get("/live", live)
    app.router.add_get("/ready", ready)
    app.router.add_get("/debug/table", table)
    app.router.add_get("/debug/diagnostics", diagnostics)
    return app
