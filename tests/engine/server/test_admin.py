"""The control plane as `mesh serve` runs it, in process: a watched directory -> ControlPlane ->
AdsServer, with the admin port (aiohttp on 127.0.0.1:0) and our proxy's real ADS clients.

```
tmp dir ──watch──> DirectorySource ──> ControlPlane ──publish──> AdsServer ──ADS──> XdsClient x2
                                           │                         │   (one NACKs: a bad regex)
                                           └──── admin: /metrics /debug/diagnostics /debug/table
```

`/metrics` is checked by Prometheus' own parser and linter (`promtool check metrics`) when
it is installed (`make tools`), and read back with `turnout.viz`'s parser for the values.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.engine.server.ads_kit import (
    FAST,
    TIMEOUT_S,
    WEB_V1,
    WEB_V2,
    Tables,
    backends,
    corrupting,
    node,
    split,
)
from tests.engine.server.builders import compile_table, manifest, mk_route, mk_service, weighted
from turnout.engine import ir
from turnout.engine.compile import CompileResult
from turnout.engine.plane import ControlPlane
from turnout.engine.render import dump_yaml, from_data, result_data
from turnout.engine.server import AdsServer, ServerSettings, Translator, default_translator
from turnout.engine.server.admin import admin_app, start_admin
from turnout.engine.server.renders import Body, Format, TableRenders, render_table
from turnout.engine.sources import DirectorySettings, DirectorySource
from turnout.engine.xds import LISTENER_TYPE, ROUTE_CONFIGURATION_TYPE
from turnout.proxy.xds_client import XdsClient
from turnout.viz.stats import Sample, parse_text

FAST_DIR = DirectorySettings(debounce_ms=20, watch_tick_ms=100, stop_timeout_ms=2_000)
API = "api.shop.svc.cluster.local:80"


@dataclass
class Plane:
    directory: Path
    server: AdsServer
    plane: ControlPlane
    source: DirectorySource
    admin: str
    session: aiohttp.ClientSession

    @property
    def xds(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def client(self, tables: Tables, *, name: str = "client") -> XdsClient:
        client = XdsClient(self.xds, node=node(name=name), on_table=tables, settings=FAST)
        client.start()
        return client

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(f"http://{self.admin}{path}") as resp:
            return resp.status, await resp.text()

    async def metrics(self) -> list[Sample]:
        status, text = await self.get("/metrics")
        assert status == 200
        check_with_promtool(text)
        return parse_text(text)

    async def changed(self, since: int) -> None:
        async with asyncio.timeout(TIMEOUT_S):
            while self.plane.status.changes <= since:
                await asyncio.sleep(0.02)


def check_with_promtool(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        return  # the values are still parsed below; `make tools` installs it
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    assert found, f"no sample {name}{labels}"
    return sum(found)


Start = Callable[..., Awaitable[Plane]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """Starts the control plane on `tmp_path` (write the manifests first)."""
    stack: list[Callable[[], Awaitable[None]]] = []

    async def make(
        translator: Translator = default_translator, renders: TableRenders | None = None
    ) -> Plane:
        server = AdsServer(translator=translator, settings=ServerSettings(stop_grace_ms=0))
        await server.start("127.0.0.1", 0)
        stack.append(server.stop)
        plane = ControlPlane(publish=server.publish)
        source = DirectorySource(tmp_path, plane=plane, settings=FAST_DIR)
        await source.start()
        stack.append(source.stop)
        await source.wait_watching(timeout_ms=int(TIMEOUT_S * 1000))
        app = admin_app(plane, server, renders=renders)
        runner, port = await start_admin(app, "127.0.0.1", 0)
        stack.append(runner.cleanup)
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        stack.append(session.close)
        return Plane(tmp_path, server, plane, source, f"127.0.0.1:{port}", session)

    try:
        yield make
    finally:
        for stop in reversed(stack):
            await stop()


async def test_a_bad_file_and_a_good_change_in_another_file_the_good_change_is_served(
    start: Start, tmp_path: Path
) -> None:
    (tmp_path / "web.yaml").write_text(split(90, 10))
    p = await start()
    tables = Tables()
    client = p.client(tables)
    try:
        table, _ = await tables.next()
        assert backends(table) == {WEB_V1: 90, WEB_V2: 10}
        changes = p.plane.status.changes
        (tmp_path / "web.yaml").write_text(split(-5, 10))  # bad: a negative weight
        await p.changed(changes)
        changes = p.plane.status.changes
        api = manifest(mk_service("api"), mk_route("api", parent="api", rules=weighted(("api", 1))))
        (tmp_path / "api.yaml").write_text(api)  # good, in another file
        table, version = await tables.next()
        assert API in table.listeners  # the good change is served over xDS ...
        assert backends(table) == {WEB_V1: 90, WEB_V2: 10}  # ... beside web's last good one
        assert version == "2"

        status, text = await p.get("/debug/diagnostics")
        assert status == 200
        diags = json.loads(text)
        assert diags["version"] == 2 and diags["last_good_version"] == 1
        assert diags["applied"] is False and diags["error"] is None
        [rejected] = diags["rejected"]
        assert rejected["file"] == str(tmp_path / "web.yaml") and rejected["kept"] is True
        [why] = rejected["diagnostics"]
        assert why["reason"] == "FieldValueInvalid" and "-5" in why["message"]

        samples = await p.metrics()
        assert value(samples, "turnout_control_plane_table_version") == 2
        assert value(samples, "turnout_control_plane_last_good_version") == 1
        assert value(samples, "turnout_control_plane_rejected_inputs") == 1
        assert value(samples, "turnout_control_plane_rejected_changes_total") == 2
        assert value(samples, "turnout_control_plane_changes_total") == 3

        status, text = await p.get("/debug/table?format=json")
        served = json.loads(text)
        assert served["version"] == 2
        assert from_data(ir.RouteTable, served["table"]) == p.plane.table
    finally:
        await client.stop()


async def test_metrics_count_pushes_acks_and_a_real_nack_by_type_and_clients_by_node(
    start: Start, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    bad = compile_table(tmp_path_factory.mktemp("bad"), split(50, 50))  # to get a broken regex
    (tmp_path / "web.yaml").write_text(split(90, 10))
    p = await start(corrupting(bad))
    a, b = Tables(), Tables()
    clients = [p.client(a, name="a"), p.client(b, name="b")]
    try:
        await a.next()
        await b.next()
        samples = await p.metrics()
        for who in ("shop/a", "shop/b"):
            assert value(samples, "turnout_xds_connected_clients", node=who) == 1
        for url in (LISTENER_TYPE, ROUTE_CONFIGURATION_TYPE):
            assert value(samples, "turnout_xds_pushes_total", type_url=url) == 2
        async with asyncio.timeout(TIMEOUT_S):  # the ACKs follow the tables
            while p.server.metrics.acks.value(ROUTE_CONFIGURATION_TYPE) < 2:
                await asyncio.sleep(0.01)
        (tmp_path / "web.yaml").write_text(split(50, 50))
        async with asyncio.timeout(TIMEOUT_S):
            while p.server.status().nacks < 2:  # each client rejects the bad regex
                await asyncio.sleep(0.01)
        samples = await p.metrics()
        assert value(samples, "turnout_xds_nacks_total", type_url=ROUTE_CONFIGURATION_TYPE) == 2
        assert value(samples, "turnout_xds_nacks_total") == 2  # no other type was NACKed
        assert value(samples, "turnout_xds_acks_total", type_url=ROUTE_CONFIGURATION_TYPE) == 2
        assert value(samples, "turnout_xds_pushes_total", type_url=ROUTE_CONFIGURATION_TYPE) == 4
        assert value(samples, "turnout_control_plane_table_version") == 2
        assert value(samples, "turnout_control_plane_compile_duration_seconds_count") == 2
        assert (
            value(samples, "turnout_control_plane_compile_duration_seconds_bucket", le="+Inf") == 2
        )
    finally:
        for c in clients:
            await c.stop()
    async with asyncio.timeout(TIMEOUT_S):  # gone clients are no longer counted
        while [s for s in await p.metrics() if s.name == "turnout_xds_connected_clients"]:
            await asyncio.sleep(0.02)


class GatedRender:
    """`TableRenders`' render seam: counts renders, and holds each one (on the render thread)
    until `gate` is set, so a test can act while a render is in progress."""

    def __init__(self, *, gated: bool = False, fail_first: bool = False) -> None:
        self.calls: list[tuple[int, Format]] = []
        self.started = threading.Event()
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self._fail = fail_first

    def __call__(self, version: int, result: CompileResult, fmt: Format) -> bytes:
        self.calls.append((version, fmt))
        self.started.set()
        self.gate.wait(TIMEOUT_S)
        if self._fail:
            self._fail = False
            raise RuntimeError("render bug")
        return render_table(version, result, fmt)


async def test_an_xds_client_is_answered_while_debug_table_renders(
    start: Start, tmp_path: Path
) -> None:
    (tmp_path / "web.yaml").write_text(split(90, 10))
    render = GatedRender(gated=True)
    p = await start(renders=TableRenders(render=render))
    order: list[str] = []
    fetch = asyncio.create_task(p.get("/debug/table"))
    fetch.add_done_callback(lambda _: order.append("debug/table"))
    tables = Tables()
    client = None
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while not render.started.is_set():
                await asyncio.sleep(0.01)
        client = p.client(tables)  # subscribes while the table is being rendered
        table, _ = await tables.next()
        order.append("xds")
        assert backends(table) == {WEB_V1: 90, WEB_V2: 10}
        render.gate.set()
        status, text = await fetch
        assert status == 200 and "service/shop/web:80" in text
        assert order == ["xds", "debug/table"]
    finally:
        render.gate.set()
        if client is not None:
            await client.stop()


async def test_debug_table_is_rendered_once_per_version_and_format(
    start: Start, tmp_path: Path
) -> None:
    (tmp_path / "web.yaml").write_text(split(90, 10))
    render = GatedRender()
    p = await start(renders=TableRenders(render=render))
    answers = await asyncio.gather(*(p.get("/debug/table") for _ in range(4)))
    answers.append(await p.get("/debug/table"))
    result = p.plane.status.result
    assert result is not None
    yaml_text = dump_yaml(result_data(result.table, result.statuses, ()))
    assert answers == [(200, yaml_text)] * 5  # the text `mesh routes -o yaml` prints
    for _ in range(3):
        status, text = await p.get("/debug/table?format=json")
        assert status == 200
        assert from_data(ir.RouteTable, json.loads(text)["table"]) == result.table
    assert render.calls == [(1, "yaml"), (1, "json")]

    changes = p.plane.status.changes
    (tmp_path / "web.yaml").write_text(split(50, 50))
    await p.changed(changes)
    for _ in range(2):
        status, text = await p.get("/debug/table")
        assert status == 200 and "weight: 50" in text
    assert render.calls == [(1, "yaml"), (1, "json"), (2, "yaml")]


async def test_debug_table_is_kept_gzipped_and_served_plain_to_a_client_without_gzip(
    start: Start, tmp_path: Path
) -> None:
    (tmp_path / "web.yaml").write_text(split(90, 10))
    p = await start()
    url = f"http://{p.admin}/debug/table"
    plain = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=TIMEOUT_S).read())
    result = p.plane.status.result
    assert result is not None
    assert plain.decode() == dump_yaml(result_data(result.table, result.statuses, ()))
    headers = {"Accept-Encoding": "br;q=1, gzip;q=0.5"}
    async with p.session.get(url, headers=headers, auto_decompress=False) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        packed = await resp.read()
    assert gzip.decompress(packed) == plain and len(packed) < len(plain)
    async with p.session.get(url, headers={"Accept-Encoding": "gzip;q=0"}) as resp:
        assert "Content-Encoding" not in resp.headers
        assert await resp.read() == plain


def test_a_kept_body_inflates_in_pieces_of_at_most_the_chunk() -> None:
    text = b"".join(b"route-%d: {weight: %d}\n" % (i, i % 100) for i in range(20_000))
    body = Body.pack(text)
    pieces = list(body.pieces(chunk=4096))
    assert b"".join(pieces) == text and body.size == len(text)
    assert len(pieces) > 10 and max(map(len, pieces)) <= 4096


async def test_a_failed_render_is_answered_500_and_tried_again(
    start: Start, tmp_path: Path
) -> None:
    (tmp_path / "web.yaml").write_text(split(90, 10))
    render = GatedRender(fail_first=True)
    p = await start(renders=TableRenders(render=render))
    status, _ = await p.get("/debug/table")
    assert status == 500
    status, text = await p.get("/debug/table")
    assert status == 200 and "service/shop/web:80" in text
    assert render.calls == [(1, "yaml"), (1, "yaml")]


async def test_debug_policy_shows_the_served_policy_and_its_xds_resources(
    start: Start, tmp_path: Path
) -> None:
    server_doc = (
        "apiVersion: policy.linkerd.io/v1beta3\nkind: Server\n"
        "metadata: {name: web-http, namespace: shop}\n"
        "spec: {podSelector: {matchLabels: {app: web}}, port: 8080, proxyProtocol: HTTP/1}\n"
    )
    (tmp_path / "web.yaml").write_text(manifest(mk_service("web"), server_doc))
    p = await start()
    status, text = await p.get("/debug/policy")
    assert status == 200, text
    data = json.loads(text)
    assert data["version"] == 1
    assert data["type_url"] == "type.googleapis.com/xds.type.v3.TypedStruct"
    assert [s["name"] for s in data["policy"]["servers"]] == ["server/shop/web-http"]
    [res] = data["resources"]["servers"]
    assert res["type_url"] == "turnout.dev/policy.v1alpha1.InboundServer"
    assert res["value"]["port"] == 8080
