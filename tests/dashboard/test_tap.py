"""The dashboard's tap subscriptions against a stand-in control plane ``/tap`` on a real
socket: bounded rows, top over the same stream, and the stream closed once nobody looks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from turnout.dashboard import pages
from turnout.dashboard.tap import IDLE_S, RETRY_S, TAP_ROWS, Taps

REQUESTS = 40


def _events(i: int) -> list[dict[str, object]]:
    path = "/fail" if i % 4 == 0 else "/ok"
    common = {
        "id": f"{i}:0",
        "method": "GET",
        "authority": "web.ns",
        "path": path,
        "direction": "inbound",
        "src": "127.0.0.1:40000",
        "dst": "127.0.0.1:8080",
        "tls": "true",
        "proxy": {"namespace": "ns", "workload": "web", "pod": "web-1", "admin": "127.0.0.1:1"},
    }
    status = 500 if path == "/fail" else 200
    return [
        {**common, "type": "req"},
        {**common, "type": "rsp", "status": status, "latency_us": 900 + i},
        {**common, "type": "end", "status": status, "duration_us": 5, "bytes": 2},
    ]


class Stub:
    def __init__(self) -> None:
        self.queries: list[dict[str, str]] = []
        self.closed = asyncio.Event()
        self.missing = False

    async def tap(self, request: web.Request) -> web.StreamResponse:
        self.queries.append(dict(request.query))
        if self.missing:
            return web.Response(status=404, text="no proxies for deploy/gone in namespace ns\n")
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(REQUESTS):
            for e in _events(i):
                await resp.write(json.dumps(e).encode() + b"\n")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while loop.time() < deadline:  # until the dashboard's side closes the connection
            transport = request.transport
            if transport is None or transport.is_closing():
                self.closed.set()
                break
            await asyncio.sleep(0.05)
        return resp


@pytest.fixture
async def stub() -> AsyncIterator[tuple[Stub, str]]:
    s = Stub()
    app = web.Application()
    app.router.add_get("/tap", s.tap)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield s, f"127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def until(what: str, fn: Callable[[], object], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not fn():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_one_bounded_subscription_per_view_ended_when_nobody_looks(
    stub: tuple[Stub, str],
) -> None:
    server, address = stub
    now = [100.0]
    taps = Taps(control_plane=address, clock=lambda: now[0])
    sub = taps.get("ns", "deploy/web")
    assert taps.get("ns", "deploy/web") is sub and taps.started == 1
    await until("every event", lambda: sub.events == 3 * REQUESTS)
    assert server.queries == [{"target": "deploy/web", "namespace": "ns", "max_rps": "100"}]
    # the latest TAP_ROWS requests, newest first, each merged with its response
    newest = sub.newest()
    assert len(newest) == TAP_ROWS
    assert [r["id"] for r in newest[:2]] == [f"{REQUESTS - 1}:0", f"{REQUESTS - 2}:0"]
    assert newest[0]["status"] == 200 and newest[0]["latency_us"] == 900 + REQUESTS - 1
    # top over the same stream: every request counted, /fail at 0%
    rows = {r.path: r for r in sub.top.rows()}
    assert rows["/ok"].count == 30 and rows["/fail"].count == 10
    assert rows["/fail"].success_rate == 0.0 and rows["/ok"].success_rate == 1.0
    html = pages.tap_view(newest, sub.top.rows(), ns="ns", target="deploy/web", events=1, error="")
    assert html.count("<tr data-tap>") + html.count('<tr class="failing" data-tap>') == TAP_ROWS
    assert 'class="failing" data-top' in html and "mesh top deploy/web -n ns" in html
    # nobody asks for the fragment: the subscription closes its stream
    now[0] += IDLE_S + 1
    await asyncio.wait_for(server.closed.wait(), 10)
    await until("the subscription to end", lambda: taps.running() == 0)
    # a view opened again starts a new one
    now[0] += RETRY_S
    taps.get("ns", "deploy/web")
    assert taps.started == 2 and taps.running() == 1
    await taps.close()
    assert taps.running() == 0


async def test_a_target_without_proxies_shows_the_control_planes_answer(
    stub: tuple[Stub, str],
) -> None:
    server, address = stub
    server.missing = True
    taps = Taps(control_plane=address)
    sub = taps.get("ns", "deploy/gone")
    await until("the error", lambda: sub.error)
    assert sub.error == "no proxies for deploy/gone in namespace ns"
    html = pages.tap_view([], [], ns="ns", target="deploy/gone", events=0, error=sub.error)
    assert "tap: no proxies for deploy/gone" in html
    taps.get("ns", "deploy/gone")
    assert taps.started == 1  # no retry before RETRY_S
    await taps.close()
