"""The control plane's admin port (aiohttp): health, metrics, the table it serves, its findings.

```
GET /live                       ok
GET /ready                      200 "ok version=N" once a table is served, else 503
GET /metrics                    Prometheus text: PlaneMetrics (versions, changes, rejected
                                changes, compile seconds) + the ADS server's (clients by
                                node, pushes, ACKs, NACKs by type URL)
GET /debug/table                the served table and route status as YAML (`mesh routes -o yaml`)
GET /debug/table?format=json    {"version", "table", "status"} on one line: `render.to_data`'s
                                form, which `render.from_data` turns back into the IR
                                (`mesh routes`); both rendered once per version, off the
                                loop, and streamed (`renders.py`)
GET /debug/policy               {"version", "policy", "resources"}: the authorization policy
                                served with the table, as the IR (`render.to_data`) and as
                                the xDS resources POLICY_TYPE_URL carries (`to_dict`)
GET /debug/diagnostics          {"version", "last_good_version", "applied", "error",
                                 "changes", "diagnostics", "rejected": [{file, kept,
                                 diagnostics}]}: what the last change did and why; with
                                 leader election also "leader": {lease, identity, leading,
                                 holder, transitions} (and the gauge turnout_leader);
                                 with `mesh serve --prometheus` also "prometheus": its URL
GET /debug/proxies              {"version", "proxies": [{node_id, peer, namespace, workload,
                                 pod, admin, acked, sent, sync, nacks, protocol}]}: each ADS
                                 stream against the current table, per type (`mesh check
                                 --proxy`); admin: the proxy's admin HOST:PORT ("" = none);
                                 protocol: "delta" or "sotw"
GET /tap?target=deploy/web&namespace=NS&to=&method=&path=&authority=&max_rps=&limit=
                                NDJSON: the tap events of that workload's proxies, each
                                with "proxy": {namespace, workload, pod, admin}
                                (`tap_fanin`: `mesh tap TARGET`, `mesh top`)
```

`start_admin` binds the port and names it when it cannot (`ControlPlaneError`). Everything
here reads state the control plane and the ADS server already keep; nothing is computed
per proxied request, and nothing that grows with the table is computed on the event loop
(the table's text is rendered on a thread of its own, once per version). Deliberately not
here: the proxy's admin (`turnout.proxy.admin`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from aiohttp import web

from turnout.engine.errors import ControlPlaneError
from turnout.engine.ir_policy import PolicyTable
from turnout.engine.metrics import Gauge, render
from turnout.engine.plane import ControlPlane, PlaneStatus
from turnout.engine.render import diagnostic_data, dump_json, to_data
from turnout.engine.server.ads import AdsServer
from turnout.engine.server.ads_status import ServerStatus
from turnout.engine.server.renders import (
    CHUNK_BYTES,
    SEND_TIMEOUT_MS,
    Body,
    Format,
    TableRenders,
)
from turnout.engine.server.streams import kind_of
from turnout.engine.server.tap_fanin import tap_handler
from turnout.engine.xds.policy import POLICY_TYPE_URL, policy_resources

log = logging.getLogger(__name__)

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"


def diagnostics_data(status: PlaneStatus) -> dict[str, object]:
    """What `/debug/diagnostics` answers."""
    return {
        "version": status.version,
        "last_good_version": status.last_good_version,
        "applied": status.applied,
        "error": status.error,
        "changes": status.changes,
        "diagnostics": [diagnostic_data(d) for d in status.diagnostics],
        "rejected": [
            {
                "file": r.file,
                "kept": r.kept,
                "diagnostics": [diagnostic_data(d) for d in r.diagnostics],
            }
            for r in status.rejected
        ],
    }


def policy_data(version: int, policy: PolicyTable) -> dict[str, object]:
    """What `/debug/policy` answers."""
    return {
        "version": version,
        "type_url": POLICY_TYPE_URL,
        "policy": to_data(policy),
        "resources": policy_resources(policy).to_dict(),
    }


class Leadership(Protocol):
    """Who writes status among the replicas (`engine.sources.k8s.lease.LeaderElector`)."""

    @property
    def leading(self) -> bool: ...

    def describe(self) -> Mapping[str, object]: ...


def leader_gauge(leadership: Leadership) -> Gauge:
    return Gauge(
        "turnout_leader",
        "1 while this replica holds the leader Lease and writes status, else 0.",
        samples={(): int(leadership.leading)},
    )


def proxies_data(status: ServerStatus) -> dict[str, object]:
    """What `/debug/proxies` answers: every open stream that said who it is."""
    return {
        "version": status.version,
        "proxies": [
            {
                "node_id": s.node_id,
                "peer": s.peer,
                "namespace": s.namespace,
                "workload": s.workload,
                "pod": s.pod,
                "admin": s.admin,
                "acked": s.acked,
                "sent": s.sent,
                "sync": s.sync,
                "protocol": s.protocol,
                "nacks": [
                    {"type": kind_of(n.type_url), "version": n.version, "reason": n.reason}
                    for n in s.nacks
                ],
            }
            for s in status.streams
            if s.node_id
        ],
    }


CONTENT_TYPES: dict[Format, str] = {"yaml": "application/yaml", "json": "application/json"}


def admin_app(
    plane: ControlPlane,
    server: AdsServer,
    *,
    renders: TableRenders | None = None,
    leadership: Leadership | None = None,
    prometheus: Callable[[], str | None] | None = None,
) -> web.Application:
    """The admin routes; `renders`: where `/debug/table` bodies come from (the test seam for
    a slow or counted render; default `TableRenders()`, stopped with the app);
    `leadership`: the leader election, shown in `/metrics` and `/debug/diagnostics`;
    `prometheus`: the URL of the Prometheus the control plane started, once it runs (the
    viz commands ask `/debug/diagnostics` for it)."""
    tables = renders if renders is not None else TableRenders()

    async def live(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def ready(request: web.Request) -> web.Response:
        if plane.table is None:
            return web.Response(status=503, text="no valid table loaded yet\n")
        return web.Response(text=f"ok version={server.version}\n")

    async def metrics(request: web.Request) -> web.Response:
        families = [*plane.metrics.families(plane.status), *server.metric_families()]
        if leadership is not None:
            families.append(leader_gauge(leadership))
        resp = web.Response(text=render(families))
        resp.headers["Content-Type"] = METRICS_CONTENT_TYPE
        return resp

    async def table(request: web.Request) -> web.StreamResponse:
        st = plane.status
        if st.result is None or st.version is None:
            return web.Response(status=404, text="no valid table loaded yet\n")
        fmt: Format = "json" if request.query.get("format") == "json" else "yaml"
        body = await tables.get(st.version, st.result, fmt)
        if body is None:
            return web.Response(status=500, text="the table could not be rendered (logged)\n")
        return await stream(request, body, CONTENT_TYPES[fmt])

    async def policy(request: web.Request) -> web.Response:
        served, version = server.policy, server.version
        if served is None:
            return web.Response(status=404, text="no policy served yet\n")
        text = await asyncio.to_thread(lambda: dump_json(policy_data(version, served)))
        return web.Response(text=text, content_type="application/json")

    async def diagnostics(request: web.Request) -> web.Response:
        data = diagnostics_data(plane.status)
        if leadership is not None:
            data["leader"] = dict(leadership.describe())
        if prometheus is not None and (url := prometheus()) is not None:
            data["prometheus"] = url
        return web.Response(text=dump_json(data), content_type="application/json")

    async def proxies(request: web.Request) -> web.Response:
        return web.Response(
            text=dump_json(proxies_data(server.status())), content_type="application/json"
        )

    async def tap(request: web.Request) -> web.StreamResponse:
        return await tap_handler(request, server)

    async def stop_renders(app: web.Application) -> None:
        tables.close()

    app = web.Application()
    app.on_cleanup.append(stop_renders)
    app.router.add_get("/live", live)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/debug/table", table)
    app.router.add_get("/debug/policy", policy)
    app.router.add_get("/debug/diagnostics", diagnostics)
    app.router.add_get("/debug/proxies", proxies)
    app.router.add_get("/tap", tap)
    return app


def _takes_gzip(request: web.Request) -> bool:
    """Accept-Encoding names gzip with a weight above 0 (RFC 9110 12.5.3; `*` not counted)."""
    for item in request.headers.get("Accept-Encoding", "").split(","):
        coding, *params = (part.strip().lower() for part in item.split(";"))
        if coding not in ("gzip", "x-gzip"):
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


async def stream(request: web.Request, body: Body, content_type: str) -> web.StreamResponse:
    """`body` in `CHUNK_BYTES` pieces, each sent once the client took the last (aiohttp's
    drain): its kept gzip bytes as they are to a client that accepts gzip (no copy per
    client), else inflated a piece at a time; a client that takes none for `SEND_TIMEOUT_MS`
    is cut off."""
    resp = web.StreamResponse()
    resp.content_type = content_type
    resp.charset = "utf-8"
    resp.headers["Vary"] = "Accept-Encoding"
    if _takes_gzip(request):
        resp.headers["Content-Encoding"] = "gzip"
        resp.content_length = len(body.gzip)
        view = memoryview(body.gzip)
        pieces: Iterable[bytes | memoryview] = (
            view[start : start + CHUNK_BYTES] for start in range(0, len(view), CHUNK_BYTES)
        )
    else:
        resp.content_length = body.size
        pieces = body.pieces()
    await resp.prepare(request)
    try:
        for piece in pieces:
            async with asyncio.timeout(SEND_TIMEOUT_MS / 1000):
                await resp.write(piece)
        await resp.write_eof()
    except TimeoutError:
        log.info("admin client too slow, closing peer=%s path=%s", request.remote, request.path)
        if request.transport is not None:
            request.transport.close()
    return resp


async def start_admin(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on `host:port` (0 = any free port); returns the runner and the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ControlPlaneError(f"cannot listen on {host}:{port}: {why or exc}") from exc
    bound = int(runner.addresses[0][1])
    log.info("admin listening address=%s:%d", host, bound)
    return runner, bound
