"""The admin server over a real socket on 127.0.0.1: /metrics, /live, /ready, /tap."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import pytest

from tests.proxy.builders import mk_event, request_events
from tests.proxy.exposition import parse_exposition, serve
from turnout.proxy.admin import AdminServer, bound_port, start_admin, tap_request_from_query
from turnout.proxy.metrics import ProxyMetrics
from turnout.proxy.tap import TapFilter, TapHub

TIMEOUT = aiohttp.ClientTimeout(total=5, sock_connect=2)


@dataclass
class Admin:
    url: str
    metrics: ProxyMetrics
    tap: TapHub
    ready: list[bool]
    runner: AdminServer
    session: aiohttp.ClientSession


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    metrics = ProxyMetrics(namespace="test", workload_name="podinfo", pod="podinfo-1")
    tap = TapHub()
    ready = [False]
    runner = await start_admin("127.0.0.1", 0, metrics=metrics, tap=tap, ready=lambda: ready[0])
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield Admin(f"http://127.0.0.1:{bound_port(runner)}", metrics, tap, ready, runner, session)
    await runner.cleanup()


async def wait_until(cond: Callable[[], bool], *, seconds: float = 3) -> None:
    async with asyncio.timeout(seconds):
        while not cond():
            await asyncio.sleep(0.01)


async def test_metrics_are_served_as_text_format_0_0_4(admin: Admin) -> None:
    serve(admin.metrics, 200, 503)

    async with admin.session.get(f"{admin.url}/metrics") as resp:
        text = await resp.text()

    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    fams = parse_exposition(text)
    assert sum(v for *_, v in fams["response_total"].samples) == 2


async def test_live_answers_while_the_loop_runs(admin: Admin) -> None:
    async with admin.session.get(f"{admin.url}/live") as resp:
        assert (resp.status, await resp.text()) == (200, "live\n")


async def test_ready_follows_the_ready_callback(admin: Admin) -> None:
    async with admin.session.get(f"{admin.url}/ready") as resp:
        assert (resp.status, await resp.text()) == (503, "not ready\n")
    admin.ready[0] = True
    async with admin.session.get(f"{admin.url}/ready") as resp:
        assert (resp.status, await resp.text()) == (200, "ready\n")


async def test_tap_streams_the_published_events_that_match_as_ndjson(admin: Admin) -> None:
    async with admin.session.get(f"{admin.url}/tap?path=/api&limit=3") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/x-ndjson"
        assert admin.tap.active, "subscribed before the headers were sent"
        for e in [*request_events(1, path="/other"), *request_events(2)]:
            admin.tap.publish(e)
        body = await resp.text()

    lines = [json.loads(x) for x in body.splitlines()]
    assert [(x["type"], x["id"]) for x in lines] == [("req", "7:2"), ("rsp", "7:2"), ("end", "7:2")]
    assert lines[1]["status"] == 200
    await wait_until(lambda: not admin.tap.active)


async def test_tap_text_format_gives_tap_lines(admin: Admin) -> None:
    async with admin.session.get(f"{admin.url}/tap?format=text&limit=1") as resp:
        admin.tap.publish(mk_event("req"))
        body = await resp.text()

    assert body == (
        "req id=7:1 proxy=in  src=10.1.0.3:51234 dst=10.1.0.5:8080 tls=true"
        " :method=GET :authority=web:80 :path=/api\n"
    )


async def test_tap_stream_ends_when_the_client_goes_away(admin: Admin) -> None:
    resp = await admin.session.get(f"{admin.url}/tap")
    admin.tap.publish(mk_event("req"))
    assert json.loads(await resp.content.readline())["id"] == "7:1"
    resp.close()

    await wait_until(lambda: admin.tap.subscribers == 0)


async def test_shutdown_ends_open_tap_streams_at_once(admin: Admin) -> None:
    resp = await admin.session.get(f"{admin.url}/tap")
    assert admin.tap.active

    async with asyncio.timeout(2):
        await admin.runner.cleanup()
        assert await resp.read() == b""

    assert admin.tap.subscribers == 0


@pytest.mark.parametrize("query", ["max_rps=-1", "limit=many", "direction=sideways", "format=xml"])
async def test_invalid_tap_queries_are_answered_400(admin: Admin, query: str) -> None:
    async with admin.session.get(f"{admin.url}/tap?{query}") as resp:
        assert resp.status == 400
    assert not admin.tap.active


def test_tap_query_parameters_become_a_filter() -> None:
    flt, limit, text = tap_request_from_query(
        {"method": "GET", "authority": "web:80", "path": "/api", "direction": "inbound",
         "max_rps": "10", "limit": "5", "format": "text"}
    )  # fmt: skip

    assert flt == TapFilter(
        method="GET", authority="web:80", path_prefix="/api", direction="inbound", max_rps=10
    )
    assert (limit, text) == (5, True)
